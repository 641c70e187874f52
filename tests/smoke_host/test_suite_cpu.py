"""scripts/smoke/suite.py for real on this host: bare, CPU torch, no GPU, no Docker.

Needs torch in the interpreter running pytest (skipped otherwise). About a minute,
most of it compiling the C++ extension of the devel flavor check.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the smoke suite needs torch in this interpreter")

SUITE = Path(__file__).resolve().parents[2] / "scripts" / "smoke" / "suite.py"
PY_MM = "{}.{}".format(*sys.version_info[:2])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUIMAGES_")}
    env.update(extra)
    return env


def run_suite(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = subprocess.run(
        [sys.executable, str(SUITE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or clean_env(),
    )
    return proc, json.loads(proc.stdout)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def torchvision_expectation() -> str:
    try:
        import torchvision
    except ImportError:
        return "none"
    return torchvision.__version__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cpu_run():
    """The whole suite once, as an image's ENV would configure it for a CPU runtime variant."""
    env = clean_env(
        GPUIMAGES_TORCH=torch.__version__.split("+")[0],
        GPUIMAGES_CUDA="cpu",
        GPUIMAGES_PYTHON=PY_MM,
        GPUIMAGES_TORCHVISION=torchvision_expectation(),
        GPUIMAGES_FLAVOR="runtime",
    )
    start = time.time()
    proc, report = run_suite(env=env)
    return proc, report, time.time() - start


def test_report_shape(cpu_run):
    proc, report, _ = cpu_run
    assert report["schema"] == 1
    assert report["host"]["hostname"] == socket.gethostname()
    assert report["host"]["python"] == platform.python_version()
    assert [c["name"] for c in report["checks"]] == [
        "gpu",
        "torch",
        "cuda",
        "ddp",
        "flavor",
        "horovod_gloo",
        "horovod_mpi",
    ]
    for check in report["checks"]:
        assert set(check) >= {"name", "status", "reason", "duration_s", "figures", "log_tail"}
        assert check["status"] in ("passed", "failed", "skipped")
    assert set(report["found"]) == {
        "torch",
        "torchvision",
        "python",
        "python_prefix",
        "cuda",
        "cudnn",
        "nccl",
        "horovod",
    }
    assert "result:" in proc.stderr  # the readable summary


def test_gpu_skipped_on_cpu_variant(cpu_run):
    gpu = by_name(cpu_run[1])["gpu"]
    assert gpu["status"] == "skipped" and gpu["reason"] == "CPU variant"


def test_cuda_stack_skipped_on_cpu_variant(cpu_run):
    cuda = by_name(cpu_run[1])["cuda"]
    assert cuda["status"] == "skipped" and cuda["reason"] == "CPU variant: no CUDA stack"


def test_torch_passed_with_found_versions(cpu_run):
    _, report, _ = cpu_run
    check = by_name(report)["torch"]
    assert check["status"] == "passed", check
    assert report["found"]["torch"] == torch.__version__
    assert report["found"]["python"] == platform.python_version()
    assert report["found"]["cuda"] == torch.version.cuda
    comps = check["figures"]["expectations"]
    assert comps["torch"]["status"] == "ok" and comps["cuda"]["status"] == "ok"
    assert comps["python"]["status"] == "ok" and comps["torchvision"]["status"] == "ok"
    assert comps["cudnn"]["status"] == "not given"  # not invented
    assert check["figures"]["gpu"] == {"status": "skipped", "reason": "CPU variant"}


def test_ddp_gloo_two_processes(cpu_run):
    ddp = by_name(cpu_run[1])["ddp"]
    assert ddp["status"] == "passed", ddp
    fig = ddp["figures"]
    assert fig["world_size"] == 2 and fig["backend"] == "gloo"
    assert fig["loss_last"] < fig["loss_first"]
    assert fig["allreduce_busbw_GBps"] > 0
    assert fig["steps"] == 20 and fig["param_max_abs_diff_across_ranks"] == 0


def test_runtime_flavor_fails_on_a_compiler(cpu_run):
    proc, report, _ = cpu_run
    flavor = by_name(report)["flavor"]
    if shutil.which("gcc") is None:
        assert flavor["status"] == "passed"
        return
    assert flavor["status"] == "failed" and "gcc" in flavor["reason"]
    assert report["passed"] is False and proc.returncode == 1


def horovod_installed() -> bool:
    try:
        import horovod.torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_horovod_absent_is_skipped(cpu_run):
    if horovod_installed():
        pytest.skip("horovod is installed here")
    for name in ("horovod_gloo", "horovod_mpi"):
        check = by_name(cpu_run[1])[name]
        assert check["status"] == "skipped" and check["reason"] == "horovod not installed"


def test_horovod_gloo_when_installed(cpu_run):
    if not horovod_installed():
        pytest.skip("horovod is not installed here")
    check = by_name(cpu_run[1])["horovod_gloo"]
    assert check["status"] == "passed", check
    fig = check["figures"]
    assert fig["size"] == 2 and fig["allreduce_avg"] == fig["allreduce_expected"] == 1.5
    assert fig["param_max_abs_diff_across_ranks"] == 0 and fig["params_changed"]
    assert fig["check_build"]["frameworks"]["PyTorch"] is True
    assert cpu_run[1]["found"]["horovod"] == fig["found"]


def test_suite_is_quick(cpu_run):
    """Whole CPU suite (runtime flavor) within a minute; DDP within a few seconds of work."""
    _, report, wall = cpu_run
    assert wall < 60, wall
    assert by_name(report)["ddp"]["duration_s"] < 30


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this host has nvidia-smi")
def test_gpu_skipped_without_nvidia_smi(tmp_path):
    proc, report = run_suite("--only", "gpu")
    gpu = by_name(report)["gpu"]
    assert proc.returncode == 0
    assert gpu["status"] == "skipped" and gpu["reason"] == "no GPU: nvidia-smi not found"
    assert by_name(report)["ddp"]["reason"] == "not selected (--only gpu)"


def test_devel_flavor_builds_a_cpp_extension(tmp_path):
    if shutil.which("g++") is None or shutil.which("ninja") is None:
        pytest.skip("needs g++ and ninja")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        pytest.skip("needs the Python headers")
    report_path = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SUITE),
            "--only",
            "flavor",
            "--flavor",
            "devel",
            "--expect-cuda",
            "cpu",
            "--report",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    flavor = by_name(json.loads(report_path.read_text()))["flavor"]
    assert proc.returncode == 0, proc.stderr
    assert flavor["status"] == "passed", flavor
    assert flavor["figures"]["cpp_extension"] == "ok"
    assert flavor["figures"]["cuda_extension"] == "skipped: CPU variant"
    assert proc.stdout == ""  # the report went to the file


def test_wrong_torch_expectation_fails():
    proc, report = run_suite("--only", "torch", "--expect-torch", "0.0.1", "--expect-cuda", "cpu")
    check = by_name(report)["torch"]
    assert proc.returncode == 1
    assert check["status"] == "failed"
    assert f"torch: expected 0.0.1, found {torch.__version__}" in check["reason"]


def test_hung_check_is_killed_and_reported():
    token = uuid.uuid4().hex
    env = clean_env(GPUIMAGES_SMOKE_TEST_HANG="ddp", GPUIMAGES_TEST_TOKEN=token)
    start = time.time()
    # 20 s: the workers import torch before they reach the hang, which takes several
    # seconds on a loaded 2-core machine; the kill itself must follow within seconds.
    proc, report = run_suite(
        "--only", "ddp", "--expect-cuda", "cpu", "--timeout", "20", env=env, timeout=90
    )
    wall = time.time() - start
    ddp = by_name(report)["ddp"]
    assert proc.returncode == 1
    assert ddp["status"] == "failed" and ddp["reason"] == "timed out after 20 s"
    assert "hanging on purpose" in ddp["log_tail"]
    assert wall < 35, wall
    time.sleep(0.5)
    assert not processes_with_env(f"GPUIMAGES_TEST_TOKEN={token}"), "leftover processes"


def processes_with_env(needle: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().decode("utf-8", "replace")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if needle in environ.split("\0") and stat.rsplit(")", 1)[-1].split()[0] != "Z":
            found.append(int(entry))
    return found


def test_two_nodes_on_one_machine(tmp_path):
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        cmd = [
            sys.executable,
            str(SUITE),
            "--only",
            "ddp",
            "--expect-cuda",
            "cpu",
            "--nnodes",
            "2",
            "--node-rank",
            str(rank),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            port,
            "--timeout",
            "120",
            "--report",
            str(tmp_path / f"node{rank}.json"),
        ]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
            )
        )
    outs = [p.communicate(timeout=180) for p in procs]
    for rank, proc in enumerate(procs):
        assert proc.returncode == 0, outs[rank][1]
        ddp = by_name(json.loads((tmp_path / f"node{rank}.json").read_text()))["ddp"]
        assert ddp["status"] == "passed", ddp
        assert ddp["figures"]["world_size"] == 2 and ddp["figures"]["node_rank"] == rank
        assert ddp["figures"]["loss_last"] < ddp["figures"]["loss_first"]
        assert ddp["reason"].startswith(f"node {rank} of 2:")
