"""The whole release run: registry, gate and push (publish.py), then the manifest.

publish.py and manifest.py are leaves that know nothing of each other; this module
strings them together, starts a local registry when none is configured, and writes
reports/release/<UTC time>/: manifest.{json,md} (plus $GITHUB_STEP_SUMMARY), an SBOM
per published image (<variant>.cdx.json, sbom.py) and the catalog of the published
images (catalog.{json,md}, catalog.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import docker
import docker.errors

from gpuimages.build.engine import engine_client
from gpuimages.core.errors import CommandError, GpuImagesError, UserInputError
from gpuimages.core.paths import RELEASE_DIR, SCRIPTS, SMOKE_REPORTS
from gpuimages.core.progress import Progress, silent
from gpuimages.core.runner import run
from gpuimages.facts.compat import load_compat
from gpuimages.facts.registry_address import Registry
from gpuimages.facts.variant import Variant
from gpuimages.release.catalog import build_catalog, write_catalog
from gpuimages.release.manifest import ReleaseManifest, build_manifest, write_manifest
from gpuimages.release.publish import PublishResult, publish
from gpuimages.release.registry import RetryPolicy, resolve_credentials
from gpuimages.release.sbom import ImageRef, SbomOutcome, try_write_sbom
from gpuimages.vet.evidence import evidence_key

log = logging.getLogger(__name__)

LOCAL_REGISTRY_PORT = 5000


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


def stop_local_registry(port: int = LOCAL_REGISTRY_PORT, state_dir: Path | None = None) -> None:
    """Stop the registry ensure_local_registry started (its data is kept)."""
    argv = ["bash", str(SCRIPTS / "start-registry.sh"), "--stop", "--port", str(port)]
    if state_dir is not None:
        argv += ["--dir", str(state_dir)]
    try:
        run(argv, what="stopping the local registry", timeout=60)
    except CommandError as exc:
        log.warning("could not stop the local registry on 127.0.0.1:%d: %s", port, exc)


@dataclass(frozen=True)
class PublishRun:
    registry: Registry
    results: list[PublishResult]
    manifest_json: Path | None
    manifest_md: Path | None
    started_local_registry: bool
    catalog_json: Path | None = None
    catalog_md: Path | None = None

    @property
    def not_published(self) -> list[PublishResult]:
        return [r for r in self.results if not r.ok]


def registry_notes(run: PublishRun, *, configured: bool, dry_run: bool, matrix: Path) -> list[str]:
    """What the user should know about a registry they did not name."""
    if dry_run and not configured:
        return [
            f"no registry configured: a real run starts a local registry on {run.registry.host}"
        ]
    if run.started_local_registry:
        return [
            f"no registry configured (--registry, or `registry:` in {matrix}): started a local "
            f"registry at {run.registry.url}; it keeps running for pulls: stop it with "
            f"`bash scripts/start-registry.sh --stop --port {run.registry.host.rsplit(':', 1)[-1]}`"
        ]
    return []


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
    registry: Registry | str | None,
    reports: Path = SMOKE_REPORTS,
    report: Path | None = None,
    release_root: Path = RELEASE_DIR,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
    client: docker.DockerClient | None = None,
    env: Mapping[str, str] = os.environ,
    local_port: int = LOCAL_REGISTRY_PORT,
    on_progress: Progress = silent,
) -> PublishRun:
    """Gate, push, verify and write the release manifest (plus $GITHUB_STEP_SUMMARY).

    on_progress hears each push's layers and bytes as they go."""
    variants = tuple(variants)
    if report is not None:
        if len(variants) != 1 or report.is_dir():
            raise UserInputError(
                f"--report {report} is one image's smoke report file, for one variant "
                f"({len(variants)} selected): use --reports DIR for several."
            )
        reports = report
    policy = policy or RetryPolicy.from_env(env)
    # The engine first: nothing is started for a run that cannot push.
    client = client or engine_client(timeout=900)
    started = False
    if registry:
        target = registry if isinstance(registry, Registry) else Registry.parse(registry)
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
    try:
        return _publish_to(
            variants, target, reports, release_root, dry_run, policy, client, env, started,
            on_progress,
        )  # fmt: skip
    except BaseException:
        if started:  # never leave a process behind on a failed run
            stop_local_registry(local_port)
        raise


def _publish_to(
    variants: tuple[Variant, ...],
    target: Registry,
    reports: Path,
    release_root: Path,
    dry_run: bool,
    policy: RetryPolicy,
    client: docker.DockerClient,
    env: Mapping[str, str],
    started: bool,
    on_progress: Progress,
) -> PublishRun:
    credentials = resolve_credentials(target.host, env)
    if credentials:
        log.info("registry credentials: %s", credentials)  # user and source, never the password
    results = publish(
        variants,
        registry=target,
        reports=reports,
        client=client,
        credentials=credentials,
        policy=policy,
        dry_run=dry_run,
        on_progress=on_progress,
    )
    if dry_run:
        return PublishRun(target, results, None, None, started)
    manifest = build_manifest(
        results, registry=target, client=client, evidence_key=evidence_key(env)
    )
    out = release_dir(release_root)
    manifest = with_sboms(manifest, write_sboms(results, out, client))
    json_path, md_path = write_manifest(manifest, out, step_summary=env.get("GITHUB_STEP_SUMMARY"))
    catalog_json, catalog_md = write_catalog(build_catalog(manifest, load_compat()), out)
    return PublishRun(target, results, json_path, md_path, started, catalog_json, catalog_md)


def write_sboms(
    results: list[PublishResult], out: Path, client: docker.DockerClient
) -> dict[str, SbomOutcome]:
    """An SBOM per published image, in the release folder; variant name -> outcome."""
    outcomes = {}
    for r in results:
        if r.status != "published" or not r.image_id:
            continue
        ref = ImageRef(r.variant.name, r.image_id, r.registry_tag, r.digest)
        outcomes[r.variant.name] = try_write_sbom(
            client, ref, python=r.variant.python, torch=r.variant.torch, out_dir=out
        )
    return outcomes


def with_sboms(manifest: ReleaseManifest, sboms: Mapping[str, SbomOutcome]) -> ReleaseManifest:
    """The manifest with each published entry naming its SBOM (or why there is none)."""
    images = tuple(
        {**e, "sbom": sboms[e["variant"]["name"]].as_dict()} if e["variant"]["name"] in sboms else e
        for e in manifest.images
    )
    return replace(manifest, images=images)
