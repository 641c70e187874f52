"""Fixtures for tests against a real Docker engine (marker `docker`).

The engine is started when none answers and we are root (scripts/start-docker.sh); the
CPU image is built once per session from the local debootstrap base and a wheelhouse,
exactly as the README's main job does. Without an engine the tests skip with the reason,
unless GPUIMAGES_REQUIRE_DOCKER=1 (CI) turns that into a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from gpuimages.engine import ensure_engine, ensure_local_base, find_docker_cli
from gpuimages.errors import GpuImagesError
from gpuimages.matrix import load_matrix

ROOT = Path(__file__).resolve().parents[2]
CPU_VARIANT = "2.13.0-cpu-runtime"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


def _unavailable(reason: str):
    if os.environ.get("GPUIMAGES_REQUIRE_DOCKER") == "1":
        pytest.fail(f"Docker engine required (GPUIMAGES_REQUIRE_DOCKER=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_cli():
    try:
        cli = find_docker_cli()
        ensure_engine(cli, start=os.geteuid() == 0)
    except GpuImagesError as exc:
        _unavailable(f"no Docker engine: {exc}")
    return cli


@pytest.fixture(scope="session")
def client(docker_cli) -> docker.DockerClient:
    return docker.from_env(timeout=600)


@pytest.fixture(scope="session")
def local_base(docker_cli) -> str:
    return ensure_local_base(docker_cli)


@pytest.fixture(scope="session")
def matrix():
    return load_matrix(ROOT / "matrix.yaml")


@pytest.fixture(scope="session")
def wheelhouse(docker_cli) -> Path:
    """The shared wheelhouse of the repository (kept between runs: pip download is slow)."""
    dest = ROOT / "wheelhouse"
    subprocess.run(
        [sys.executable, "-m", "invoke", "wheelhouse", "--variant", CPU_VARIANT],
        cwd=ROOT,
        check=True,
        timeout=1800,
    )
    return dest


def invoke(*args: str, timeout: int = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def cpu_build(docker_cli, local_base, wheelhouse) -> dict:
    """`invoke build` of the CPU runtime variant, as the main job runs it; its report row."""
    report = ROOT / "build" / "reports" / "test-build-report.json"
    r = invoke(
        "build",
        "--variant",
        CPU_VARIANT,
        "--local-base",
        "--wheelhouse",
        str(wheelhouse),
        "--offline",
        "--report",
        str(report),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(report.read_text())["builds"]
    assert len(rows) == 1 and rows[0]["status"] == "built"
    return rows[0]
