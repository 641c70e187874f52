"""Horovod built into the CPU image (0.28.1 against torch 2.13 with the C++17 fix), and
both launch forms run for real: horovodrun (Gloo) and mpirun (OpenMPI)."""

from __future__ import annotations

import contextlib
import json

import docker.errors
import pytest

from .conftest import invoke

HVD_VARIANT = "2.13.0-cpu-runtime-horovod0.28.1"


@pytest.fixture(scope="module")
def hvd_build(docker_cli, client, local_base, wheelhouse, tmp_path_factory) -> dict:
    r = invoke("wheelhouse", "--variant", HVD_VARIANT, "--dest", str(wheelhouse))
    assert r.returncode == 0, r.stderr[-3000:]
    path = tmp_path_factory.mktemp("hvd-build") / "build-report.json"
    r = invoke(
        "build",
        "--variant",
        HVD_VARIANT,
        "--local-base",
        "--wheelhouse",
        str(wheelhouse),
        "--offline",
        "--report",
        str(path),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [row] = json.loads(path.read_text())["builds"]
    assert row["status"] == "built"
    yield row
    for tag in row["tags"]:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, noprune=True)


@pytest.fixture(scope="module")
def hvd_smoke(hvd_build, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("hvd") / "report.json"
    r = invoke("smoke", "--variant", HVD_VARIANT, "--report", str(path), "--no-multinode")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return {c["name"]: c for c in json.loads(path.read_text())["checks"]}


def test_horovodrun_gloo_two_processes(hvd_smoke):
    check = hvd_smoke["horovod_gloo"]
    assert check["status"] == "passed", check
    assert check["figures"]["size"] == 2


def test_mpirun_two_processes(hvd_smoke):
    check = hvd_smoke["horovod_mpi"]
    assert check["status"] == "passed", check
    assert check["figures"]["size"] == 2 and "mpirun" in check["figures"]["launcher"]


def test_check_build_recorded(hvd_smoke):
    build = hvd_smoke["horovod_gloo"]["figures"]["check_build"]
    assert build["frameworks"]["PyTorch"] and build["version"] == "0.28.1"
    assert build["controllers"] == {"Gloo": True, "MPI": True}


def test_runtime_image_stays_free_of_compilers(hvd_smoke):
    assert hvd_smoke["flavor"]["status"] == "passed", hvd_smoke["flavor"]


def test_unsupported_pair_refused_before_building():
    r = invoke("build", "--torch", "2.1.2", "--cuda", "11.8", "--horovod", "0.28.0")
    assert r.returncode == 2
    assert "Horovod 0.28.0 does not build against torch 2.1.2" in r.stderr


def test_ready_for_multi_node_ssh(client, hvd_build):
    """horovodrun -H / mpirun across hosts and MPIJob workers (`sshd -De`) need ssh."""
    out = client.containers.run(
        hvd_build["image_id"],
        ["bash", "-c", "command -v ssh && /usr/sbin/sshd -t && echo sshd-config-ok"],
        remove=True,
    ).decode()
    assert "sshd-config-ok" in out, out
