"""Disk for builds: what the engine's data root has free, what a build needs there, and
making room by trimming BuildKit's cache (least recently used first).

A CUDA build holds the torch and nvidia-* wheels twice while it runs (downloaded in the
builder stage, installed in the image) and keeps both in BuildKit's cache afterwards: on
this project's CI machine three CUDA 13 images took up to 18 GB while they existed, and a
cold test run grew the build cache by about 37 GB (README, measured 2026-12-06). A build
that runs out of disk fails late, after the downloads; the figures here let gpuimages say
so before it starts, and say what to do when it happened."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import docker

from gpuimages.build.engine import SDK_ERRORS
from gpuimages.facts.variant import Variant

log = logging.getLogger(__name__)

GB = 1000**3  # docker's own "15GB" is decimal, and so are the figures people compare with
NEED_CPU = 5 * GB
NEED_CUDA = 20 * GB
# What a user runs to make room and keep the cache that makes the next build fast.
PRUNE_HINT = "docker builder prune --keep-storage 15GB"
_NO_SPACE = "no space left on device"


def gb(n: int) -> str:
    return f"{n / GB:.1f} GB"


@dataclass(frozen=True)
class EngineDisk:
    """The engine's data root and what is free there; `free` is None when the root is not
    on this host's file systems (a remote engine, a rootless one in its own namespace)."""

    root: str
    free: int | None
    build_cache: int | None  # bytes held by BuildKit's cache, None when not asked

    def describe(self) -> str:
        free = f"{gb(self.free)} free" if self.free is not None else "free space unknown"
        cache = f", {gb(self.build_cache)} of it BuildKit's cache" if self.build_cache else ""
        where = f"The engine's data root {self.root}"
        return f"{where}: {free}{cache}" if self.free is None else f"{where} has {free}{cache}"


def free_bytes(path: str | Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def build_cache_bytes(client: docker.DockerClient) -> int | None:
    try:
        records = client.api.df().get("BuildCache") or []
    except SDK_ERRORS as exc:
        log.debug("docker system df failed: %s", exc)
        return None
    return sum(int(r.get("Size") or 0) for r in records)


def engine_disk(client: docker.DockerClient, *, with_cache: bool = True) -> EngineDisk | None:
    """The engine's data root and its free space, or None when the engine does not say."""
    try:
        root = client.info().get("DockerRootDir") or ""
    except SDK_ERRORS as exc:
        log.debug("docker info failed: %s", exc)
        return None
    if not root:
        return None
    cache = build_cache_bytes(client) if with_cache else None
    return EngineDisk(root, free_bytes(root), cache)


def disk_for(client: docker.DockerClient, need: int) -> EngineDisk | None:
    """engine_disk, with the build cache's size (`docker system df`, slow on a big cache)
    asked only when fewer than `need` bytes are free: only then is it worth saying."""
    disk = engine_disk(client, with_cache=False)
    if disk is None or disk.free is None or disk.free >= need:
        return disk
    return engine_disk(client) or disk


def build_need(variants: Iterable[Variant]) -> int:
    """Free disk one build of the largest of these variants takes, about (see above)."""
    return max((NEED_CPU if v.is_cpu else NEED_CUDA for v in variants), default=0)


def space_warning(disk: EngineDisk | None, need: int) -> str | None:
    """One paragraph when the engine's disk is short of `need`, else None."""
    if disk is None or disk.free is None or disk.free >= need:
        return None
    return (
        f"{disk.describe()}; a build of this kind needs about {gb(need)} there and may fail "
        f"with 'no space left on device' after its downloads. Make room first: "
        f"`{PRUNE_HINT}` trims BuildKit's cache (the next build is slower), "
        "`docker image prune` removes untagged images."
    )


def check_space(client: docker.DockerClient, variants: Iterable[Variant]) -> str | None:
    """space_warning for a build of these variants on this engine."""
    need = build_need(variants)
    return space_warning(disk_for(client, need), need)


def out_of_space(log_text: str) -> bool:
    return _NO_SPACE in log_text.lower()


def no_space_remedy(disk: EngineDisk | None) -> str:
    """What to do when a build failed because a disk filled up (see out_of_space)."""
    now = f" ({disk.describe()[0].lower()}{disk.describe()[1:]} now)" if disk else ""
    return (
        f"The build ran out of disk{now}. Make room and build again: `{PRUNE_HINT}` trims "
        "BuildKit's cache, `docker image prune` removes untagged images, `docker system df` "
        "shows what holds the space; a CUDA build needs about "
        f"{gb(NEED_CUDA)} free. Nothing was tagged."
    )


@dataclass(frozen=True)
class Room:
    """What make_room found and did."""

    before: EngineDisk
    after: EngineDisk
    need: int

    @property
    def enough(self) -> bool:
        return self.after.free is None or self.after.free >= self.need


def keep_for(disk: EngineDisk, need: int) -> int:
    """How much build cache to keep so that `need` is free: the shortfall comes off the
    least recently used end of the cache, and no more."""
    assert disk.free is not None and disk.build_cache is not None
    shortfall = need - disk.free
    return max(0, disk.build_cache - shortfall)


MAX_TRIMS = 6


def make_room(
    client: docker.DockerClient, need: int, before: EngineDisk | None = None
) -> Room | None:
    """Trim BuildKit's cache until `need` bytes are free on the engine's data root, least
    recently used records first. A record's size is not always what its removal frees
    (layers shared with images or other records), so each pass trims by the shortfall
    measured after the last one; only a pass that removed nothing at all leads to the
    whole cache going. Images are never removed here. `before`: disk_for(client, need),
    when the caller has it already. None when the engine does not say where its data
    lives on this host."""
    before = before or disk_for(client, need)
    if before is None or before.free is None:
        return None
    after, keep_nothing = before, False
    for _ in range(MAX_TRIMS):
        if after.free is None or after.free >= need or not after.build_cache:
            break
        keep = 0 if keep_nothing else keep_for(after, need)
        log.info("trimming BuildKit's cache to %s to free %s", gb(keep), gb(need))
        # all=True: every unused record counts, not only dangling ones (`docker builder
        # prune -a`); keep-storage 0 means no floor.
        client.api.prune_builds(keep_storage=keep, all=True)
        now = engine_disk(client) or after
        keep_nothing = (now.build_cache or 0) >= after.build_cache
        after = now
    return Room(before, after, need)
