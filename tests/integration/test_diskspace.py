"""The engine's disk as gpuimages reads it, against the engine and the file system."""

from __future__ import annotations

import shutil

from gpuimages.build.diskspace import GB, engine_disk, make_room


def test_engine_disk_is_the_free_space_of_the_engines_data_root(client):
    disk = engine_disk(client)
    assert disk is not None
    assert disk.root == client.info()["DockerRootDir"]
    # Other writers (this run's own builds among them) move it a little between the reads.
    assert abs(disk.free - shutil.disk_usage(disk.root).free) < GB
    records = client.api.df()["BuildCache"] or []
    assert disk.build_cache == sum(r["Size"] for r in records)


def test_make_room_leaves_the_cache_alone_when_the_need_is_free(client):
    disk = engine_disk(client)
    assert disk is not None and disk.free is not None
    room = make_room(client, disk.free // 2)
    assert room is not None and room.enough
    assert room.after == room.before  # nothing pruned, nothing measured twice
