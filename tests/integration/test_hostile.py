"""Faults and hostile input (issue 13): one test per item, against the real CLI and engine.

Every test works in its own folder (matrix, build/, reports/) with its own repository
namespace, so it never re-tags a user's image or overwrites their reports, and removes
what it tagged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from gpuimages.build.image import lock_file
from gpuimages.vet.smoke import SMOKE_LABEL

from .conftest import ROOT, WORKSPACE, invoke, make_workspace

VARIANT = "2.13.0-cpu-runtime"
NAMESPACE = "gpuimages-test13"
PASSWORD = "S3cret-Mirror-Pw13"


def gi(cwd: Path, *args: str, timeout: int = 1800, env: dict | None = None):
    return invoke(*args, timeout=timeout, cwd=cwd, env=env)


def gi_started(cwd: Path, *args: str, stdout=subprocess.PIPE) -> subprocess.Popen[str]:
    """The CLI started in the background (to signal it, or run two at once)."""
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: a test run started in the background (`cmd &`) has SIGINT
        # ignored, and a child inherits that, so the Ctrl-C test would never reach it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.fixture()
def tags_to_remove(client):
    """Tags a test made in its own namespace: removed afterwards (never the image ids
    of anyone else)."""
    made: list[str] = []
    yield made
    for tag in made:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, noprune=False)


def build_argv(wheelhouse: Path, *extra: str) -> list[str]:
    return [
        "build",
        "--variant",
        VARIANT,
        "--local-base",
        "--wheelhouse",
        str(wheelhouse),
        "--offline",
        *extra,
    ]


def _in_file(path: Path, needle: bytes, chunk: int = 1 << 22) -> bool:
    with open(path, "rb") as f:
        tail = b""
        while block := f.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle) :]
    return False


# --- 1. an authenticated mirror works; its password reaches nothing ---------------------


def test_mirror_password_reaches_no_layer_history_log_or_report(
    client, docker_cli, local_base, wheelhouse, tmp_path, tags_to_remove
):
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}/mirror")
    tag = f"{NAMESPACE}/mirror:{VARIANT}"
    tags_to_remove.append(tag)
    mirror = f"http://gpuimages:{PASSWORD}@deb.debian.org:80"
    r = gi(ws, *build_argv(wheelhouse, "--apt-mirror", mirror, "--matrix", "matrix.yaml"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert PASSWORD not in r.stdout + r.stderr
    for path in (ws / "build").rglob("*"):
        if path.is_file():
            assert not _in_file(path, PASSWORD.encode()), path
    history = subprocess.run(
        ["docker", "history", "--no-trunc", tag], capture_output=True, text=True, check=True
    ).stdout
    assert PASSWORD not in history and "gpuimages:" not in history
    sources = client.containers.run(
        tag,
        [
            "bash",
            "-c",
            "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null; "
            "grep -rl deb.debian.org:80 /etc/apt || true",
        ],
        remove=True,
    ).decode()
    assert "deb.debian.org:80" not in sources, "the mirror setting stayed in the image"
    saved = tmp_path / "image.tar"
    subprocess.run(["docker", "save", "-o", str(saved), tag], check=True, timeout=600)
    try:
        assert not _in_file(saved, PASSWORD.encode()), "the password is in a layer"
    finally:
        saved.unlink()


def test_a_token_in_the_index_url_is_refused_before_any_build(tmp_path):
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}/pytorch")
    r = gi(
        ws,
        "build",
        "--variant",
        VARIANT,
        "--pip-index-url",
        "https://mirror.example/simple?token=tok-13-secret",
        "--dry-run",
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "query string" in r.stderr and "tok-13-secret" not in r.stdout + r.stderr


# --- 2. the publish gate trusts evidence, not one field ---------------------------------


def _gate_setup(client, local_base, ws, tags_to_remove, checks, status):
    """A variant tag on some image, and a hand-written report of that image id."""
    repo = f"{NAMESPACE}-gate/pytorch"
    tag = f"{repo}:{VARIANT}"
    client.images.get(local_base).tag(repo, VARIANT)
    tags_to_remove.append(tag)
    image = client.images.get(tag)
    variant = json.loads(gi(ws, "matrix", "--json").stdout)
    doc = {
        "schema": 1,
        "variant": next(v for v in variant if v["name"] == VARIANT),
        "image_id": image.id,
        "status": status,
        "created": "2099-01-01T00:00:00+00:00",
        "checks": [{"name": n, "status": s} for n, s in checks],
    }
    (ws / "reports" / "smoke").mkdir(parents=True, exist_ok=True)
    (ws / "reports" / "smoke" / f"{VARIANT}.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("checks", "words"),
    [
        ([("torch", "passed"), ("ddp", "failed"), ("labels", "passed")], "inconsistent"),
        ([("torch", "passed")], "incomplete"),  # never really smoke-tested
    ],
)
def test_publish_refuses_edited_or_incomplete_reports(
    client, local_base, tmp_path, tags_to_remove, checks, words
):
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}-gate/pytorch")
    full = [("gpu", "skipped"), ("cuda", "skipped"), ("flavor", "passed")]
    _gate_setup(
        client, local_base, ws, tags_to_remove, checks + full * (words != "incomplete"), "passed"
    )
    r = gi(ws, "publish", "--variant", VARIANT, "--dry-run", "--registry", "127.0.0.1:1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert words in r.stdout + r.stderr


def test_publish_with_an_evidence_key_refuses_an_unsigned_report(
    client, local_base, tmp_path, tags_to_remove
):
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}-gate/pytorch")
    checks = [(n, "passed") for n in ("torch", "ddp", "flavor", "labels")]
    _gate_setup(
        client,
        local_base,
        ws,
        tags_to_remove,
        [*checks, ("gpu", "skipped"), ("cuda", "skipped")],
        "passed",
    )
    args = ("publish", "--variant", VARIANT, "--dry-run", "--registry", "127.0.0.1:1")
    assert gi(ws, *args).returncode == 0  # complete, consistent: passes without a key
    r = gi(ws, *args, env={"GPUIMAGES_EVIDENCE_KEY": "ci-secret-13"})
    assert r.returncode == 1 and "carries no signature" in r.stdout + r.stderr


# --- 3. repository names are checked when the matrix is read ----------------------------


@pytest.mark.parametrize(
    "repository", ['"x\\"\\nRUN touch /pwned\\n#"', "GpuImages/PyTorch", "../../evil/pytorch"]
)
def test_hostile_repository_names_are_refused_before_render_or_build(tmp_path, repository):
    ws = make_workspace(tmp_path / "ws", "placeholder/x")
    text = (ws / "matrix.yaml").read_text().replace("placeholder/x", repository)
    (ws / "matrix.yaml").write_text(text)
    for args in (("render", "--check"), ("build", "--variant", VARIANT, "--dry-run")):
        r = gi(ws, *args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "not an image repository name" in r.stderr
        assert "Traceback" not in r.stderr


# --- 4. Ctrl-C and SIGTERM stop a build, leave the tag, write the report -----------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_build_stops_leaves_the_tag_and_reports(
    client, docker_cli, local_base, wheelhouse, tmp_path, tags_to_remove, sig
):
    repo = f"{NAMESPACE}-stop/pytorch"
    ws = make_workspace(tmp_path / "ws", repo)
    tag = f"{repo}:{VARIANT}"
    client.images.get(local_base).tag(repo, VARIANT)  # where the tag is before the build
    tags_to_remove.append(tag)
    before = client.images.get(tag).id
    # A base of its own (the local base plus a one-file layer of its own): BuildKit keys its
    # cache by the layers, so a new label alone would still hit the cache of earlier builds.
    base = f"{NAMESPACE}-stop/base:{time.time_ns()}"
    box = client.containers.create(
        local_base, ["sh", "-c", f"echo {time.time_ns()} > /etc/gpuimages-test-run"]
    )
    try:
        box.start()
        box.wait(timeout=60)
        box.commit(*base.split(":"))
    finally:
        box.remove()
    tags_to_remove.append(base)
    argv = ["build", "--variant", VARIANT, "--base-image", base, "--wheelhouse", str(wheelhouse)]
    proc = gi_started(ws, *argv, "--offline")
    log = ws / "build" / "logs" / f"{VARIANT}.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (
        log.exists() and "apt-install.sh" in log.read_text(errors="replace")
    ):
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(sig)
    start = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - start < 30
    assert proc.returncode in (130, 143), out[-2000:]
    assert client.images.get(tag).id == before, "the tag moved"
    report = json.loads((ws / "build" / "reports" / "build-report.json").read_text())
    assert [b["status"] for b in report["builds"]] == ["interrupted"]
    assert not _children_in(ws), "a process of the build is still running"


def _children_in(folder: Path) -> list[int]:
    """Processes whose working directory is folder (the CLI's children run there)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == folder:
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


# --- 5. a tiny hostile matrix is refused quickly, with a bounded message ------------------


@pytest.mark.parametrize(
    "text",
    [
        # 20 values per axis on 8 axes: 2.56e10 combinations
        "axes:\n  - {"
        + ", ".join(
            f"{a}: [{', '.join(str(i) for i in range(20))}]"
            for a in ("torch", "cuda", "cudnn", "flavor", "python", "os", "base", "horovod")
        )
        + "}\n",
        # billion laughs
        "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "axes: [{torch: *f, cuda: *f}]\n",
    ],
)
def test_a_small_hostile_matrix_is_refused_fast_and_briefly(tmp_path, text):
    (tmp_path / "matrix.yaml").write_text(text)
    start = time.monotonic()
    r = gi(tmp_path, "matrix", timeout=60)
    assert time.monotonic() - start < 20
    assert r.returncode == 2, r.stdout[-500:] + r.stderr[-500:]
    assert len(r.stderr) < 1500 and "Traceback" not in r.stderr


# --- 6. two builds of one variant at once: the second waits, nothing interleaves ---------


def _wait_for(what: str, ready, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the build ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no sign after {timeout:.0f} s that {what}"
        time.sleep(0.1)


def test_two_concurrent_builds_of_one_variant_take_turns(
    client, docker_cli, local_base, wheelhouse, tmp_path, tags_to_remove
):
    """The first build is frozen (SIGSTOP) while it holds the lock, so the second surely
    meets it held, however fast a cached build is (CI once saw the first finish before the
    second had started, and neither waited)."""
    repo = f"{NAMESPACE}-twice/pytorch"
    ws = make_workspace(tmp_path / "ws", repo)
    tags_to_remove.append(f"{repo}:{VARIANT}")
    lock = lock_file(f"{repo}:{VARIANT}")
    outs = [tmp_path / f"out-{n}.txt" for n in (1, 2)]
    argv = [*build_argv(wheelhouse), "--local-base", "--report"]
    procs: list[subprocess.Popen] = []
    try:
        with open(outs[0], "w") as out:
            procs.append(gi_started(ws, *argv, "build/report-1.json", stdout=out))
        first = procs[0]
        holds = f"pid {first.pid} "
        _wait_for("the first build holds the lock", lambda: holds in _text(lock), first)
        first.send_signal(signal.SIGSTOP)
        with open(outs[1], "w") as out:
            procs.append(gi_started(ws, *argv, "build/report-2.json", stdout=out))
        waits = f"is being built by pid {first.pid}"
        _wait_for("the second build waits", lambda: waits in _text(outs[1]), procs[1])
        assert procs[1].poll() is None
        first.send_signal(signal.SIGCONT)
        codes = [p.wait(timeout=1800) for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGCONT)
            if p.poll() is None:
                p.kill()
    texts = [_text(o) for o in outs]
    assert codes == [0, 0], texts
    assert "is being built by" not in texts[0], texts[0]  # only the second waited
    rows = [json.loads((ws / f"build/report-{n}.json").read_text())["builds"][0] for n in (1, 2)]
    assert [r["status"] for r in rows] == ["built", "built"]
    # The one that waited built last: the tag is its image, not a race's winner.
    assert client.images.get(f"{repo}:{VARIANT}").id == rows[1]["image_id"]
    assert lock.read_text() == ""  # released, and no stale holder named for the next build
    log = (ws / "build" / "logs" / f"{VARIANT}.log").read_bytes()
    assert b"\0" not in log and log.count(b"\n$ ") + log.startswith(b"$ ") == 1


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# --- 7. publish with no engine starts nothing ---------------------------------------------


def test_publish_without_an_engine_starts_no_registry(tmp_path):
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}/pytorch")
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    port_before = _listening(5000)
    r = gi(ws, "publish", "--variant", VARIANT, env=env, timeout=120)
    assert r.returncode != 0 and "No Docker engine" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert _listening(5000) == port_before, "a registry was left running on :5000"


def _listening(port: int) -> bool:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
    return bool(out.stdout.strip())


# --- 8. bad options end in one paragraph, not a traceback --------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("smoke", "--variant", VARIANT, "--timeout", "abc"), "--timeout"),
        (("smoke", "--variant", VARIANT, "--require-gpus", "two"), "--require-gpus"),
        (("smoke", "--variant", VARIANT, "--shm-size", "banana"), "--shm-size"),
        (("smoke", "--variant", VARIANT, "--report", "/proc/x.json"), "--report"),
        (("build", "--variant", VARIANT, "--jobs", "abc", "--dry-run"), "--jobs"),
        (("build", "--variant", VARIANT, "--report", "/proc/x.json", "--dry-run"), "--report"),
        (
            ("build", "--variant", VARIANT, "--ca-bundle", "/nonexistent", "--dry-run"),
            "--ca-bundle",
        ),
        (("wheelhouse", "--variant", VARIANT, "--dest", "/proc/x"), "--dest"),
        (("tag", "--variant", VARIANT, "--alias", "bad alias"), "--alias"),
        (("check", "--torch", "1" * 5000, "--cuda", "cpu"), "torch"),
        (
            (
                "launch",
                "--variant",
                VARIANT,
                "--nodes",
                "1",
                "--gpus-per-node",
                "1",
                "--master-addr",
                "10.0.0.1",
                "--k8s",
                "/proc/x",
            ),
            "--k8s",
        ),
    ],
)
def test_bad_options_are_one_paragraph(tmp_path, args, words):
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}/pytorch")
    r = gi(ws, *args, timeout=120)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr and words in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 4, r.stderr
    assert not (ws / "reports").exists()


def test_no_engine_is_one_paragraph_for_smoke_and_tag(tmp_path):
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}/pytorch")
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    for args in (("smoke", "--variant", VARIANT), ("tag", "--variant", VARIANT, "--alias", "x")):
        r = gi(ws, *args, env=env, timeout=120)
        assert r.returncode == 1 and "No Docker engine" in r.stderr, r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) <= 3, r.stderr


def test_an_image_not_built_here_is_one_paragraph_with_the_build_command(client, tmp_path):
    """smoke, tag and run name the build command for a variant whose image is not on the
    host (its own repository, so nothing of anyone else's could be found)."""
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}-never-built/pytorch")
    for args in (
        ("smoke", "--variant", VARIANT),
        ("tag", "--variant", VARIANT, "--alias", "x"),
        ("run", "--variant", VARIANT, "--", "true"),
    ):
        r = gi(ws, *args, timeout=120)
        assert r.returncode == 2, (args, r.stderr[-2000:])
        assert f"{NAMESPACE}-never-built/pytorch:{VARIANT} is not built on this host" in r.stderr
        assert f"invoke build --variant {VARIANT}" in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 4, r.stderr


# --- 9. render never deletes what another matrix (or a person) wrote ---------------------


def test_render_of_another_matrix_keeps_the_committed_dockerfiles(tmp_path):
    ws = make_workspace(tmp_path / "ws", "gpuimages/pytorch", link_dockerfiles=False)
    subprocess.run(["cp", "-r", str(ROOT / "dockerfiles"), str(ws / "dockerfiles")], check=True)
    before = sorted(p.name for p in (ws / "dockerfiles").iterdir())
    (ws / "other.yaml").write_text("axes:\n  - {torch: 2.13.0, cuda: cpu}\n")
    r = gi(ws, "render", "--matrix", "other.yaml")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (ws / "dockerfiles").iterdir()) == before
    (ws / "empty.yaml").write_text("axes: []\n")
    r = gi(ws, "render", "--matrix", "empty.yaml")
    assert r.returncode == 2 and "gives no variant to build" in r.stderr
    assert sorted(p.name for p in (ws / "dockerfiles").iterdir()) == before


# --- the first run, as a new user saw it ---------------------------------------------------


def test_an_unreachable_base_image_names_the_remedy(
    docker_cli, wheelhouse, tmp_path, tags_to_remove
):
    """No route to the base's registry (Docker Hub here; an image that exists nowhere
    elsewhere): the failing step, then what to do about it; no tag."""
    repo = f"{NAMESPACE}-hub/pytorch"
    ws = make_workspace(tmp_path / "ws", repo)
    base = f"{NAMESPACE}-absent/base:never-{time.time_ns()}"
    tags_to_remove.append(f"{repo}:{VARIANT}")  # were it ever built
    argv = ["build", "--variant", VARIANT, "--base-image", base, "--wheelhouse", str(wheelhouse)]
    r = gi(ws, *argv, "--offline", timeout=600)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1, out[-3000:]
    assert f"load metadata for docker.io/{base}" in out
    assert f"--base-image <mirror>/{base}" in out, out[-3000:]
    assert "docker load -i base.tar" in out
    assert "Traceback" not in out


def test_the_build_plan_names_the_local_base_really_used(docker_cli, tmp_path):
    ws = make_workspace(tmp_path / "ws", f"{NAMESPACE}/pytorch")
    r = gi(ws, "build", "--variant", VARIANT, "--local-base", "--dry-run", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "gpuimages-local/debian:bookworm" in r.stdout
    assert "debian:bookworm-slim" not in r.stdout
    r = gi(ws, "build", "--variant", VARIANT, "--local-base", "--base-image", "x/y:1", "--dry-run")
    assert r.returncode == 2 and "give one" in r.stderr, r.stderr[-2000:]


def test_sigterm_during_smoke_leaves_no_container(client, cpu_build, tmp_path):
    """CI cancellation sends SIGTERM: the run stops within seconds and removes what it
    started (containers, the multi-node network), and no report says it passed."""
    report = tmp_path / "smoke.json"
    proc = gi_started(WORKSPACE, "smoke", "--variant", VARIANT, "--report", str(report))

    def ours():
        return client.containers.list(all=True, filters={"label": SMOKE_LABEL})

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ours():
            time.sleep(0.2)
        assert ours(), "the smoke run started no container"
        time.sleep(2)  # inside a check, not at its start
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        assert time.monotonic() - start < 30, out[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out[-2000:]
    assert ours() == [], "a smoke container was left behind"
    assert not client.networks.list(names=["gpuimages-smoke"]), "a smoke network was left"
    assert not report.exists() or json.loads(report.read_text())["status"] != "passed"


def test_smoke_shows_each_check_as_it_finishes(cpu_build, tmp_path):
    from .conftest import invoke

    r = invoke(
        "smoke", "--variant", VARIANT, "--no-multinode", "--report", str(tmp_path / "r.json")
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for check in ("torch", "ddp", "labels"):
        assert f"  {check}: passed (" in r.stderr, r.stderr[-3000:]
