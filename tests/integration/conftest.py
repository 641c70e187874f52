"""Fixtures for tests against a real Docker engine (marker `docker`).

The engine is started when none answers and we are root (scripts/start-docker.sh); the
CPU image is built once per session from the local debootstrap base and a wheelhouse,
exactly as the README's main job does. Without an engine the tests skip with the reason,
unless GPUIMAGES_REQUIRE_DOCKER=1 (CI) turns that into a failure.

The CLI runs in a workspace of the tests' own (WORKSPACE): its matrix.yaml names the
repository TEST_REPOSITORY, and build/, reports/ and logs land there. A user's images
(`gpuimages/pytorch:*`), build/ and reports/ from the quickstart are never touched: the
session checks that at its end. Only the wheelhouse (a download cache) is shared.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import docker
import pytest

from gpuimages.build.diskspace import (
    GB,
    PRUNE_HINT,
    EngineDisk,
    disk_for,
    engine_disk,
    gb,
    make_room,
)
from gpuimages.build.engine import docker_for_builds, ensure_engine, ensure_local_base
from gpuimages.build.image import context_name
from gpuimages.core.errors import GpuImagesError
from gpuimages.facts.matrix import load_matrix
from tests.helpers import invoke as run_invoke

ROOT = Path(__file__).resolve().parents[2]
CPU_VARIANT = "2.13.0-cpu-runtime"
USER_REPOSITORY = "gpuimages/pytorch"  # the shipped matrix's: the user's images
# Overridable so that two test runs on one engine (two worktrees) do not share tags.
TEST_REPOSITORY = os.environ.get("GPUIMAGES_TEST_REPOSITORY", "gpuimages-test/pytorch")
# A module's own repositories sit beside TEST_REPOSITORY, so two runs with different
# GPUIMAGES_TEST_REPOSITORY values never tag the same name.
TEST_NAMESPACE = TEST_REPOSITORY.rsplit("/", 1)[0]
WORKSPACE = Path(tempfile.mkdtemp(prefix="gpuimages-tests-"))
# One context folder for every build of every session (the CLI's in WORKSPACE, and those
# with a test's own work folder): BuildKit keys the context it was sent by its path, and a
# fresh path per build sent the 4 GB wheelhouse again and kept a copy of it each time, 23 GB
# of build cache by the end of one run (measured 2026-12-06).
# A folder the user named is theirs: only the tests' own is tidied at the end.
OWN_CONTEXT_DIR = not os.environ.get("GPUIMAGES_CONTEXT_DIR")
if OWN_CONTEXT_DIR:
    os.environ["GPUIMAGES_CONTEXT_DIR"] = str(
        Path(tempfile.gettempdir()) / f"gpuimages-tests-context-{TEST_NAMESPACE}"
    )


def _tidy_contexts() -> None:
    """Keep the context of the shared wheelhouse (and of builds without one), the ones the
    next run reuses. A test's own wheelhouse, or another checkout's, gets a folder no later
    run names again, and its hard links would keep gigabytes of wheels alive."""
    if not OWN_CONTEXT_DIR:
        return
    keep = {context_name(ROOT / "wheelhouse"), context_name(None)}
    root = Path(os.environ["GPUIMAGES_CONTEXT_DIR"])
    for path in root.iterdir() if root.is_dir() else ():
        if path.name.removesuffix(".lock") in keep:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# The act run of the CI workflow (marker `act`) takes 4.5 to 7 minutes on 2 cores, at or above
# what the default run affords (docs/ci.md): it runs only when `-m` names it.
ACT_SKIP = pytest.mark.skip(
    reason="the act run of the CI workflow (5-7 min) runs only when asked for: "
    "`nox -s act` or `python -m pytest -m act tests/integration/test_workflow_act.py`"
)


def pytest_collection_modifyitems(config, items):
    asked_for_act = "act" in (config.getoption("markexpr") or "").replace("not act", "")
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)
        if item.get_closest_marker("act") and not asked_for_act:
            item.add_marker(ACT_SKIP)


def _unavailable(reason: str):
    if os.environ.get("GPUIMAGES_REQUIRE_DOCKER") == "1":
        pytest.fail(f"Docker engine required (GPUIMAGES_REQUIRE_DOCKER=1): {reason}")
    pytest.skip(reason)


def make_workspace(
    path: Path, repository: str = TEST_REPOSITORY, *, link_dockerfiles: bool = True
) -> Path:
    """A folder the CLI runs in: the shipped matrix under REPOSITORY, the committed
    Dockerfiles linked in; build/ and reports/ land there, not in the repository."""
    path.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "matrix.yaml").read_text()
    assert f"repository: {USER_REPOSITORY}\n" in text
    (path / "matrix.yaml").write_text(
        text.replace(f"repository: {USER_REPOSITORY}\n", f"repository: {repository}\n")
    )
    if link_dockerfiles:
        (path / "dockerfiles").symlink_to(ROOT / "dockerfiles")
    return path


def _user_images() -> dict[str, str] | None:
    """The user's tags and their image ids; None when no engine answers."""
    try:
        images = docker.from_env(timeout=60).images.list(name=USER_REPOSITORY)
    except docker.errors.DockerException:
        return None
    return {tag: image.id for image in images for tag in image.tags}


def _user_files() -> dict[str, tuple[int, int]]:
    """The files under the repository's build/reports/ and reports/, with size and mtime."""
    files: dict[str, tuple[int, int]] = {}
    for folder in (ROOT / "build" / "reports", ROOT / "reports"):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
            if path.is_file():
                stat = path.stat()
                files[str(path.relative_to(ROOT))] = (stat.st_size, stat.st_mtime_ns)
    return files


def _untagged_builds() -> set[str] | None:
    """Ids of the untagged images a gpuimages build made (label io.gpuimages.variant);
    None when no engine answers."""
    try:
        found = docker.from_env(timeout=60).images.list(
            filters={"dangling": True, "label": "io.gpuimages.variant"}
        )
    except docker.errors.DockerException:
        return None
    return {image.id for image in found}


def _remove_untagged_builds(before: set[str] | None) -> None:
    """Remove the gpuimages builds the session left without a tag: a build whose tag a later
    build took, or one refused for its size. Those that were untagged before the session
    are left alone (they may be anyone's); a tagged image is never touched here."""
    after = _untagged_builds()
    if before is None or after is None:
        return
    client = docker.from_env(timeout=600)
    for image_id in sorted(after - before):
        with contextlib.suppress(docker.errors.APIError):  # in use by a container: kept
            client.images.remove(image_id, noprune=False)


# What a whole run takes on the engine's disk: a cold run grows BuildKit's cache by about
# 37 GB and holds up to 18 GB of CUDA images at once (README, measured 2026-12-06). A run
# of a few tests needs less: GPUIMAGES_TEST_DISK_GB lowers the floor.
TEST_DISK_NEED = int(float(os.environ.get("GPUIMAGES_TEST_DISK_GB", "55")) * GB)
# GPUIMAGES_TEST_MAKE_ROOM=1 (set by .ci/run, whose machine is its own) lets the session trim
# BuildKit's cache, least recently used first, until TEST_DISK_NEED is free (or the cache is
# gone). Without it a user's cache is never touched: the tests skip (or fail, under
# REQUIRE_DOCKER) and say why.
MAKE_ROOM = os.environ.get("GPUIMAGES_TEST_MAKE_ROOM") == "1"
DISK_LOG: list[str] = []  # what the session found and did on the engine's disk: the summary


def _disk_line(when: str, disk: EngineDisk | None) -> None:
    if disk is not None:
        DISK_LOG.append(f"{when}: {disk.describe()}")


def _room_for_the_tests() -> str | None:
    """None when the engine's disk has room for the run, else why not (a skip reason)."""
    try:
        client = docker.from_env(timeout=600)
    except docker.errors.DockerException:
        return None  # the engine's absence is the docker_cli fixture's to report
    disk = disk_for(client, TEST_DISK_NEED)
    _disk_line("at the start", disk)
    if disk is None or disk.free is None or disk.free >= TEST_DISK_NEED:
        return None
    if MAKE_ROOM:
        room = make_room(client, TEST_DISK_NEED, disk)
        if room is not None:
            _disk_line("after trimming BuildKit's cache (GPUIMAGES_TEST_MAKE_ROOM=1)", room.after)
            if room.enough:
                return None
            # The need is an estimate from this project's machines: a host short of it after
            # the whole cache is gone runs the tests anyway, and the summary says so.
            DISK_LOG.append(f"still short of {gb(TEST_DISK_NEED)}: the tests run anyway")
            return None
    return (
        f"{disk.describe()}; the Docker tests need about {gb(TEST_DISK_NEED)} free there "
        "(a cold run adds about 37 GB of build cache and holds up to 18 GB of CUDA images). "
        f"Make room (`{PRUNE_HINT}`; `docker system df` shows what holds it), or let the "
        "tests trim BuildKit's cache themselves with GPUIMAGES_TEST_MAKE_ROOM=1 (CI does); "
        "GPUIMAGES_TEST_DISK_GB=N lowers the need for a run of a few tests."
    )


def pytest_terminal_summary(terminalreporter):
    if DISK_LOG:
        terminalreporter.write_sep("-", "engine disk")
        for line in DISK_LOG:
            terminalreporter.write_line(line)


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


@pytest.fixture(scope="session", autouse=True)
def test_workspace():
    """The CLI's working folder for the whole session; afterwards, the proof that the
    user's images and reports were left alone."""
    make_workspace(WORKSPACE)
    # Started before the first look: CI begins with no engine running, and "no images"
    # seen then would blame the tests for every image already in the engine's data folder.
    with contextlib.suppress(GpuImagesError):
        root = os.geteuid() == 0
        ensure_engine(docker_for_builds(install=root), start=root)
    short = _room_for_the_tests()
    if short:
        _unavailable(short)
    images, files = _user_images(), _user_files()
    untagged = _untagged_builds()
    yield WORKSPACE
    _remove_untagged_builds(untagged)
    _tidy_contexts()
    with contextlib.suppress(docker.errors.DockerException):
        _disk_line("at the end", engine_disk(docker.from_env(timeout=600)))
    images_after, files_after = _user_images(), _user_files()
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    changed = _changed(files, files_after)
    if images is not None and images_after is not None:
        changed += _changed(images, images_after)
    if changed:
        pytest.fail(f"the tests changed the user's images or reports: {changed}")


@pytest.fixture(scope="session")
def docker_cli():
    try:
        root = os.geteuid() == 0
        cli = docker_for_builds(install=root)
        ensure_engine(cli, start=root)
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
def matrix(test_workspace):
    return load_matrix(test_workspace / "matrix.yaml")


@pytest.fixture
def small_image(client, local_base, variant):
    """A tiny image of our own under the variant's tag (each test module's own `variant`
    fixture), removed with all its tags afterwards."""
    dockerfile = f"FROM {local_base}\nLABEL io.gpuimages.test={uuid.uuid4().hex}\n"
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True)
    image.tag(*variant.tag.rsplit(":", 1))
    yield client.images.get(image.id)
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def wheelhouse(docker_cli) -> Path:
    """The shared wheelhouse of the repository (kept between runs: pip download is slow)."""
    dest = ROOT / "wheelhouse"
    r = invoke("wheelhouse", "--variant", CPU_VARIANT, "--dest", str(dest), timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return dest


def invoke(
    *args: str, timeout: int = 3600, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """The shared runner in the tests' workspace (or CWD), with an hour's timeout by
    default: builds take long."""
    return run_invoke(*args, timeout=timeout, cwd=cwd or WORKSPACE, env=env)


def build_cpu_variant(
    report: Path, wheelhouse: Path, *, cwd: Path | None = None, env: dict | None = None
) -> dict:
    """`invoke build` of the CPU runtime variant as the main job runs it (local base,
    wheelhouse, offline); its build report row, asserted built."""
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
        cwd=cwd,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(report.read_text())["builds"]
    assert len(rows) == 1 and rows[0]["status"] == "built"
    return rows[0]


@pytest.fixture(scope="session")
def cpu_build(docker_cli, client, local_base, wheelhouse) -> dict:
    """The CPU runtime variant under TEST_REPOSITORY; its report row. Its tags are removed
    when the session ends."""
    rows = [
        build_cpu_variant(WORKSPACE / "build" / "reports" / "test-build-report.json", wheelhouse)
    ]
    yield rows[0]
    for tag in rows[0]["tags"]:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, noprune=True)


# --- registries for the publish tests (issue 6) ---------------------------------------
# Debian's docker-registry (distribution v2.8) on 127.0.0.1, started with the same
# script `invoke publish` uses (it installs the package when missing, as root).

import secrets  # noqa: E402
import socket  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
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


# --- registries as services (issue 14) ----------------------------------------------
# pytest-docker's `docker_services` starts tests/integration/registries.compose.yml with
# Debian's docker-compose (v1, installed by scripts/install-compose.sh): two registries
# from an image built locally on the local base with Debian's docker-registry package.

COMPOSE_FILE = ROOT / "tests" / "integration" / "registries.compose.yml"
REGISTRY_USER = "gpuimages-ci"


@pytest.fixture(scope="session")
def docker_compose_command(docker_cli) -> str:
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-compose.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode != 0:
        _unavailable(f"no docker-compose for the registry services: {r.stderr.strip()}")
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def registry_password() -> str:
    return "pw-" + secrets.token_urlsafe(18)


@pytest.fixture(scope="session")
def docker_compose_file(docker_compose_command, local_base, tmp_path_factory, registry_password):
    """The compose file, with its image built and the public registry's htpasswd written.

    The password goes to htpasswd on stdin (bcrypt, -B), never on a command line.
    """
    auth = tmp_path_factory.mktemp("registry-htpasswd")
    os.environ["GPUIMAGES_TEST_HTPASSWD_DIR"] = str(auth)
    image = os.environ.get("GPUIMAGES_TEST_REGISTRY_IMAGE", "gpuimages-local/registry:bookworm")
    build = subprocess.run(
        [*docker_compose_command.split(), "-f", str(COMPOSE_FILE), "build", "staging"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if build.returncode != 0:
        pytest.fail(f"building the registry image failed:\n{build.stdout[-2000:]}{build.stderr}")
    hashed = subprocess.run(
        ["docker", "run", "-i", "--rm", "--entrypoint", "htpasswd", image, "-niB", REGISTRY_USER],
        input=registry_password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert hashed.returncode == 0, hashed.stderr
    (auth / "htpasswd").write_text(hashed.stdout.strip() + "\n")
    auth.chmod(0o755)  # read by the registry's own user in the container
    (auth / "htpasswd").chmod(0o644)
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    """docker-compose v1 has no `up --wait` (pytest-docker's default): start detached."""
    return ["up --build -d"]


def _service(docker_services, name: str, state_dir: Path, **auth) -> LocalRegistry:
    port = docker_services.port_for(name, 5000)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"{url}/v2/", timeout=2
            ):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False

    docker_services.wait_until_responsive(check=answers, timeout=60.0, pause=0.3)
    return LocalRegistry(f"127.0.0.1:{port}", url, state_dir, **auth)


@pytest.fixture(scope="session")
def open_registry(docker_services, tmp_path_factory) -> LocalRegistry:
    """The compose file's `staging` registry: no auth, on a free port of 127.0.0.1."""
    return _service(docker_services, "staging", tmp_path_factory.mktemp("staging"))


@pytest.fixture(scope="session")
def auth_registry(docker_services, tmp_path_factory, registry_password) -> LocalRegistry:
    """The compose file's `public` registry: htpasswd (bcrypt) basic auth, a random password."""
    return _service(
        docker_services,
        "public",
        tmp_path_factory.mktemp("public"),
        user=REGISTRY_USER,
        password=registry_password,
    )
