"""Choosing a docker client that can build with BuildKit, engine up or down."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gpuimages.build import engine
from gpuimages.core.errors import GpuImagesError


def fake_docker(directory: Path, version: str, buildx: bool) -> Path:
    """A stand-in docker client: prints its version; `buildx version` works or not."""
    directory.mkdir(parents=True)
    path = directory / "docker"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "Docker version {version}, build x"; exit 0; fi\n'
        f'if [ "$1" = "buildx" ]; then {"echo buildx v0.12; exit 0" if buildx else "exit 1"}; fi\n'
        "echo 'Cannot connect to the Docker daemon' >&2; exit 1\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    engine.find_docker_cli.cache_clear()
    monkeypatch.delenv("GPUIMAGES_DOCKER", raising=False)
    monkeypatch.setattr(engine, "_candidates", lambda preferred: [preferred] if preferred else [])
    yield
    engine.find_docker_cli.cache_clear()


def test_new_client_without_buildx_is_skipped_for_old_builtin(tmp_path, monkeypatch):
    new = fake_docker(tmp_path / "new", "28.2.2", buildx=False)
    old = fake_docker(tmp_path / "old", "20.10.24+dfsg1", buildx=False)
    monkeypatch.setattr(engine, "_candidates", lambda preferred: [str(new), str(old)])
    cli = engine.find_docker_cli()
    assert cli == engine.DockerCli(str(old), buildx=False)
    assert cli.build_env() == {"DOCKER_BUILDKIT": "1"}


def test_buildx_is_preferred(tmp_path):
    new = fake_docker(tmp_path / "new", "28.2.2", buildx=True)
    cli = engine.find_docker_cli(str(new))
    assert cli.buildx and cli.build_argv() == [str(new), "buildx", "build", "--load"]


def test_none_usable_names_what_was_tried(tmp_path):
    new = fake_docker(tmp_path / "new", "28.2.2", buildx=False)
    with pytest.raises(GpuImagesError, match=r"28\.2, no buildx.*docker-buildx"):
        engine.find_docker_cli(str(new))


def test_the_choice_says_why_and_what_it_passed_over(tmp_path, monkeypatch):
    new = fake_docker(tmp_path / "new", "28.2.2", buildx=False)
    old = fake_docker(tmp_path / "old", "20.10.24+dfsg1", buildx=False)
    monkeypatch.setattr(engine, "_candidates", lambda preferred: [str(new), str(old)])
    described = engine.find_docker_cli().describe()
    assert described.startswith(f"{old} (client 20.10: BuildKit built in")
    assert f"skipped {new} (28.2, no buildx)" in described


@pytest.mark.parametrize(
    ("root", "apt", "says"),
    [
        (True, True, "Pass --start-engine"),
        (False, True, "sudo bash scripts/start-docker.sh"),
        (False, False, "docker-buildx-plugin"),
    ],
)
def test_the_remedy_fits_the_host(root, apt, says):
    remedy = engine.install_remedy(root=root, apt=apt)
    assert says in remedy and "--docker PATH" in remedy


def test_no_client_and_no_install_allowed_raises_without_installing(tmp_path, monkeypatch):
    new = fake_docker(tmp_path / "new", "28.2.2", buildx=False)
    monkeypatch.setattr(engine, "_candidates", lambda preferred: [str(new)])
    ran = []
    monkeypatch.setattr(engine, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(engine.NoBuildKitClientError) as caught:
        engine.docker_for_builds(install=False)
    assert caught.value.tried == (f"{new} (28.2, no buildx)",) and ran == []


def test_install_then_choose(tmp_path, monkeypatch):
    """As root with apt-get, the install script runs first and the client is chosen after."""
    new = fake_docker(tmp_path / "new", "28.2.2", buildx=False)
    old_dir = tmp_path / "old"
    candidates = [str(new)]
    monkeypatch.setattr(engine, "_candidates", lambda preferred: list(candidates))
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0)
    monkeypatch.setattr(engine.shutil, "which", lambda name: f"/usr/bin/{name}")

    def install(argv, **kwargs):
        assert argv[-1] == "--client-only"
        candidates.append(str(fake_docker(old_dir, "20.10.24+dfsg1", buildx=False)))

    monkeypatch.setattr(engine, "run", install)
    cli = engine.docker_for_builds(install=True)
    assert cli.path == str(old_dir / "docker") and not cli.buildx
