"""The disk arithmetic behind `invoke build`'s warning, its out-of-space remedy, the
doctor's "Disk for builds" row and the tests' own make-room step (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuimages.build.diskspace import (
    GB,
    NEED_CPU,
    NEED_CUDA,
    EngineDisk,
    Room,
    build_need,
    keep_for,
    make_room,
    no_space_remedy,
    out_of_space,
    space_warning,
)
from gpuimages.facts.matrix import load_matrix


@pytest.fixture(scope="module")
def variants(repo_root: Path):
    return {v.name: v for v in load_matrix(repo_root / "matrix.yaml").variants}


def test_a_cuda_build_needs_more_than_a_cpu_one(variants):
    cpu = variants["2.13.0-cpu-runtime"]
    cuda = variants["2.14.1-cuda13.0-cudnn9-runtime"]
    assert build_need([cpu]) == NEED_CPU
    assert build_need([cpu, cuda]) == NEED_CUDA > NEED_CPU
    assert build_need([]) == 0


def test_short_disk_warns_with_the_sizes_and_the_fix():
    disk = EngineDisk("/var/lib/docker", 4 * GB, 72 * GB)
    text = space_warning(disk, NEED_CUDA)
    assert text is not None
    assert "/var/lib/docker has 4.0 GB free, 72.0 GB of it BuildKit's cache" in text
    assert "needs about 20.0 GB" in text
    assert "docker builder prune --keep-storage 15GB" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    "disk",
    [
        None,  # no engine answered
        EngineDisk("/var/lib/docker", None, None),  # the root is not on this host
        EngineDisk("/var/lib/docker", 20 * GB, 1 * GB),  # exactly enough
    ],
)
def test_no_warning_without_a_known_shortfall(disk):
    assert space_warning(disk, NEED_CUDA) is None


def test_out_of_space_is_read_from_the_log_in_any_case():
    assert out_of_space("#5 0.25 dd: error writing '/x': No space left on device")
    assert out_of_space("failed to copy: write /var/lib/docker/tmp/x: no space left on device")
    assert not out_of_space("#5 ERROR: process did not complete successfully: exit code: 1")


def test_the_out_of_space_remedy_names_the_root_and_the_fix():
    text = no_space_remedy(EngineDisk("/srv/docker", int(1.5 * GB), None))
    assert "(the engine's data root /srv/docker has 1.5 GB free now)" in text
    assert "docker builder prune --keep-storage 15GB" in text and "Nothing was tagged" in text
    assert "ran out of disk." in no_space_remedy(None)


@pytest.mark.parametrize(
    ("free", "cache", "need", "keep"),
    [
        (4, 72, 55, 21),  # the CI machine of 2026-12-06: 51 GB short, taken off 72
        (50, 10, 55, 5),
        (1, 10, 55, 0),  # the whole cache is not enough: keep none
    ],
)
def test_make_room_keeps_all_the_cache_the_need_allows(free, cache, need, keep):
    disk = EngineDisk("/var/lib/docker", free * GB, cache * GB)
    assert keep_for(disk, need * GB) == keep * GB


def test_room_is_enough_only_when_the_need_is_free():
    before = EngineDisk("/var/lib/docker", 4 * GB, 72 * GB)
    room = Room(before, EngineDisk("/var/lib/docker", 56 * GB, 20 * GB), 55 * GB)
    assert room.enough
    short = Room(before, EngineDisk("/var/lib/docker", 30 * GB, 0), 55 * GB)
    assert not short.enough


class FakeEngine:
    """An engine whose prune frees only `ratio` of what the records it drops add up to
    (layers shared with images), least recently used records first; `stuck` prunes none."""

    def __init__(self, free: int, records: list[int], ratio: float = 1.0, stuck: bool = False):
        self.free, self.records, self.ratio, self.stuck = free, records, ratio, stuck
        self.keeps: list[int] = []
        self.api = self

    def info(self):
        return {"DockerRootDir": "/fake/docker"}

    def df(self):
        return {"BuildCache": [{"Size": size} for size in self.records]}

    def prune_builds(self, keep_storage, all):
        assert all is True
        self.keeps.append(keep_storage)
        while self.records and not self.stuck and (sum(self.records) > keep_storage):
            self.free += int(self.records.pop(0) * self.ratio)


@pytest.fixture
def fake_disk(monkeypatch):
    def use(engine: FakeEngine) -> FakeEngine:
        monkeypatch.setattr("gpuimages.build.diskspace.free_bytes", lambda root: engine.free)
        return engine

    return use


def test_make_room_trims_again_by_what_is_still_short_not_all_at_once(fake_disk):
    engine = fake_disk(FakeEngine(free=10 * GB, records=[1 * GB] * 40, ratio=0.5))
    room = make_room(engine, 14 * GB)
    assert room is not None and room.enough
    assert len(engine.keeps) > 1 and 0 not in engine.keeps  # never the whole cache
    assert sum(engine.records) >= 31 * GB  # about 8 of 40 GB went, for 4 GB short


def test_make_room_takes_the_whole_cache_only_when_trimming_by_size_removed_nothing(fake_disk):
    engine = fake_disk(FakeEngine(free=10 * GB, records=[5 * GB] * 4, stuck=True))
    room = make_room(engine, 12 * GB)
    assert engine.keeps[:2] == [18 * GB, 0] and not room.enough


def test_make_room_does_nothing_with_the_need_free(fake_disk):
    engine = fake_disk(FakeEngine(free=30 * GB, records=[5 * GB] * 4))
    room = make_room(engine, 20 * GB)
    assert room is not None and room.enough and engine.keeps == []
