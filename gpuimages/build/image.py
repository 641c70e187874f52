"""Variant -> image: stage a build context, run BuildKit, check the size budget, tag.

A variant's tag is only ever moved to an image that built completely and fits its size
budget; a failed build removes the tag so it cannot point at a stale image.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import docker
import docker.errors

from gpuimages.build.buildcache import BuildCache
from gpuimages.build.diskspace import check_space, engine_disk, no_space_remedy, out_of_space
from gpuimages.build.engine import DockerCli, engine_client, engine_errors
from gpuimages.build.startup import FACTS_FILE
from gpuimages.build.wheelcheck import refuse_missing
from gpuimages.core.errors import CommandError, GpuImagesError, UserInputError
from gpuimages.core.paths import ROOT, git_revision
from gpuimages.core.runner import run, stop_all
from gpuimages.facts.sources import PackageSources
from gpuimages.facts.variant import Variant

log = logging.getLogger(__name__)

MB = 1_000_000  # docker reports decimal megabytes
BUDGET_SLACK = 1.20  # a build may exceed its size budget by 20% before it fails
CONTEXT_PARTS = ("scripts/image", "scripts/smoke", "scripts/entrypoint")
BUILD_TIMEOUT_S = 3 * 3600


BuildStatus = Literal["built", "failed", "over-budget", "planned", "interrupted"]


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during builds: every build stopped, no tag moved; `results` has
    each variant's outcome ("interrupted" for those stopped) for the report."""

    def __init__(self, results: list[BuildResult], cause: BaseException) -> None:
        super().__init__()
        self.results, self.cause = results, cause


@dataclass
class BuildResult:
    variant: Variant
    status: BuildStatus
    image_id: str | None = None
    tags: list[str] = field(default_factory=list)
    size_bytes: int | None = None
    duration_s: float = 0.0
    log_path: Path | None = None
    error: str | None = None
    failed_step: str | None = None
    layers: list[dict[str, object]] = field(default_factory=list)
    cache: dict[str, object] | None = None  # the registry cache used, if any (cache_flags)

    @property
    def ok(self) -> bool:
        return self.status in ("built", "planned")

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["variant"] = self.variant.as_dict()
        d["log_path"] = str(self.log_path) if self.log_path else None
        d["size_mb"] = round(self.size_bytes / MB, 1) if self.size_bytes else None
        return d


def build_labels(variant: Variant, revision: str | None) -> dict[str, str]:
    """Labels known only at build time; given with --label so they create no layer."""
    labels = {
        "org.opencontainers.image.created": dt.datetime.now(dt.timezone.utc)
        .replace(microsecond=0)
        .isoformat(),
        "org.opencontainers.image.source": os.environ.get(
            "GPUIMAGES_SOURCE_URL", "https://github.com/gpuimages/gpuimages"
        ),
    }
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    return labels


def _context_files(
    sources: PackageSources, dockerfiles: Path | None = None
) -> list[tuple[Path, str]]:
    """(source file, path inside the context) for everything a Dockerfile may read."""
    files: list[tuple[Path, str]] = []
    if dockerfiles is not None:  # each variant's start-up facts, rendered beside its Dockerfile
        for src in sorted(dockerfiles.glob(f"*/{FACTS_FILE}")):
            files.append((src, f"dockerfiles/{src.parent.name}/{FACTS_FILE}"))
    for part in CONTEXT_PARTS:
        for src in sorted((ROOT / part).rglob("*")):
            if src.is_file() and "__pycache__" not in src.parts:
                files.append((src, src.relative_to(ROOT).as_posix()))
    if sources.wheelhouse:
        for src in sorted(sources.wheelhouse.iterdir()):
            if src.is_file() and src.suffix in (".whl", ".gz", ".zip"):
                files.append((src, f"wheelhouse/{src.name}"))
    return files


CONTEXT_DIR_ENV = "GPUIMAGES_CONTEXT_DIR"


def context_root(work_dir: Path) -> Path:
    """Where build contexts are staged: $GPUIMAGES_CONTEXT_DIR, else WORK_DIR/context.

    BuildKit keeps a context it was sent as a cache record keyed by the context's path: a
    build from another folder (another checkout, a test's temporary one) sends the whole
    wheelhouse again and adds a copy of it, gigabytes, to the build cache. Builds that run
    from many folders name one context folder here and share that copy."""
    env = os.environ.get(CONTEXT_DIR_ENV, "").strip()
    root = Path(env).expanduser().absolute() if env else work_dir / "context"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = f"{CONTEXT_DIR_ENV}={env}" if env else str(root)
        raise UserInputError(
            f"cannot stage build contexts in {where}: {exc.strerror or exc}. Name a folder "
            f"this user can write with {CONTEXT_DIR_ENV}, or leave it unset for {work_dir}/context."
        ) from None
    return root


def context_name(wheelhouse: Path | None) -> str:
    """The folder under context_root that builds from this wheelhouse share."""
    key = str(wheelhouse.resolve()) if wheelhouse else "-"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def stage_context(
    variant: Variant, sources: PackageSources, work_dir: Path, dockerfiles: Path | None = None
) -> Path:
    """A build context holding only what the Dockerfile reads, laid out like the repo.

    One directory per wheelhouse, kept between builds and synced in place: BuildKit sends
    a context incrementally when its path stays the same, so the multi-GB wheels travel
    once for all variants that share them, and a changed smoke script costs only itself.
    """
    files = _context_files(sources, dockerfiles)
    ctx = context_root(work_dir) / context_name(sources.wheelhouse)
    ctx.mkdir(exist_ok=True)
    with open(ctx.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # builds of sibling variants sync the same files
        wanted = {rel for _src, rel in files}
        for path in sorted(ctx.rglob("*"), reverse=True):
            rel = path.relative_to(ctx).as_posix()
            if path.is_file() and rel not in wanted:
                path.unlink()
        (ctx / "wheelhouse").mkdir(exist_ok=True)
        for src, rel in files:
            _sync(src, ctx / rel)
    log.debug("context %s for %s: %d files", ctx, variant.name, len(files))
    return ctx


def _sync(src: Path, dest: Path) -> None:
    have, want = (dest.stat() if dest.exists() else None), src.stat()
    if have and (have.st_size, have.st_mtime_ns) == (want.st_size, want.st_mtime_ns):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


_STEP = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$")
_MOUNT = re.compile(r"--mount=\S+")
_STEP_ERROR = re.compile(r"^#(\d+) ERROR: (.*)$")


def failed_step(log_text: str) -> str | None:
    """The BuildKit step that failed, from --progress=plain output."""
    steps: dict[str, str] = {}
    for line in log_text.splitlines():
        m = _STEP.match(line)
        if m:
            steps.setdefault(m.group(1), m.group(2))
            continue
        m = _STEP_ERROR.match(line)
        if m and m.group(1) in steps:
            # The RUN preambles' --mount options (bind, cache, secrets) say nothing about
            # what failed and would push the command out of a short line.
            step = _MOUNT.sub("", steps[m.group(1)])
            return " ".join(step.split())[:300]
    return None


_BASE_METADATA = re.compile(r"\[internal\] load metadata for (\S+)")


def base_pull_remedy(step: str | None) -> str | None:
    """What to do when BuildKit could not fetch a base image's metadata: no route to
    Docker Hub (or the registry the base names) from this host, or pull access denied."""
    m = _BASE_METADATA.match(step or "")
    if not m:
        return None
    image = m.group(1).removeprefix("docker.io/").removeprefix("library/")
    return (
        f"The base image {image} could not be fetched from its registry (no route from this "
        f"host, or access denied). Either name a mirror that has it: --base-image "
        f"<mirror>/{image} (matrix.yaml `sources:` keeps it for every build); or bring it "
        f"in as a file: `docker save {image} -o base.tar` where it can be pulled, then "
        f"`docker load -i base.tar` here and build again; Debian 12 variants of the os "
        f"route can use --local-base (made here by debootstrap, no registry)."
    )


def layer_breakdown(client: docker.DockerClient, image_id: str) -> list[dict[str, object]]:
    rows = []
    for entry in client.api.history(image_id):
        created_by = (entry.get("CreatedBy") or "").replace("/bin/bash -o pipefail -c ", "")
        rows.append(
            {"size_mb": round(entry.get("Size", 0) / MB, 1), "created_by": created_by[:160]}
        )
    return rows


def _untag(client: docker.DockerClient, tag: str) -> None:
    try:
        client.images.remove(tag, noprune=True)
        log.info("removed tag %s (it pointed at an older image)", tag)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        log.warning("could not remove stale tag %s: %s", tag, exc.explanation)


def _drop_untagged(client: docker.DockerClient, image_id: str) -> bool:
    """Remove an image the build refused when no tag names it (it would only hold disk:
    gigabytes for a CUDA image); True when it is gone."""
    try:
        if client.images.get(image_id).tags:
            return False
        client.images.remove(image_id, noprune=False)
    except docker.errors.ImageNotFound:
        return True
    except docker.errors.APIError as exc:  # a container still uses it: it stays
        log.warning("could not remove the refused image %s: %s", image_id[:19], exc.explanation)
        return False
    return True


LOCK_DIR = Path(tempfile.gettempdir()) / "gpuimages-locks"


def lock_file(tag: str, lock_dir: Path = LOCK_DIR) -> Path:
    """Where the build lock of a tag lives; it holds "pid N (since HH:MM:SSZ)" while held."""
    return lock_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", tag) + ".lock")


@contextlib.contextmanager
def variant_lock(
    variant: Variant, lock_dir: Path = LOCK_DIR, stopping: threading.Event | None = None
) -> Iterator[None]:
    """One build of a tag at a time on this host, whichever checkout it comes from.

    Two builds of one variant would otherwise both report success while the last one wins
    the tag, and would write one log file at once. The second waits, saying who holds it.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_file(variant.tag, lock_dir)
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another build"
            log.warning("%s is being built by %s; waiting for it to finish", variant.tag, holder)
            while True:  # polled, so Ctrl-C/SIGTERM (the stopping event) ends the wait
                if stopping is not None and stopping.is_set():
                    raise GpuImagesError(
                        f"stopped while waiting for {holder} to build it"
                    ) from None
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        started = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%SZ")
        fh.write(f"pid {os.getpid()} (since {started})")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_one(variant: Variant, cli: DockerCli, sources: PackageSources, **kwargs) -> BuildResult:
    """Build one variant (see _build_one), holding its lock for the whole build."""
    with variant_lock(variant, stopping=kwargs.get("stopping")):
        return _build_one(variant, cli, sources, **kwargs)


def _build_one(
    variant: Variant,
    cli: DockerCli,
    sources: PackageSources,
    *,
    dockerfiles: Path,
    work_dir: Path,
    client: docker.DockerClient,
    on_line: Callable[[str], None] | None = None,
    revision: str | None = None,
    extra_args: tuple[str, ...] = (),
    cache: BuildCache | None = None,
    stopping: threading.Event | None = None,
) -> BuildResult:
    dockerfile = dockerfiles / variant.name / "Dockerfile"
    log_path = work_dir / "logs" / f"{variant.name}.log"
    result = BuildResult(variant, "failed", log_path=log_path)
    cache_argv, result.cache = cache_flags(cache, cli, variant)
    if not dockerfile.is_file():
        result.error = f"{dockerfile} is missing: run `invoke render` first."
        return result
    ctx = stage_context(variant, sources, work_dir, dockerfiles)
    if stopping is not None and stopping.is_set():  # Ctrl-C while the context was staged
        result.status, result.error = "interrupted", "stopped by Ctrl-C or SIGTERM"
        return result
    iidfile = work_dir / "iid" / f"{variant.name}.txt"
    iidfile.parent.mkdir(parents=True, exist_ok=True)
    iidfile.unlink(missing_ok=True)
    argv = [
        *cli.build_argv(),
        "--progress=plain",
        "-f",
        str(dockerfile),
        "--target",
        variant.flavor,
        "--iidfile",
        str(iidfile),
    ]
    for key, value in sorted(sources.build_args(variant).items()):
        argv += ["--build-arg", f"{key}={value}"]
    if sources.ca_bundle:
        argv += ["--secret", f"id=ca-bundle,src={sources.ca_bundle}"]
    for key, value in sorted(build_labels(variant, revision).items()):
        argv += ["--label", f"{key}={value}"]

    start = time.monotonic()
    try:
        with sources.secret_files() as secret_args:
            run(
                [*argv, *secret_args, *cache_argv, *extra_args, str(ctx)],
                log_path=log_path,
                env=cli.build_env(),
                on_line=on_line,
                timeout=BUILD_TIMEOUT_S,
                what=f"build of {variant.name}",
                secrets=[login.password for login in sources.logins],
            )
    except CommandError as exc:
        result.duration_s = time.monotonic() - start
        if stopping is not None and stopping.is_set():
            result.status, result.error = "interrupted", "stopped by Ctrl-C or SIGTERM"
            return result  # the tag stays where it was
        log_text = log_path.read_text(errors="replace")
        result.failed_step = failed_step(log_text)
        step = f" at step {result.failed_step}" if result.failed_step else ""
        result.error = f"build failed{step}; log: {log_path}\n{exc.tail}"
        remedy = base_pull_remedy(result.failed_step)
        if remedy is None and out_of_space(log_text + exc.tail):
            remedy = no_space_remedy(engine_disk(client, with_cache=False))
        if remedy:
            result.error += f"\n{remedy}"
        _untag(client, variant.tag)
        return result
    result.duration_s = time.monotonic() - start
    image_id = iidfile.read_text().strip()
    with engine_errors(f"build of {variant.name} finished, but its image {image_id[:19]}"):
        image = client.images.get(image_id)
        result.image_id = image_id
        result.size_bytes = int(image.attrs["Size"])
        result.layers = layer_breakdown(client, image_id)

    budget = variant.size_budget_mb
    if budget and result.size_bytes > budget * MB * BUDGET_SLACK:
        result.status = "over-budget"
        table = "\n".join(f"  {r['size_mb']:>9.1f} MB  {r['created_by']}" for r in result.layers)
        result.error = (
            f"image is {result.size_bytes / MB:.0f} MB, over its size budget of {budget} MB by "
            f"more than {BUDGET_SLACK - 1:.0%}; layers:\n{table}"
        )
        _untag(client, variant.tag)
        if _drop_untagged(client, image_id):
            result.error += (
                "\nThe image was removed, not left on the disk untagged; BuildKit's cache keeps "
                "its layers, so a build with a larger size_budget_mb reuses them."
            )
        return result
    with engine_errors(f"could not tag image {image_id[:19]} as {variant.tag}"):
        image.tag(*variant.tag.rsplit(":", 1))
    result.tags = [variant.tag]
    result.status = "built"
    return result


def cache_flags(
    cache: BuildCache | None, cli: DockerCli, variant: Variant
) -> tuple[list[str], dict[str, object] | None]:
    """The docker CLI's registry-cache flags for this client, and what the report says.

    With buildx: a `type=registry,mode=max` cache image; with a pre-23 client: the inline
    cache (gpuimages/build/buildcache.py).
    """
    if cache is None:
        return [], None
    return cache.argv(variant, cli.buildx), cache.report(variant, cli.buildx)


def build_many(
    variants: tuple[Variant, ...],
    cli: DockerCli,
    sources: PackageSources,
    *,
    dockerfiles: Path,
    work_dir: Path,
    jobs: int = 1,
    on_line: Callable[[Variant, str], None] | None = None,
    on_done: Callable[[BuildResult], None] | None = None,
    cache_to: str | None = None,
    cache_from: str | None = None,
) -> list[BuildResult]:
    """Build independent variants, `jobs` at a time; results in the variants' order.

    cache_to / cache_from: image references for BuildKit's registry cache ('{variant}' is
    replaced by each variant's name).
    """
    cache = BuildCache.from_options(cache_to, cache_from)
    sources.validate()
    if sources.offline and sources.wheelhouse:
        # An offline build would only fail minutes in, at pip: name the missing wheel now.
        for variant in variants:
            refuse_missing(variant, str(sources.wheelhouse))
    context_root(work_dir)  # an unusable GPUIMAGES_CONTEXT_DIR is refused before any build
    client = engine_client()
    short = check_space(client, variants)
    if short:
        log.warning(short)
    revision = git_revision()
    stopping = threading.Event()

    def one(variant: Variant) -> BuildResult:
        if stopping.is_set():
            return BuildResult(variant, "interrupted", error="not started: interrupted")

        def line_cb(line: str) -> None:
            if on_line:
                on_line(variant, line)

        try:
            res = build_one(
                variant,
                cli,
                sources,
                dockerfiles=dockerfiles,
                work_dir=work_dir,
                client=client,
                on_line=line_cb,
                revision=revision,
                cache=cache,
                stopping=stopping,
            )
        except GpuImagesError as exc:
            res = BuildResult(variant, "failed", error=str(exc))
        if on_done:
            on_done(res)
        return res

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    futures = [pool.submit(one, v) for v in variants]
    try:
        return [f.result() for f in futures]
    except KeyboardInterrupt as exc:
        stopping.set()
        stop_all()
        for f in futures:
            f.cancel()
        pool.shutdown(wait=True)
        results = [
            f.result()
            if f.done() and not f.cancelled() and f.exception() is None
            else BuildResult(v, "interrupted", error="interrupted")
            for v, f in zip(variants, futures, strict=True)
        ]
        raise BuildInterrupted(results, exc) from None
    finally:
        pool.shutdown(wait=True)


def write_report(results: list[BuildResult], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": 1,
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "builds": [r.as_dict() for r in results],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
