"""Promotion: copy the smoke-tested digests from a staging repository to the public one.

    invoke promote --from REG/NS --to REG/NS [--variant NAME ...] [--manifest PATH ...]

Nothing is rebuilt or pulled. Per variant: the staging tag's digest is read from the
source registry; a release manifest written by `invoke publish` to that staging registry
must record exactly that digest as published with a passed smoke report of the same image
id (and, with GPUIMAGES_EVIDENCE_KEY, signed: gpuimages/vet/evidence.py); then the image is
copied by digest through the registry API (gpuimages/release/imagecopy.py) and the destination's
digest is read back and compared. Every attempt is recorded in the manifest that held the
evidence, as `promotions: [{status: promoted | refused | failed, ...}]`; only a copy whose
digest was read back equal is `promoted`.

Credentials: the destination's from GPUIMAGES_REGISTRY_USER / GPUIMAGES_REGISTRY_PASSWORD
(as for publish), the source's from GPUIMAGES_FROM_REGISTRY_USER /
GPUIMAGES_FROM_REGISTRY_PASSWORD; else the docker config's login for each host.
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
from typing import Any, Literal

from gpuimages.core.errors import UserInputError, did_you_mean
from gpuimages.facts.registry_address import Registry, split_ref
from gpuimages.release.imagecopy import CopyStats, Repository, copy_image
from gpuimages.release.manifest import ReleaseManifest, to_markdown
from gpuimages.release.registry import (
    ENV_PASSWORD,
    ENV_USER,
    Credentials,
    PublishError,
    RegistryApi,
    RetryPolicy,
    resolve_credentials,
    with_retries,
)
from gpuimages.vet import evidence

log = logging.getLogger(__name__)

RELEASE_ROOT = Path("reports/release")
ENV_FROM_USER = "GPUIMAGES_FROM_REGISTRY_USER"
ENV_FROM_PASSWORD = "GPUIMAGES_FROM_REGISTRY_PASSWORD"

Status = Literal["promoted", "refused", "failed", "planned"]


@dataclass(frozen=True)
class Evidence:
    """One image entry of one release manifest file."""

    manifest: Path
    index: int
    entry: Mapping[str, Any]

    @property
    def variant(self) -> str:
        return str((self.entry.get("variant") or {}).get("name"))

    @property
    def repository(self) -> str:
        """The image's repository below the registry's namespace ('gpuimages/pytorch')."""
        return str((self.entry.get("variant") or {}).get("tag", "")).rsplit(":", 1)[0]


@dataclass
class Promotion:
    variant: str
    status: Status
    reason: str
    source: str | None = None  # host/ns/repo:tag
    destination: str | None = None
    digest: str | None = None
    manifest: Path | None = None  # the release manifest holding the evidence...
    index: int | None = None  # ...and its entry, where the attempt is recorded
    stats: CopyStats = field(default_factory=CopyStats)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("promoted", "planned")

    @property
    def pull(self) -> str | None:
        if self.status != "promoted" or not (self.destination and self.digest):
            return None
        return f"{split_ref(self.destination)[0]}@{self.digest}"

    def record(self, at: str) -> dict[str, Any]:
        """What goes into the manifest entry's `promotions` list."""
        return {
            "status": self.status,
            "reason": self.reason,
            "at": at,
            "from": self.source,
            "to": self.destination,
            "digest": self.digest,
            "pull": self.pull,
            **self.stats.as_dict(),
            "duration_s": round(self.duration_s, 2),
        }


# ------------------------------------------------------------------ release manifests


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """manifest.json files: those named, and every one below the folders named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("manifest.json"))
        elif path.is_file():
            found.append(path)
        else:
            raise UserInputError(
                f"--manifest {path}: no such file or folder (the release manifests `invoke "
                f"publish` writes under {RELEASE_ROOT}/)."
            )
    return list(dict.fromkeys(found))


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserInputError(f"release manifest {path} is not readable JSON ({exc}).") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise UserInputError(f"{path} is not a gpuimages release manifest (no 'images' list).")
    return doc


def evidence_for(paths: Iterable[Path], source: Registry) -> dict[str, list[Evidence]]:
    """Per variant name, the entries of manifests written for the source registry, oldest first."""
    found: dict[str, list[tuple[str, Evidence]]] = {}
    for path in manifest_files(paths):
        doc = read_manifest(path)
        if str(doc.get("registry")) != str(source):
            log.debug("%s is for registry %s, not %s", path, doc.get("registry"), source)
            continue
        for i, entry in enumerate(doc["images"]):
            if isinstance(entry, dict):
                ev = Evidence(path, i, entry)
                found.setdefault(ev.variant, []).append((str(doc.get("created")), ev))
    oldest_first = {n: sorted(pairs, key=lambda p: p[0]) for n, pairs in found.items()}
    return {n: [ev for _, ev in pairs] for n, pairs in oldest_first.items()}


# --------------------------------------------------------------------------- promote


def _at(ev: Evidence) -> tuple[Path, int]:
    return ev.manifest, ev.index


def repository_in(registry: Registry, repository: str) -> str:
    return f"{registry.namespace}/{repository}" if registry.namespace else repository


def promote_one(
    name: str,
    candidates: list[Evidence],
    *,
    source: RegistryApi,
    dest: RegistryApi,
    policy: RetryPolicy,
    key: bytes | None,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Promotion:
    start = time.monotonic()
    latest = candidates[-1]
    repo = latest.repository
    src = Repository(source, repository_in(source.registry, repo))
    dst = Repository(dest, repository_in(dest.registry, repo))
    src_ref, dst_ref = f"{src.where}:{name}", f"{dst.where}:{name}"
    promotion = Promotion(name, "refused", "", src_ref, dst_ref, latest.manifest, latest.index)
    try:
        lookup = lambda: source.manifest_bytes(src.name, name)  # noqa: E731
        current = with_retries(lookup, policy, f"lookup of {src_ref}", sleep=sleep).digest
    except PublishError as exc:
        promotion.status, promotion.reason = "failed", str(exc)
        return promotion
    promotion.digest = current
    matching = [e for e in candidates if (e.entry.get("digest") or "").lower() == current.lower()]
    chosen = matching[-1] if matching else latest
    promotion.manifest, promotion.index = chosen.manifest, chosen.index
    why = evidence.refusal(chosen.entry, current, key)
    if why:
        promotion.reason = f"{src_ref} is {current}, and {why}; nothing was copied."
        return promotion
    if dry_run:
        promotion.status, promotion.reason = "planned", f"evidence holds for {current}"
        return promotion
    log.info("promoting %s@%s -> %s", src_ref, current, dst_ref)
    try:
        promotion.stats = copy_image(src, dst, current, name, policy, sleep=sleep)
    except PublishError as exc:
        promotion.status = "failed"
        promotion.reason = f"copy to {dst_ref} failed: {exc}"
        promotion.duration_s = time.monotonic() - start
        return promotion
    promotion.status = "promoted"
    s = promotion.stats
    promotion.reason = (
        f"copied by digest and read back equal at {dest.registry.host} ({s.mounted} blobs "
        f"mounted, {s.streamed} streamed, {s.present} already there)"
    )
    promotion.duration_s = time.monotonic() - start
    return promotion


def promote(
    names: Iterable[str],
    *,
    source: Registry,
    dest: Registry,
    manifests: Iterable[Path],
    source_api: RegistryApi,
    dest_api: RegistryApi,
    policy: RetryPolicy,
    key: bytes | None,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Promotion]:
    """One Promotion per variant, in the order asked (or of the manifests)."""
    found = evidence_for(manifests, source)
    wanted = list(dict.fromkeys(names)) or sorted(found)
    if not wanted:
        raise UserInputError(
            f"no release manifest among those given records an image published to {source}: "
            f"run `invoke publish --registry {source}` first, or pass --manifest."
        )
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise UserInputError(
            f"no release manifest for {source} records {', '.join(unknown)}"
            f"{did_you_mean(unknown[0], found)}; recorded: {', '.join(sorted(found)) or '(none)'}."
        )
    stop: PublishError | None = None
    if not dry_run:
        try:
            with_retries(dest_api.ping, policy, f"registry {dest.url}", sleep=sleep)
        except PublishError as exc:
            stop = exc
    out = []
    for name in wanted:
        if stop is not None:
            latest = found[name][-1]
            out.append(Promotion(name, "failed", str(stop), None, None, None, *_at(latest)))
            continue
        p = promote_one(
            name,
            found[name],
            source=source_api,
            dest=dest_api,
            policy=policy,
            key=key,
            dry_run=dry_run,
            sleep=sleep,
        )
        out.append(p)
    return out


# ------------------------------------------------------------------------ recording


def _timestamp(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()


def promotions_markdown(promotions: Iterable[Mapping[str, Any]], variant: str) -> list[str]:
    lines = []
    for p in promotions:
        target = p.get("pull") or p.get("to") or "-"
        lines.append(f"- `{variant}` **{p['status']}** → `{target}` ({p['at']}): {p['reason']}")
    return lines


def manifest_markdown(doc: Mapping[str, Any]) -> str:
    """The release notes again, with a Promotions section when there are any."""
    manifest = ReleaseManifest(
        str(doc.get("created")),
        str(doc.get("registry")),
        doc.get("revision"),
        tuple(doc["images"]),
    )
    lines: list[str] = []
    for image in doc["images"]:
        lines += promotions_markdown(image.get("promotions") or [], image["variant"]["name"])
    text = to_markdown(manifest)
    return text + ("\n### Promotions\n\n" + "\n".join(lines) + "\n" if lines else "")


def record(promotions: Iterable[Promotion], now: dt.datetime | None = None) -> list[Path]:
    """Add each promotion to the manifest holding its evidence; rewrite JSON and Markdown."""
    at = _timestamp(now)
    by_file: dict[Path, list[Promotion]] = {}
    for p in promotions:
        if p.manifest is not None:
            by_file.setdefault(p.manifest, []).append(p)
    written = []
    for path, items in by_file.items():
        doc = read_manifest(path)
        for p in items:
            entry = doc["images"][p.index or 0]
            entry.setdefault("promotions", []).append(p.record(at))
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(path)
        path.with_name("manifest.md").write_text(manifest_markdown(doc))
        written.append(path)
    return written


def summary_markdown(promotions: list[Promotion], source: Registry, dest: Registry) -> str:
    done = sum(p.status == "promoted" for p in promotions)
    lines = [
        f"## gpuimages promotion {source} → {dest}",
        "",
        f"{done} of {len(promotions)} promoted",
        "",
        "| variant | status | digest | to | why |",
        "|---|---|---|---|---|",
    ]
    for p in promotions:
        digest = f"`{p.digest[:19]}`" if p.digest else "-"
        lines.append(
            f"| {p.variant} | **{p.status}** | {digest} | `{p.pull or p.destination or '-'}` | "
            + " ".join(p.reason.split()).replace("|", "\\|")
            + " |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- the whole run


def source_credentials(host: str, env: Mapping[str, str]) -> Credentials | None:
    """The source registry's login: GPUIMAGES_FROM_REGISTRY_*, else the docker config."""
    view = {k: v for k, v in env.items() if k not in (ENV_USER, ENV_PASSWORD)}
    if env.get(ENV_FROM_USER) or env.get(ENV_FROM_PASSWORD):
        view[ENV_USER] = env.get(ENV_FROM_USER, "")
        view[ENV_PASSWORD] = env.get(ENV_FROM_PASSWORD, "")
    try:
        return resolve_credentials(host, view)
    except UserInputError as exc:
        raise UserInputError(
            str(exc).replace(ENV_USER, ENV_FROM_USER).replace(ENV_PASSWORD, ENV_FROM_PASSWORD)
        ) from None


@dataclass(frozen=True)
class PromoteRun:
    source: Registry
    dest: Registry
    promotions: list[Promotion]
    manifests: list[Path]

    @property
    def not_promoted(self) -> list[Promotion]:
        return [p for p in self.promotions if not p.ok]


def promote_release(
    *,
    source: str,
    dest: str,
    variants: Iterable[str] = (),
    manifests: Iterable[Path] = (RELEASE_ROOT,),
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
    env: Mapping[str, str] = os.environ,
    sleep: Callable[[float], None] = time.sleep,
) -> PromoteRun:
    """Check evidence, copy, verify, record; the step summary gets a table."""
    src, dst = Registry.parse(source), Registry.parse(dest)
    if src.prefix == dst.prefix:
        raise UserInputError(f"--from and --to are the same ({src}): nothing to promote.")
    policy = policy or RetryPolicy.from_env(env)
    src_creds = source_credentials(src.host, env)
    dst_creds = resolve_credentials(dst.host, env)
    for what, creds in (("source", src_creds), ("destination", dst_creds)):
        if creds:
            log.info("%s registry credentials: %s", what, creds)  # never the password
    key = evidence.evidence_key(env)
    if key is None:
        log.warning(
            "%s is not set: release manifests are trusted unsigned (set it in CI so an edited "
            "manifest cannot promote an untested digest)",
            evidence.ENV_EVIDENCE_KEY,
        )
    promotions = promote(
        variants,
        source=src,
        dest=dst,
        manifests=list(manifests),
        source_api=RegistryApi(src, src_creds),
        dest_api=RegistryApi(dst, dst_creds),
        policy=policy,
        key=key,
        dry_run=dry_run,
        sleep=sleep,
    )
    written = [] if dry_run else record(promotions)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary and not dry_run:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(summary_markdown(promotions, src, dst) + "\n")
    return PromoteRun(src, dst, promotions, written)
