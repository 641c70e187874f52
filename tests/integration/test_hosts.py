"""The hosts the README's first command meets (issue 22), each made for real here:

- a Docker 23+ client without buildx first on PATH (engine up): passed over for one that
  builds, and the build goes through;
- a client with the buildx plugin: the build goes through `docker buildx build --load`;
- an engine that is down: started, then a BuildKit build runs on it;
- no Docker at all: Debian's docker.io is installed, the client chosen after it, the
  engine started.

No buildx plugin can be installed on this machine (Debian 12 does not package it and
nothing else is reachable), and its newer client is the one without buildx. So the two
client shapes are shims: small scripts that answer `--version` and `buildx version` as
those clients do and hand every real command to Debian's 20.10 client; the buildx shim
turns `buildx build --load ARGS` into `DOCKER_BUILDKIT=1 docker build ARGS` and records
the argv it was given. The engine, the builds and the images are real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker
import pytest

from gpuimages.build.engine import ensure_engine, find_docker_cli

from .conftest import CPU_VARIANT, ROOT, build_cpu_variant, invoke, make_workspace

REAL_CLIENT = "/usr/bin/docker"
HOSTS_REPOSITORY = "gpuimages-test/hosts"


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    return path


def client_without_buildx(folder: Path) -> Path:
    return _executable(
        folder / "docker",
        "#!/bin/sh\n"
        "# Stands for a Docker 28 client without the buildx plugin.\n"
        'if [ "$1" = "--version" ]; then echo "Docker version 28.9.9, build shim"; exit 0; fi\n'
        'if [ "$1" = "buildx" ]; then\n'
        "  echo \"docker: 'buildx' is not a docker command.\" >&2; exit 1\n"
        "fi\n"
        f'exec {REAL_CLIENT} "$@"\n',
    )


def client_with_buildx(folder: Path, record: Path) -> Path:
    return _executable(
        folder / "docker",
        "#!/bin/sh\n"
        "# Stands for a Docker 28 client with the buildx plugin (see the module docstring).\n"
        'if [ "$1" = "--version" ]; then echo "Docker version 28.9.9, build shim"; exit 0; fi\n'
        'if [ "$1" = "buildx" ] && [ "$2" = "version" ]; then\n'
        "  echo 'github.com/docker/buildx v0.99.0-shim 0000000'; exit 0\n"
        "fi\n"
        'if [ "$1" = "buildx" ] && [ "$2" = "build" ]; then\n'
        f'  echo "$*" >> {record}\n'
        "  shift 2\n"
        '  [ "$1" = "--load" ] && shift\n'
        f'  DOCKER_BUILDKIT=1 exec {REAL_CLIENT} build "$@"\n'
        "fi\n"
        f'exec {REAL_CLIENT} "$@"\n',
    )


@pytest.fixture
def hosts_workspace(tmp_path, client):
    """A workspace of its own, so these builds never move the session's CPU tag."""
    workspace = make_workspace(tmp_path / "ws", HOSTS_REPOSITORY)
    yield workspace
    for image in client.images.list(name=HOSTS_REPOSITORY):
        for tag in image.tags:
            client.images.remove(tag, noprune=True)


def _env_with(folder: Path) -> dict[str, str]:
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def _build(workspace: Path, wheelhouse: Path, env: dict[str, str]):
    report = workspace / "build" / "reports" / "hosts.json"
    row = build_cpu_variant(report, wheelhouse, cwd=workspace, env=env)
    return row, (workspace / "build" / "logs" / f"{CPU_VARIANT}.log").read_text()


def _doctor_client_check(env: dict[str, str]) -> dict:
    r = invoke("doctor", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    return checks["Docker client for builds"]


def test_a_new_client_without_buildx_first_on_path_is_passed_over(
    tmp_path, hosts_workspace, local_base, wheelhouse
):
    shim = client_without_buildx(tmp_path / "newer")
    env = _env_with(shim.parent)

    script = subprocess.run(
        ["bash", str(ROOT / "scripts" / "start-docker.sh"), "--client-only"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert script.returncode == 0, script.stderr
    assert f"client: {REAL_CLIENT} (client 20 has BuildKit built in" in script.stderr
    assert f"skipped {shim} (28.9.9, no buildx)" in script.stderr
    assert "Installing" not in script.stderr  # a client fits: nothing to install

    check = _doctor_client_check(env)
    assert check["status"] == "ok"
    assert f"uses {REAL_CLIENT} (client 20.10: BuildKit built in" in check["detail"]
    assert f"skipped {shim} (28.9, no buildx)" in check["detail"]

    row, log = _build(hosts_workspace, wheelhouse, env)
    assert log.startswith(f"$ {REAL_CLIENT} build "), log[:200]
    assert row["tags"] == [f"{HOSTS_REPOSITORY}:{CPU_VARIANT}"]


def test_a_client_with_buildx_builds_through_the_plugin(
    tmp_path, hosts_workspace, local_base, wheelhouse, client
):
    record = tmp_path / "buildx-argv.txt"
    shim = client_with_buildx(tmp_path / "withbuildx", record)
    env = _env_with(shim.parent)

    check = _doctor_client_check(env)
    assert check["status"] == "ok"
    assert f"uses {shim} (buildx plugin v0.99.0-shim)" in check["detail"]

    row, log = _build(hosts_workspace, wheelhouse, env)
    assert log.startswith(f"$ {shim} buildx build --load "), log[:200]
    assert record.read_text().startswith("buildx build --load ")
    assert client.images.get(row["tags"][0]).id == row["image_id"]


def test_a_client_named_by_docker_that_cannot_build_is_refused_not_replaced(tmp_path):
    shim = client_without_buildx(tmp_path / "named")
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "start-docker.sh"), "--client-only"],
        env={**os.environ, "DOCKER": str(shim)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert f"DOCKER={shim} cannot build with BuildKit ({shim} (28.9.9, no buildx))" in r.stderr
    assert "unset DOCKER" in r.stderr and "Installing" not in r.stderr


@pytest.fixture
def second_engine(docker_cli):
    """A socket, data root and exec root of its own: an engine that is down, which the
    test may start without disturbing the one every other test uses."""
    if os.geteuid() != 0:
        pytest.skip("starting a second dockerd needs root")
    # Short path: a unix socket's path must stay under 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="gi-eng-", dir="/tmp"))
    # A bridge of its own: `--bridge=none` would make dockerd delete docker0, the default
    # bridge of the engine everyone else uses. TEST-NET-2 address; no traffic crosses it.
    bridge = f"gi{uuid.uuid4().hex[:8]}"
    for argv in (
        ["ip", "link", "add", "name", bridge, "type", "bridge"],
        ["ip", "addr", "add", "198.51.100.1/24", "dev", bridge],
    ):
        subprocess.run(argv, check=True, capture_output=True)
    env = {
        "DOCKER_HOST": f"unix://{home}/docker.sock",
        "GPUIMAGES_DOCKERD_PIDFILE": str(home / "docker.pid"),
        "GPUIMAGES_DOCKERD_LOG": str(home / "dockerd.log"),
        "GPUIMAGES_DOCKERD_ARGS": (
            f"-H unix://{home}/docker.sock --data-root {home}/data --exec-root {home}/exec "
            f"--bridge={bridge} --iptables=false --ip-masq=false "
            "--containerd-namespace gpuimages-test-engine "
            "--containerd-plugins-namespace gpuimages-test-engine-plugins"
        ),
    }
    yield home, env
    pid_file = home / "docker.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
    subprocess.run(["umount", "-R", str(home / "exec")], capture_output=True, check=False)
    subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


def test_an_engine_that_is_down_is_started_and_builds(second_engine, monkeypatch, tmp_path):
    home, env = second_engine
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cli = find_docker_cli()
    with pytest.raises(docker.errors.DockerException):
        docker.from_env(timeout=5).ping()

    ensure_engine(cli, start=True)  # what `invoke build --start-engine` runs

    engine = docker.from_env(timeout=60)
    assert engine.ping()
    assert engine.info()["DockerRootDir"] == f"{home}/data"
    context = tmp_path / "context"
    context.mkdir()
    (context / "hello.txt").write_text("built on the engine that was down\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    tag = f"gpuimages-test/engine-started:{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [*cli.build_argv(), "-t", tag, str(context)],
        env={**os.environ, **cli.build_env()},
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert engine.images.get(tag).attrs["RootFS"]["Layers"]


@pytest.fixture
def bare_debian(local_base, client, tmp_path):
    """The local Debian 12 base unpacked into a folder: a host with no Docker at all, to
    chroot into (privileged containers are refused on this machine, so no Docker in
    Docker). /proc and /dev are bound in for apt, and services are kept from starting."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = tmp_path / "host"
    root.mkdir()
    container = client.containers.create(local_base, ["true"])
    try:
        with subprocess.Popen(["tar", "-x", "-C", str(root)], stdin=subprocess.PIPE) as tar:
            for chunk in container.export():
                tar.stdin.write(chunk)
            tar.stdin.close()
        assert tar.returncode == 0
    finally:
        container.remove(force=True)
    # As in Docker's own Debian images: no package starts a service (here: no second dockerd).
    _executable(root / "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n")
    shutil.copytree(ROOT / "scripts", root / "src/scripts")
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    mounts = []
    for source, target in (("/proc", "proc"), ("/dev", "dev"), ("/sys", "sys")):
        subprocess.run(["mount", "--rbind", source, str(root / target)], check=True)
        mounts.append(root / target)
    yield root
    for target in reversed(mounts):
        subprocess.run(["umount", "-R", "-l", str(target)], check=False)


def test_a_host_without_docker_gets_a_client_installed(bare_debian):
    """No docker anywhere: start-docker.sh installs Debian's docker.io and only then
    chooses its client (the engine start is the test above, on its own engine)."""
    assert not (bare_debian / "usr/bin/docker").exists()
    r = subprocess.run(
        ["chroot", str(bare_debian), "bash", "/src/scripts/start-docker.sh", "--client-only"],
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "No docker client here can build with BuildKit (tried: no docker client on PATH)" in (
        r.stderr
    )
    assert "Installing Debian's docker.io" in r.stderr
    assert "client: /usr/bin/docker (client 20 has BuildKit built in" in r.stderr
    assert (bare_debian / "usr/sbin/dockerd").exists()
