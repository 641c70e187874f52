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
from tests.helpers import invoke as run_invoke

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
    """Builds take long: the shared runner with an hour's timeout."""
    return run_invoke(*args, timeout=timeout)


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


# --- registries for the publish tests (issue 6) ---------------------------------------
# Debian's docker-registry (distribution v2.8) on 127.0.0.1, started with the same
# script `invoke publish` uses (it installs the package when missing, as root).

import secrets  # noqa: E402
import socket  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402


@dataclass(frozen=True)
class LocalRegistry:
    host: str  # 127.0.0.1:PORT, what --registry takes
    url: str
    state_dir: Path
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_registry(
    state_dir: Path, *, port: int | None = None, user: str | None = None, password: str = ""
) -> LocalRegistry:
    port = port or free_port()
    argv = ["bash", str(ROOT / "scripts" / "start-registry.sh"), "--port", str(port)]
    argv += ["--dir", str(state_dir)]
    if user:
        argv += ["--user", user, "--password-stdin"]
    r = subprocess.run(
        argv, input=f"{password}\n" if user else None, capture_output=True, text=True, timeout=600
    )
    if r.returncode != 0:
        if os.geteuid() != 0 and "needs root" in r.stderr:
            _unavailable(f"no docker-registry and not root to install it: {r.stderr.strip()}")
        pytest.fail(f"scripts/start-registry.sh failed:\n{r.stderr[-3000:]}")
    url = r.stdout.strip().splitlines()[-1]
    return LocalRegistry(url.removeprefix("http://"), url, state_dir, user, password or None)


def stop_registry(registry: LocalRegistry) -> None:
    script = str(ROOT / "scripts" / "start-registry.sh")
    port = registry.host.rsplit(":", 1)[1]
    subprocess.run(
        ["bash", script, "--stop", "--port", port, "--dir", str(registry.state_dir)],
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def open_registry(docker_cli, tmp_path_factory):
    """A registry without auth on a free port of 127.0.0.1 (docker allows plain http there)."""
    registry = start_registry(tmp_path_factory.mktemp("registry-open"))
    yield registry
    stop_registry(registry)


@pytest.fixture(scope="session")
def auth_registry(docker_cli, tmp_path_factory):
    """A registry with htpasswd (bcrypt) basic auth; user and a random password."""
    registry = start_registry(
        tmp_path_factory.mktemp("registry-auth"),
        user="gpuimages-ci",
        password="pw-" + secrets.token_urlsafe(18),
    )
    yield registry
    stop_registry(registry)
