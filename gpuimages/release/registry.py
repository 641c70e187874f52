"""A registry as gpuimages talks to it: address, credentials, retries, the HTTP API v2.

The password is read once and never enters a log line, a report or an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from gpuimages.core.errors import GpuImagesError, UserInputError
from gpuimages.core.runner import mask
from gpuimages.facts.registry_address import (
    Registry,
    is_loopback,
)

log = logging.getLogger(__name__)

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

    @classmethod
    def from_options(
        cls,
        tries: str | int | None,
        backoff: str | float | None,
        env: Mapping[str, str] = os.environ,
    ) -> RetryPolicy:
        """--tries N --backoff SECONDS as given on the command line (strings)."""
        try:
            t = None if tries is None else int(tries)
            b = None if backoff is None else float(backoff)
        except ValueError:
            raise UserInputError(
                "--tries takes a whole number, --backoff a number of seconds."
            ) from None
        return cls.from_env(env, tries=t, backoff_s=b)


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


@dataclass(frozen=True)
class RawManifest:
    """A manifest as the registry stores it: what a copy puts unchanged elsewhere."""

    digest: str
    media_type: str
    body: bytes = field(repr=False)


class RegistryApi:
    """The registry's HTTP API v2 with basic or token auth: ping, manifests, blobs."""

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
        self._auth: str | None = None  # Basic: one header for every request
        self._tokens: dict[str, str] = {}  # Bearer: one token per scope

    @property
    def who(self) -> str:
        user = self.credentials.user if self.credentials else "anonymous"
        return f"{user}@{self.registry.host}"

    def _secrets(self) -> tuple[str, ...]:
        c = self.credentials
        return (c.password, c.basic_header().split()[1]) if c else ()

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: bytes | BinaryIO | None = None,
        *,
        stream: bool = False,
    ) -> tuple[int, Mapping[str, str], Any]:
        """One HTTP exchange; the body as bytes, or the open response when stream=True."""
        plain = {k: v for k, v in headers.items() if k != "Authorization"}
        req = urllib.request.Request(url, data=data, method=method, headers=plain)
        if "Authorization" in headers:
            # Not carried over a redirect: blob GETs are sent on to storage (S3, a CDN)
            # that must not see the registry's credentials.
            req.add_unredirected_header("Authorization", headers["Authorization"])
        try:
            resp = self._opener.open(req, timeout=self.timeout)
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
        if stream:
            return resp.status, resp.headers, resp
        with resp:
            try:
                return resp.status, resp.headers, resp.read()
            except OSError as exc:
                raise TransientRegistryError(
                    mask(f"{url} broke off its answer ({exc})", self._secrets())
                ) from None

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

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        *,
        data: bytes | BinaryIO | None = None,
        scope: str | None = None,
        stream: bool = False,
    ) -> tuple[int, Mapping[str, str], Any]:
        """method on a path ('/v2/...') or a full URL (an upload's Location).

        A 401 challenge is answered once (Basic, or a Bearer token for `scope`, kept per
        scope) and the request sent again; a body that is a stream cannot be sent twice, so
        stream only after an earlier request with the same scope has authenticated.
        """
        url = target if "://" in target else f"{self.registry.url}{target}"
        base = dict(headers or {})
        auth = self._authorization(scope)
        first = {**base, "Authorization": auth} if auth else base
        status, resp_headers, body = self._send(method, url, first, data, stream=stream)
        if status == 401:
            if stream and hasattr(body, "close"):
                body.close()
            challenge = resp_headers.get("WWW-Authenticate", "")
            if challenge.lower().startswith("bearer"):
                self._tokens[scope or ""] = self._token(challenge, scope)
            elif self.credentials is not None and not auth:
                self._auth = self.credentials.basic_header()
            else:
                raise self._rejected()
            if data is not None and not isinstance(data, bytes):
                raise PublishError(f"{method} {url} asked to authenticate after its body was sent")
            again = {**base, "Authorization": self._authorization(scope) or ""}
            status, resp_headers, body = self._send(method, url, again, data, stream=stream)
            if status == 401:
                raise self._rejected()
        if status >= 500 or status == 429:
            if stream and hasattr(body, "close"):
                body.close()
            raise TransientRegistryError(f"{method} {url} answered HTTP {status}")
        return status, resp_headers, body

    def _authorization(self, scope: str | None) -> str | None:
        return self._auth or self._tokens.get(scope or "")

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, scope: str | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """GET url; answer a 401 challenge once (Basic or Bearer token), then retry."""
        return self.request("GET", path, headers, scope=scope)

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

    def manifest_bytes(self, repository: str, reference: str) -> RawManifest:
        """The manifest exactly as stored (bytes, media type, digest checked against them)."""
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
        if digest != computed or (reference.startswith("sha256:") and reference != computed):
            raise PublishError(
                f"registry {self.registry.host} sent manifest {repository}:{reference} whose "
                f"content ({computed}) does not match its Docker-Content-Digest ({digest})"
            )
        doc = json.loads(body)
        media_type = doc.get("mediaType") or headers.get("Content-Type", "")
        return RawManifest(digest, media_type, body)

    def manifest(self, repository: str, reference: str) -> RemoteManifest:
        raw = self.manifest_bytes(repository, reference)
        doc = json.loads(raw.body)
        parts = [doc.get("config") or {}, *(doc.get("layers") or [])]
        size = sum(int(p.get("size", 0)) for p in parts if isinstance(p, dict))
        config = (doc.get("config") or {}).get("digest")
        return RemoteManifest(raw.digest, raw.media_type, size, config)


def parse_challenge(header: str) -> dict[str, str]:
    """'Bearer realm="https://x/token",service="x"' -> {'realm': ..., 'service': ...}."""
    _, _, rest = header.partition(" ")
    return {k: v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}


def same_digest(pushed: str | None, served: str) -> bool:
    """Digests compare exactly, 'sha256:' prefix and all (hex case-insensitive)."""
    return bool(pushed) and pushed.lower() == served.lower()
