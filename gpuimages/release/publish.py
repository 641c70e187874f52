"""Vetted image -> registry: the smoke gate, push with bounded retries, digest check.

Nothing is pushed that was not smoke-tested as that exact image id: the gate trusts
only a smoke report that exists, says "passed", and names the image id the variant's
tag points at now. A vetted image is tagged `<registry>/<repository>:<variant name>`,
pushed with the docker SDK (transient registry errors retried with exponential
backoff), and verified by asking the registry's HTTP API (v2) for the tag's manifest
digest. The whole run (gpuimages/release/cut.py) ends in a release manifest that records,
per image, published | refused | failed and why.

Credentials come from GPUIMAGES_REGISTRY_USER / GPUIMAGES_REGISTRY_PASSWORD (read once)
or the docker config's "auths"; the password never enters a log line, a report or an
exception message.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
import requests.exceptions

from gpuimages.build.engine import SDK_ERRORS, engine_errors, sdk_message
from gpuimages.core.errors import GpuImagesError
from gpuimages.core.progress import Progress, silent
from gpuimages.core.reference import shown
from gpuimages.core.runner import mask
from gpuimages.facts.registry_address import Registry, repository_path, split_ref
from gpuimages.facts.variant import Variant
from gpuimages.release.registry import (
    Credentials,
    CredentialsRejected,
    PublishError,
    RegistryApi,
    RegistryUnavailable,
    RetryPolicy,
    TransientRegistryError,
    classify,
    same_digest,
    with_retries,
)
from gpuimages.vet.smoke_report import (
    CHECK_STATUSES,
    EVIDENCE_KEY_ENV,
    SmokeReport,
    SmokeReportError,
    find_report,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ gate


@dataclass(frozen=True)
class GateDecision:
    """Whether a variant's local image may be pushed, and why (one line)."""

    variant: Variant
    vetted: bool
    reason: str
    image_id: str | None
    report_path: Path
    report: SmokeReport | None = None  # None: missing or not a valid report

    def smoke_counts(self) -> dict[str, int]:
        return self.report.counts() if self.report else dict.fromkeys(CHECK_STATUSES, 0)


def short_id(image_id: str | None) -> str:
    return (image_id or "-").removeprefix("sha256:")[:12]


AXIS_KEYS = ("name", "tag", "torch", "cuda", "cudnn", "flavor", "python", "os", "base", "horovod")


def _created(text: str | None) -> dt.datetime | None:
    """An ISO time (docker's nanoseconds and 'Z' included) to the second, UTC; None if not."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").split(".")[0].split("+")[0])
    except ValueError:
        return None
    return when.replace(tzinfo=dt.timezone.utc, microsecond=0)


def decide(
    variant: Variant,
    report_path: Path,
    report: SmokeReport | Mapping[str, Any] | None,
    local_id: str | None,
    report_error: str | None = None,
    *,
    image_created: str | None = None,
    evidence_key: str | None = None,
) -> GateDecision:
    """The gate: a valid, complete, consistent report of exactly the local image id.

    The verdict is re-derived from the checks (the `status` field must agree); the checks
    the variant requires must be there; the report must name the same variant, be newer
    than the image, and, when an evidence key is set, carry a valid HMAC of `invoke smoke`.
    `report` may be a parsed JSON document: it is validated here like `SmokeReport.read`.
    """
    smoke = f"invoke smoke --variant {variant.name} --report {report_path}"
    if isinstance(report, Mapping):
        try:
            report = SmokeReport.from_dict(report)
        except ValueError as exc:
            report, report_error = None, report_error or str(exc)

    def refuse(reason: str) -> GateDecision:
        return GateDecision(variant, False, reason, local_id, report_path, report)

    if local_id is None:
        return refuse(
            f"{variant.tag} does not exist locally: build and smoke-test it first "
            f"(invoke build --variant {variant.name}; {smoke})."
        )
    if report_error:
        return refuse(f"smoke report {report_path} {report_error}: re-run `{smoke}`.")
    if report is None:
        return refuse(f"no smoke report at {report_path}: run `{smoke}` first.")
    if report.variant_name != variant.name:
        return refuse(
            f"smoke report {report_path} is for {shown(report.variant_name)}, not {variant.name}."
        )
    if evidence_key and not report.signed_by(evidence_key):
        why = (
            "carries no signature"
            if not report.signature
            else "has a signature that does not match"
        )
        return refuse(
            f"smoke report {report_path} {why} ({EVIDENCE_KEY_ENV} is set): only a report "
            f"written by `invoke smoke` under the same key counts. Re-run `{smoke}`."
        )
    expected = variant.as_dict()
    differ = [k for k in AXIS_KEYS if report.variant.get(k) != expected.get(k)]
    if differ:
        return refuse(
            f"smoke report {report_path} describes another variant ({', '.join(differ)} "
            f"differ from {variant.name} as the matrix resolves it now): re-run `{smoke}`."
        )
    if report.status != report.derived_status:
        return refuse(
            f"smoke report {report_path} is inconsistent: its status says {shown(report.status)} "
            f"but its checks say {report.derived_status} (failed: "
            f"{', '.join(report.failed_checks) or 'none'}). Re-run `{smoke}`."
        )
    if report.status != "passed":
        failed = report.failed_checks
        which = f" (failed checks: {', '.join(failed)})" if failed else ""
        return refuse(
            f"smoke tests of {variant.name} did not pass: status {report.status!r}{which}."
        )
    if report.image_id != local_id:
        return refuse(
            f"smoke report {report_path} tested image {short_id(report.image_id)}, but "
            f"{variant.tag} is now image {short_id(local_id)}: re-run `{smoke}` on the "
            "current image."
        )
    missing = report.missing_checks()
    if missing:
        return refuse(
            f"smoke report {report_path} is incomplete: {', '.join(missing)} did not run or "
            f"did not pass (required for {variant.name}). Re-run `{smoke}`."
        )
    built, tested = _created(image_created), _created(report.created)
    if built and (tested is None or tested < built):
        return refuse(
            f"smoke report {report_path} ({report.created or 'no time'}) is older than image "
            f"{short_id(local_id)} (created {image_created}): re-run `{smoke}`."
        )
    counts = report.counts()
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
    found = local_image(client, tag)
    return found[0] if found else None


def local_image(client: docker.DockerClient, tag: str) -> tuple[str, str | None] | None:
    """(image id, created) of the local image a tag names, or None."""
    try:
        image = client.images.get(tag)
        return image.id, image.attrs.get("Created")
    except docker.errors.ImageNotFound:
        return None
    except SDK_ERRORS as exc:
        raise GpuImagesError(f"could not inspect {tag}: {sdk_message(exc)}") from None


def gate(
    variant: Variant, reports: Path, client: docker.DockerClient, count: int = 1
) -> GateDecision:
    """Decide for one variant, its report found where `invoke smoke --report` put it."""
    path = find_report(variant, reports, count)
    report, error = None, None
    try:
        report = SmokeReport.read(path)
    except SmokeReportError as exc:
        error = None if exc.missing else exc.why
    local = local_image(client, variant.tag)
    return decide(
        variant,
        path,
        report,
        local[0] if local else None,
        error,
        image_created=local[1] if local else None,
        evidence_key=os.environ.get(EVIDENCE_KEY_ENV) or None,
    )


# ------------------------------------------------------------------------------ push


@dataclass(frozen=True)
class Pushed:
    digest: str
    manifest_bytes: int | None


LAYER_DONE = ("Pushed", "Layer already exists", "Mounted from")


@dataclass
class PushProgress:
    """Layers and bytes of one push, from the engine's per-layer status lines."""

    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # id: (sent, total)
    done: set[str] = field(default_factory=set)

    def update(self, chunk: Mapping[str, Any]) -> bool:
        """Take one status line; True when a layer just finished."""
        layer, status = chunk.get("id"), str(chunk.get("status") or "")
        if not layer or len(str(layer)) != 12:  # layer ids are short digests; not "2.13.0-…"
            return False
        sent, total = self.layers.get(layer, (0, 0))
        detail = chunk.get("progressDetail") or {}
        if detail.get("total"):
            sent, total = int(detail.get("current") or 0), int(detail["total"])
        self.layers[layer] = (sent, total)
        if status.startswith(LAYER_DONE) and layer not in self.done:
            self.done.add(layer)
            return True
        return False

    def line(self) -> str:
        sent = sum(total if lid in self.done else cur for lid, (cur, total) in self.layers.items())
        total = sum(t for _, t in self.layers.values())
        size = f", {sent / 1e6:,.0f} of {total / 1e6:,.0f} MB" if total >= 1e6 else ""
        return f"{len(self.done)}/{len(self.layers)} layers{size}"


def read_push_stream(
    chunks: Iterable[Mapping[str, Any]],
    secrets: Iterable[str] = (),
    on_progress: Progress = silent,
    every_s: float = 2.0,
) -> Pushed:
    """The pushed manifest digest from docker's push stream; errors become exceptions.

    on_progress hears "N/M layers, X of Y MB" when a layer finishes and every few seconds.
    """
    secrets = tuple(secrets)
    digest, size = None, None
    progress, said = PushProgress(), time.monotonic()
    for chunk in chunks:
        finished = progress.update(chunk)
        if finished or time.monotonic() - said >= every_s:
            on_progress(progress.line())
            said = time.monotonic()
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


def push(
    client: docker.DockerClient,
    ref: str,
    credentials: Credentials | None,
    on_progress: Progress = silent,
) -> Pushed:
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
        return read_push_stream(stream, secrets, lambda line: on_progress(f"{ref}: {line}"))
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


PublishStatus = Literal["published", "refused", "failed", "planned"]  # planned: dry run


@dataclass
class PublishResult:
    variant: Variant
    status: PublishStatus
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
    report = decision.report
    return {
        "report": str(decision.report_path),
        "status": report.status if report else None,
        "created": (report.created or None) if report else None,
        "image_id": report.image_id if report else None,
        "evidence_digest": (report.digest or None) if report else None,
        "signed": bool(report and report.signature),
        **decision.smoke_counts(),
    }


def _result(decision: GateDecision, status: PublishStatus, reason: str, **kw: Any) -> PublishResult:
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
    on_progress: Progress = silent,
) -> PublishResult:
    """Tag the vetted image id, push it (with retries), verify the digest at the registry."""
    start = time.monotonic()
    ref = registry.tag_for(decision.variant)
    with engine_errors(f"could not tag image {short_id(decision.image_id)} as {ref}", PublishError):
        image = client.images.get(decision.image_id)
        image.tag(*split_ref(ref))
    log.info("pushing %s (image %s)", ref, short_id(decision.image_id))
    pushed = with_retries(
        lambda: push(client, ref, credentials, on_progress), policy, f"push of {ref}", sleep=sleep
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
    on_progress: Progress = silent,
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
                    results[i] = publish_one(
                        d, registry, client, api, credentials, policy, sleep, on_progress
                    )
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
