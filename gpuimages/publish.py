"""Vetted image -> registry: the smoke gate, push with bounded retries, digest check.

Nothing is pushed that was not smoke-tested as that exact image id: the gate trusts
only a smoke report that exists, says "passed", and names the image id the variant's
tag points at now. A vetted image is tagged `<registry>/<repository>:<variant name>`,
pushed with the docker SDK (transient registry errors retried with exponential
backoff), and verified by asking the registry's HTTP API (v2) for the tag's manifest
digest. Each run ends in a release manifest (gpuimages/manifest.py) that records, per
image, published | refused | failed and why.

Credentials come from GPUIMAGES_REGISTRY_USER / GPUIMAGES_REGISTRY_PASSWORD (read once)
or the docker config's "auths"; the password never enters a log line, a report or an
exception message.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from gpuimages.engine import SCRIPTS
from gpuimages.errors import CommandError, GpuImagesError, UserInputError
from gpuimages.runner import mask, run
from gpuimages.tagging import registry_tag
from gpuimages.variant import Variant

log = logging.getLogger(__name__)

SMOKE_REPORTS = Path("reports/smoke")  # where `invoke smoke --report` writes by default
RELEASE_DIR = Path("reports/release")
REPORT_SCHEMA = 1
LOCAL_REGISTRY_PORT = 5000
ENV_USER = "GPUIMAGES_REGISTRY_USER"
ENV_PASSWORD = "GPUIMAGES_REGISTRY_PASSWORD"
ENV_TRIES = "GPUIMAGES_PUSH_TRIES"
ENV_BACKOFF = "GPUIMAGES_PUSH_BACKOFF_S"
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}
HTTP_TIMEOUT_S = 20

T = TypeVar("T")


# ----------------------------------------------------------------------------- errors


class PublishError(GpuImagesError):
    """One image could not be published; the message says why (never a secret)."""


class TransientRegistryError(PublishError):
    """Connection refused/reset, a timeout, 5xx or 429: worth another try."""


class RegistryUnavailable(PublishError):
    """The registry stayed unreachable through every retry."""


class CredentialsRejected(PublishError):
    """The registry refused the credentials (or asked for some and had none)."""


# -------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Registry:
    """Where images go: HOST[:PORT] plus an optional namespace ('ghcr.io/team')."""

    host: str
    namespace: str = ""
    scheme: str = "https"

    @classmethod
    def parse(cls, text: str) -> Registry:
        raw = text.strip()
        scheme = None
        for prefix in ("http://", "https://"):
            if raw.startswith(prefix):
                scheme = prefix[:-3]
                raw = raw[len(prefix) :]
        raw = raw.rstrip("/")
        host, _, namespace = raw.partition("/")
        if not host or any(c.isspace() for c in raw) or "@" in raw or not _valid_host(host):
            raise UserInputError(
                f"registry '{text}' is not of the form HOST[:PORT][/NAMESPACE] "
                "(e.g. 127.0.0.1:5000, ghcr.io/my-team)."
            )
        if scheme is None:
            # docker talks plain http only to loopback (or daemon-configured insecure)
            # registries; http://HOST says this one is such an insecure registry.
            scheme = "http" if is_loopback(host) else "https"
        return cls(host=host, namespace=namespace, scheme=scheme)

    @property
    def prefix(self) -> str:
        return f"{self.host}/{self.namespace}" if self.namespace else self.host

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def tag_for(self, variant: Variant) -> str:
        return registry_tag(variant, self.prefix)

    def __str__(self) -> str:
        return self.prefix


def _valid_host(host: str) -> bool:
    return re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", host) is not None


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in LOOPBACK_HOSTS or name.startswith("127.")


def split_ref(ref: str) -> tuple[str, str]:
    """'127.0.0.1:5000/a/b:tag' -> ('127.0.0.1:5000/a/b', 'tag')."""
    repo, tag = ref.rsplit(":", 1)
    return repo, tag


def repository_path(ref: str) -> str:
    """The repository as the registry's API names it: 'host/a/b:tag' -> 'a/b'."""
    return split_ref(ref)[0].split("/", 1)[1]


# ----------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """A user and password for one registry; the password never shows in repr or str."""

    user: str
    password: str = field(repr=False)
    source: str = ""

    def auth_config(self) -> dict[str, str]:
        return {"username": self.user, "password": self.password}

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def __str__(self) -> str:
        return f"{self.user} (from {self.source})" if self.source else self.user


def docker_config_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _auth_key_host(key: str) -> str:
    host = key.strip().removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return "docker.io" if host in DOCKER_HUB else host


def resolve_credentials(
    host: str,
    env: Mapping[str, str] = os.environ,
    config_path: Path | None = None,
) -> Credentials | None:
    """Credentials for host: the environment first, then the docker config; None if neither.

    Called once per run, so the environment is read once (`docker login --password-stdin`
    semantics: the secret is handed in, never typed on a command line).
    """
    user, password = env.get(ENV_USER) or "", env.get(ENV_PASSWORD) or ""
    if user or password:
        if not (user and password):
            missing = ENV_PASSWORD if user else ENV_USER
            raise UserInputError(
                f"{missing} is not set but {ENV_USER if user else ENV_PASSWORD} is: set both "
                "(user and password or token) or neither to use the docker config's login."
            )
        return Credentials(user, password, f"${ENV_USER}/${ENV_PASSWORD}")

    path = config_path or docker_config_path(env)
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserInputError(f"docker config {path} is not readable JSON ({exc}).") from None
    want = _auth_key_host(host)
    entry = next(
        (v for k, v in (config.get("auths") or {}).items() if _auth_key_host(k) == want), None
    )
    if isinstance(entry, dict) and (entry.get("auth") or entry.get("username")):
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(entry["auth"]).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            user, sep, password = decoded.partition(":")
            if not sep or not user:
                raise UserInputError(
                    f"docker config {path}: the 'auth' entry for {host} is not base64 of "
                    "USER:PASSWORD; run `docker login` again or set "
                    f"{ENV_USER} and {ENV_PASSWORD}."
                )
        else:
            user, password = entry["username"], entry.get("password") or ""
        return Credentials(user, password, f"docker config {path}")
    if isinstance(entry, dict) and entry.get("identitytoken"):
        raise UserInputError(
            f"docker config {path} holds an identity token for {host}; gpuimages reads only "
            f"user/password logins: set {ENV_USER} and {ENV_PASSWORD}."
        )
    helper = (config.get("credHelpers") or {}).get(host) or (
        config.get("credsStore") if entry is not None else None
    )
    if helper:
        raise UserInputError(
            f"the login for {host} is kept by docker-credential-{helper} (docker config "
            f"{path}); gpuimages reads only plain 'auths' entries: set {ENV_USER} and "
            f"{ENV_PASSWORD} (e.g. from your CI's secrets) instead."
        )
    return None


# ---------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: `tries` attempts, waits base, base*factor, ... <= max."""

    tries: int = 4
    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.tries < 1 or self.base_s < 0 or self.factor < 1:
            raise UserInputError(
                f"retry policy needs tries >= 1, backoff >= 0 s and factor >= 1, not "
                f"tries={self.tries}, backoff={self.base_s}, factor={self.factor}."
            )

    def delays(self) -> tuple[float, ...]:
        """The waits between tries (one fewer than tries)."""
        return tuple(min(self.base_s * self.factor**i, self.max_s) for i in range(self.tries - 1))

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] = os.environ,
        tries: int | None = None,
        backoff_s: float | None = None,
    ) -> RetryPolicy:
        """Options win over GPUIMAGES_PUSH_TRIES / GPUIMAGES_PUSH_BACKOFF_S, then defaults."""
        try:
            t = int(tries if tries is not None else env.get(ENV_TRIES) or cls.tries)
            b = float(backoff_s if backoff_s is not None else env.get(ENV_BACKOFF) or cls.base_s)
        except ValueError:
            raise UserInputError(
                f"{ENV_TRIES} must be a whole number and {ENV_BACKOFF} a number of seconds "
                f"(got '{env.get(ENV_TRIES)}', '{env.get(ENV_BACKOFF)}')."
            ) from None
        return cls(tries=t, base_s=b)


def with_retries(
    action: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run action; retry TransientRegistryError per policy; then RegistryUnavailable."""
    delays = policy.delays()
    for attempt in range(1, policy.tries + 1):
        try:
            return action()
        except TransientRegistryError as exc:
            if attempt == policy.tries:
                raise RegistryUnavailable(
                    f"{what} failed after {policy.tries} "
                    f"{'try' if policy.tries == 1 else 'tries'}: {exc}"
                ) from None
            wait = delays[attempt - 1]
            log.warning(
                "%s failed (%s); try %d of %d in %.1f s", what, exc, attempt + 1, policy.tries, wait
            )
            sleep(wait)
    raise AssertionError("unreachable")


TRANSIENT_MARKERS = (
    "connection refused",
    "connection reset",
    "broken pipe",
    "i/o timeout",
    "timed out",
    "timeout",
    "no route to host",
    "unexpected eof",
    ": eof",
    "tls handshake",
    "too many requests",
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "received unexpected http status: 5",
)
AUTH_MARKERS = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "incorrect username or password",
    "access to the resource is denied",
)


def classify(message: str) -> str:
    """'auth', 'transient' or 'fatal' for a registry or engine error message."""
    text = message.lower()
    if any(m in text for m in AUTH_MARKERS):
        return "auth"
    if any(m in text for m in TRANSIENT_MARKERS):
        return "transient"
    return "fatal"


# ----------------------------------------------------------------------- registry API


@dataclass(frozen=True)
class RemoteManifest:
    digest: str
    media_type: str
    size_bytes: int  # compressed: config + layers as stored in the registry
    config_digest: str | None = None  # the image id, for a single-platform image


class RegistryApi:
    """The registry's HTTP API v2: ping and manifest digests, with basic or token auth."""

    def __init__(
        self,
        registry: Registry,
        credentials: Credentials | None = None,
        *,
        timeout: float = HTTP_TIMEOUT_S,
    ) -> None:
        self.registry = registry
        self.credentials = credentials
        self.timeout = timeout
        handlers: list[urllib.request.BaseHandler] = []
        if is_loopback(registry.host):
            handlers.append(urllib.request.ProxyHandler({}))  # never proxy 127.0.0.1
        self._opener = urllib.request.build_opener(*handlers)
        self._auth: str | None = None

    @property
    def who(self) -> str:
        user = self.credentials.user if self.credentials else "anonymous"
        return f"{user}@{self.registry.host}"

    def _secrets(self) -> tuple[str, ...]:
        c = self.credentials
        return (c.password, c.basic_header().split()[1]) if c else ()

    def _send(
        self, method: str, url: str, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        req = urllib.request.Request(url, method=method, headers=dict(headers))
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp else b""
            return exc.code, exc.headers, body
        except (urllib.error.URLError, OSError) as exc:  # TimeoutError is an OSError
            reason = getattr(exc, "reason", exc)
            text = mask(f"{self.registry.url} did not answer ({reason})", self._secrets())
            if isinstance(reason, (ConnectionError, TimeoutError)) or (
                classify(str(reason)) == "transient"
            ):
                raise TransientRegistryError(text) from None
            raise PublishError(text) from None

    def _token(self, challenge: str, scope_hint: str | None) -> str:
        params = parse_challenge(challenge)
        realm = params.pop("realm", "")
        if not realm:
            raise PublishError(
                f"registry {self.registry.host} sent a token challenge without realm"
            )
        if scope_hint and "scope" not in params:
            params["scope"] = scope_hint
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(params)
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials else {}
        status, _, body = self._send("GET", url, headers)
        if status in (401, 403):
            raise self._rejected()
        if status >= 500 or status == 429:
            raise TransientRegistryError(f"token service {realm} answered HTTP {status}")
        if status != 200:
            raise PublishError(f"token service {realm} answered HTTP {status}")
        doc = json.loads(body or b"{}")
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise PublishError(f"token service {realm} returned no token")
        return f"Bearer {token}"

    def _rejected(self) -> CredentialsRejected:
        if self.credentials is None:
            return CredentialsRejected(
                f"registry {self.registry.host} asks for credentials and none were given: run "
                f"`docker login {self.registry.host}` or set {ENV_USER} and {ENV_PASSWORD}."
            )
        return CredentialsRejected(
            f"registry rejected the credentials for {self.who} (from {self.credentials.source})."
        )

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, scope: str | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """GET url; answer a 401 challenge once (Basic or Bearer token), then retry."""
        url = f"{self.registry.url}{path}"
        base = dict(headers or {})
        auth = {"Authorization": self._auth} if self._auth else {}
        status, resp_headers, body = self._send("GET", url, {**base, **auth})
        if status == 401:
            challenge = resp_headers.get("WWW-Authenticate", "")
            if challenge.lower().startswith("bearer"):
                self._auth = self._token(challenge, scope)
            elif self.credentials is not None and not auth:
                self._auth = self.credentials.basic_header()
            else:
                raise self._rejected()
            status, resp_headers, body = self._send(
                "GET", url, {**base, "Authorization": self._auth}
            )
            if status == 401:
                raise self._rejected()
        if status >= 500 or status == 429:
            raise TransientRegistryError(f"{url} answered HTTP {status}")
        return status, resp_headers, body

    def ping(self) -> None:
        """GET /v2/: is it a registry, and does it take our credentials?"""
        status, headers, _ = self.get("/v2/")
        if status != 200:
            raise PublishError(
                f"{self.registry.url}/v2/ answered HTTP {status}: not a Docker registry (v2 API)?"
            )
        log.debug(
            "registry %s answers (%s)",
            self.registry.url,
            headers.get("Docker-Distribution-Api-Version"),
        )

    def manifest(self, repository: str, reference: str) -> RemoteManifest:
        path = f"/v2/{repository}/manifests/{reference}"
        status, headers, body = self.get(
            path, {"Accept": MANIFEST_ACCEPT}, scope=f"repository:{repository}:pull"
        )
        if status == 404:
            raise PublishError(
                f"registry {self.registry.host} has no manifest {repository}:{reference}"
            )
        if status != 200:
            raise PublishError(f"GET {path} answered HTTP {status}")
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        digest = headers.get("Docker-Content-Digest") or computed
        if digest != computed:
            raise PublishError(
                f"registry {self.registry.host} sent manifest {repository}:{reference} whose "
                f"content ({computed}) does not match its Docker-Content-Digest ({digest})"
            )
        doc = json.loads(body)
        parts = [doc.get("config") or {}, *(doc.get("layers") or [])]
        size = sum(int(p.get("size", 0)) for p in parts if isinstance(p, dict))
        media_type = doc.get("mediaType") or headers.get("Content-Type", "")
        return RemoteManifest(digest, media_type, size, (doc.get("config") or {}).get("digest"))


def parse_challenge(header: str) -> dict[str, str]:
    """'Bearer realm="https://x/token",service="x"' -> {'realm': ..., 'service': ...}."""
    _, _, rest = header.partition(" ")
    return {k: v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}


def same_digest(pushed: str | None, served: str) -> bool:
    """Digests compare exactly, 'sha256:' prefix and all (hex case-insensitive)."""
    return bool(pushed) and pushed.lower() == served.lower()


# ------------------------------------------------------------------------------ gate


@dataclass(frozen=True)
class GateDecision:
    """Whether a variant's local image may be pushed, and why (one line)."""

    variant: Variant
    vetted: bool
    reason: str
    image_id: str | None
    report_path: Path
    report: Mapping[str, Any] | None = None

    def smoke_counts(self) -> dict[str, int]:
        return smoke_counts(self.report)


def smoke_counts(report: Mapping[str, Any] | None) -> dict[str, int]:
    """How many checks of a smoke report passed, failed, were skipped."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for check in (report or {}).get("checks") or []:
        status = check.get("status") if isinstance(check, dict) else None
        if status in counts:
            counts[status] += 1
    return counts


def report_path_for(variant: Variant, reports: Path, count: int = 1) -> Path:
    """DIR/<variant name>.json; a .json file is taken as it is when one image is published."""
    if count == 1 and reports.suffix == ".json" and not reports.is_dir():
        return reports
    return reports / f"{variant.name}.json"


def read_report(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(report, None), (None, None) when missing, or (None, why) when unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return None, f"is not valid JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(doc, dict):
        return None, "is not a JSON object"
    return doc, None


def short_id(image_id: str | None) -> str:
    return (image_id or "-").removeprefix("sha256:")[:12]


def decide(
    variant: Variant,
    report_path: Path,
    report: Mapping[str, Any] | None,
    local_id: str | None,
    report_error: str | None = None,
) -> GateDecision:
    """The gate: a report exists, says passed, and tested exactly the local image id."""

    def refuse(reason: str) -> GateDecision:
        return GateDecision(variant, False, reason, local_id, report_path, report)

    smoke = f"invoke smoke --variant {variant.name} --report {report_path}"
    if local_id is None:
        return refuse(
            f"{variant.tag} does not exist locally: build and smoke-test it first "
            f"(invoke build --variant {variant.name}; {smoke})."
        )
    if report_error:
        return refuse(f"smoke report {report_path} {report_error}: re-run `{smoke}`.")
    if report is None:
        return refuse(f"no smoke report at {report_path}: run `{smoke}` first.")
    if report.get("schema") != REPORT_SCHEMA:
        return refuse(
            f"smoke report {report_path} has schema {report.get('schema')!r}; this gpuimages "
            f"reads schema {REPORT_SCHEMA}: re-run `{smoke}`."
        )
    named = (report.get("variant") or {}).get("name")
    if named != variant.name:
        return refuse(f"smoke report {report_path} is for {named!r}, not {variant.name}.")
    status = report.get("status")
    if status != "passed":
        failed = [
            c.get("name", "?")
            for c in report.get("checks") or []
            if isinstance(c, dict) and c.get("status") == "failed"
        ]
        which = f" (failed checks: {', '.join(failed)})" if failed else ""
        return refuse(f"smoke tests of {variant.name} did not pass: status {status!r}{which}.")
    tested = report.get("image_id")
    if tested != local_id:
        return refuse(
            f"smoke report {report_path} tested image {short_id(tested)}, but {variant.tag} is "
            f"now image {short_id(local_id)}: re-run `{smoke}` on the current image."
        )
    counts = smoke_counts(report)
    return GateDecision(
        variant,
        True,
        f"smoke passed for image {short_id(local_id)} ({counts['passed']} passed, "
        f"{counts['skipped']} skipped)",
        local_id,
        report_path,
        report,
    )


def local_image_id(client: docker.DockerClient, tag: str) -> str | None:
    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def gate(
    variant: Variant, reports: Path, client: docker.DockerClient, count: int = 1
) -> GateDecision:
    path = report_path_for(variant, reports, count)
    report, error = read_report(path)
    return decide(variant, path, report, local_image_id(client, variant.tag), error)


# ------------------------------------------------------------------------------ push


@dataclass(frozen=True)
class Pushed:
    digest: str
    manifest_bytes: int | None


def read_push_stream(chunks: Iterable[Mapping[str, Any]], secrets: Iterable[str] = ()) -> Pushed:
    """The pushed manifest digest from docker's push stream; errors become exceptions."""
    secrets = tuple(secrets)
    digest, size = None, None
    for chunk in chunks:
        error = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message")
        if error:
            message = mask(str(error), secrets)
            kind = classify(message)
            if kind == "transient":
                raise TransientRegistryError(message)
            if kind == "auth":
                raise CredentialsRejected(message)
            raise PublishError(message)
        aux = chunk.get("aux") or {}
        if aux.get("Digest"):
            digest, size = aux["Digest"], aux.get("Size")
        elif chunk.get("status"):
            log.debug("push: %s %s", chunk.get("id", ""), chunk["status"])
    if not digest:
        raise PublishError("the push ended without reporting a manifest digest")
    return Pushed(digest, size)


def push(client: docker.DockerClient, ref: str, credentials: Credentials | None) -> Pushed:
    """One push attempt of ref ('host/repo:tag') through the Docker engine."""
    repo, tag = split_ref(ref)
    secrets = (credentials.password,) if credentials else ()
    try:
        stream = client.images.push(
            repo,
            tag=tag,
            stream=True,
            decode=True,
            auth_config=credentials.auth_config() if credentials else None,
        )
        return read_push_stream(stream, secrets)
    except docker.errors.APIError as exc:
        message = mask(str(exc.explanation or exc), secrets)
        kind = classify(message)
        if kind == "transient" or ((exc.status_code or 0) >= 500 and kind != "auth"):
            raise TransientRegistryError(message) from None
        if kind == "auth":
            raise CredentialsRejected(message) from None
        raise PublishError(message) from None
    except requests.exceptions.ConnectionError:
        raise PublishError("the Docker engine stopped answering during the push") from None


# --------------------------------------------------------------------------- publish


@dataclass
class PublishResult:
    variant: Variant
    status: str  # published | refused | failed | planned (dry run)
    reason: str
    image_id: str | None = None
    registry_tag: str | None = None
    digest: str | None = None
    size_bytes: int | None = None
    compressed_bytes: int | None = None
    report_path: Path | None = None
    smoke: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("published", "planned")

    @property
    def pull_ref(self) -> str | None:
        if not (self.registry_tag and self.digest):
            return None
        return f"{split_ref(self.registry_tag)[0]}@{self.digest}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant.as_dict(),
            "status": self.status,
            "reason": self.reason,
            "local_tag": self.variant.tag,
            "registry_tag": self.registry_tag,
            "image_id": self.image_id,
            "digest": self.digest,
            "pull": self.pull_ref,
            "size_bytes": self.size_bytes,
            "compressed_bytes": self.compressed_bytes,
            "smoke": self.smoke,
            "duration_s": round(self.duration_s, 2),
        }


def smoke_summary(decision: GateDecision) -> dict[str, Any]:
    report = decision.report or {}
    return {
        "report": str(decision.report_path),
        "status": report.get("status"),
        "created": report.get("created"),
        "image_id": report.get("image_id"),
        **decision.smoke_counts(),
    }


def _result(decision: GateDecision, status: str, reason: str, **kw: Any) -> PublishResult:
    return PublishResult(
        decision.variant,
        status,
        reason,
        image_id=decision.image_id,
        report_path=decision.report_path,
        smoke=smoke_summary(decision),
        **kw,
    )


def publish_one(
    decision: GateDecision,
    registry: Registry,
    client: docker.DockerClient,
    api: RegistryApi,
    credentials: Credentials | None,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishResult:
    """Tag the vetted image id, push it (with retries), verify the digest at the registry."""
    start = time.monotonic()
    ref = registry.tag_for(decision.variant)
    image = client.images.get(decision.image_id)
    image.tag(*split_ref(ref))
    log.info("pushing %s (image %s)", ref, short_id(decision.image_id))
    pushed = with_retries(
        lambda: push(client, ref, credentials), policy, f"push of {ref}", sleep=sleep
    )
    remote = with_retries(
        lambda: api.manifest(repository_path(ref), split_ref(ref)[1]),
        policy,
        f"manifest lookup of {ref}",
        sleep=sleep,
    )
    if not same_digest(pushed.digest, remote.digest):
        raise PublishError(
            f"digest mismatch for {ref}: the push reported {pushed.digest}, the registry serves "
            f"{remote.digest} (another push to the same tag?)"
        )
    # Classic engines name an image by its config digest; containerd-store ones by the
    # manifest (index) digest: either way the registry must hold the tested image.
    if remote.config_digest and decision.image_id not in (remote.config_digest, pushed.digest):
        raise PublishError(
            f"{ref} at the registry is image {short_id(remote.config_digest)}, not the "
            f"smoke-tested image {short_id(decision.image_id)}"
        )
    log.info("published %s@%s", split_ref(ref)[0], pushed.digest)
    return _result(
        decision,
        "published",
        f"pushed and verified at {registry.host}",
        registry_tag=ref,
        digest=pushed.digest,
        size_bytes=int(image.attrs.get("Size") or 0) or None,
        compressed_bytes=remote.size_bytes,
        duration_s=time.monotonic() - start,
    )


def publish(
    variants: Iterable[Variant],
    *,
    registry: Registry,
    reports: Path,
    client: docker.DockerClient,
    credentials: Credentials | None,
    policy: RetryPolicy,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> list[PublishResult]:
    """Gate every variant, then push the vetted ones; one result per variant, in order."""
    variants = tuple(variants)
    decisions = [gate(v, reports, client, len(variants)) for v in variants]
    results: list[PublishResult | None] = [None] * len(decisions)
    for i, d in enumerate(decisions):
        if not d.vetted:
            log.debug("refused %s: %s", d.variant.name, d.reason)
            results[i] = _result(d, "refused", d.reason)
        elif dry_run:
            results[i] = _result(d, "planned", d.reason, registry_tag=registry.tag_for(d.variant))
    vetted = [i for i, r in enumerate(results) if r is None]
    if vetted:
        api = RegistryApi(registry, credentials)
        stop: PublishError | None = None
        try:
            with_retries(api.ping, policy, f"registry {registry.url}", sleep=sleep)
        except PublishError as exc:
            stop = exc
        for i in vetted:
            d = decisions[i]
            if stop is None:
                try:
                    results[i] = publish_one(d, registry, client, api, credentials, policy, sleep)
                    continue
                except PublishError as exc:
                    failure = exc
                    if isinstance(exc, (CredentialsRejected, RegistryUnavailable)):
                        stop = exc  # the next images would only hit the same wall
            else:
                failure = stop
            log.debug("not published %s: %s", d.variant.name, failure)
            results[i] = _result(
                d, "failed", str(failure), registry_tag=registry.tag_for(d.variant)
            )
    return [r for r in results if r is not None]


# ---------------------------------------------------------------------- the whole run


def ensure_local_registry(
    port: int = LOCAL_REGISTRY_PORT, state_dir: Path | None = None
) -> Registry:
    """Start (or reuse) a registry on 127.0.0.1:port with scripts/start-registry.sh."""
    argv = ["bash", str(SCRIPTS / "start-registry.sh"), "--port", str(port)]
    if state_dir is not None:
        argv += ["--dir", str(state_dir)]
    try:
        result = run(argv, what="starting the local registry", timeout=600)
    except CommandError as exc:
        raise GpuImagesError(
            f"no registry is configured and a local one on 127.0.0.1:{port} could not be "
            f"started: {exc}"
        ) from None
    url = next(
        (ln for ln in reversed(result.tail.splitlines()) if ln.startswith("http")),
        f"http://127.0.0.1:{port}",
    )
    return Registry.parse(url)


@dataclass(frozen=True)
class PublishRun:
    registry: Registry
    results: list[PublishResult]
    manifest_json: Path | None
    manifest_md: Path | None
    started_local_registry: bool

    @property
    def not_published(self) -> list[PublishResult]:
        return [r for r in self.results if not r.ok]


def release_dir(root: Path, now: dt.datetime | None = None) -> Path:
    """reports/release/<UTC timestamp>/ (a -N suffix when two runs share a second)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    stamp = now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, n = root / stamp, 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{n}"
    return path


def publish_release(
    variants: Iterable[Variant],
    *,
    registry: str | None,
    reports: Path = SMOKE_REPORTS,
    release_root: Path = RELEASE_DIR,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
    client: docker.DockerClient | None = None,
    env: Mapping[str, str] = os.environ,
    local_port: int = LOCAL_REGISTRY_PORT,
) -> PublishRun:
    """Gate, push, verify and write the release manifest (plus $GITHUB_STEP_SUMMARY)."""
    from gpuimages.manifest import build_manifest, write_manifest

    variants = tuple(variants)
    policy = policy or RetryPolicy.from_env(env)
    started = False
    if registry:
        target = Registry.parse(registry)
    elif dry_run:
        target = Registry.parse(f"127.0.0.1:{local_port}")
    else:
        log.info(
            "no registry configured (no --registry, matrix.yaml registry: null): starting a "
            "local one on 127.0.0.1:%d",
            local_port,
        )
        target = ensure_local_registry(local_port)
        started = True
    credentials = resolve_credentials(target.host, env)
    if credentials:
        log.info("registry credentials: %s", credentials)  # user and source, never the password
    if client is None:
        try:
            client = docker.from_env(timeout=900)
            client.ping()
        except docker.errors.DockerException as exc:
            raise GpuImagesError(
                f"no Docker engine answers ({exc.__class__.__name__}): start one (as root: "
                "bash scripts/start-docker.sh)."
            ) from None
    results = publish(
        variants,
        registry=target,
        reports=reports,
        client=client,
        credentials=credentials,
        policy=policy,
        dry_run=dry_run,
    )
    if dry_run:
        return PublishRun(target, results, None, None, started)
    manifest = build_manifest(results, registry=target, client=client)
    out = release_dir(release_root)
    json_path, md_path = write_manifest(manifest, out, step_summary=env.get("GITHUB_STEP_SUMMARY"))
    return PublishRun(target, results, json_path, md_path, started)
