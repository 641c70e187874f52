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

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from gpuimages.engine import SCRIPTS
from gpuimages.errors import CommandError, GpuImagesError
from gpuimages.evidence import evidence_key
from gpuimages.registry import (
    Credentials,
    CredentialsRejected,
    PublishError,
    Registry,
    RegistryApi,
    RegistryUnavailable,
    RetryPolicy,
    TransientRegistryError,
    classify,
    repository_path,
    resolve_credentials,
    same_digest,
    split_ref,
    with_retries,
)
from gpuimages.runner import mask, run
from gpuimages.variant import Variant

log = logging.getLogger(__name__)

SMOKE_REPORTS = Path("reports/smoke")  # where `invoke smoke --report` writes by default
RELEASE_DIR = Path("reports/release")
REPORT_SCHEMA = 1
LOCAL_REGISTRY_PORT = 5000


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
    manifest = build_manifest(
        results, registry=target, client=client, evidence_key=evidence_key(env)
    )
    out = release_dir(release_root)
    json_path, md_path = write_manifest(manifest, out, step_summary=env.get("GITHUB_STEP_SUMMARY"))
    return PublishRun(target, results, json_path, md_path, started)
