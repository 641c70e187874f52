"""Pure logic of the smoke scripts (scripts/smoke/): no torch, no GPU, no Docker."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "smoke"
if str(SMOKE) not in sys.path:
    sys.path.insert(0, str(SMOKE))  # the scripts import their helper as `smokelib`


def _load(name: str):
    spec = importlib.util.spec_from_file_location("gpuimages_smoke_" + name, SMOKE / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smokelib = _load("smokelib")
suite = _load("suite")
check_gpu = _load("check_gpu")
check_torch = _load("check_torch")
check_ddp = _load("check_ddp")
check_flavor = _load("check_flavor")
check_horovod = _load("check_horovod")

SMI_WITH_CC = """\
NVIDIA A100-SXM4-80GB, 535.104.05, 81920, 8.0
NVIDIA A100-SXM4-80GB, 535.104.05, 81920, 8.0
"""
SMI_OLD_ERROR = 'Field "compute_cap" is not a valid field to query.\n\n'
SMI_WITHOUT_CC = "Tesla V100-SXM2-16GB, 450.80.02, 16160\n"

CHECK_BUILD = """\
Horovod v0.28.1:

Available Frameworks:
    [ ] TensorFlow
    [X] PyTorch
    [ ] MXNet

Available Controllers:
    [X] MPI
    [X] Gloo

Available Tensor Operations:
    [ ] NCCL
    [ ] DDL
    [ ] CCL
    [X] MPI
    [X] Gloo
"""


# ---------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("expected", "found", "ok"),
    [
        ("2.13.0", "2.13.0+cpu", True),
        ("1.12.0", "1.12.0+cu113", True),
        ("1.12", "1.12.0", True),
        ("1.12.0", "1.12.1+cu113", False),
        ("2.1.0", "2.1.0a0+git32f93b1", False),
        ("2.1.0a0", "2.1.0a0+git32f93b1", True),
        ("2.13.0+cu121", "2.13.0+cpu", False),
        ("2.13.0+cpu", "2.13.0+cpu", True),
        ("0.13.0", None, False),
    ],
)
def test_versions_match_ignores_local_suffix(expected, found, ok):
    assert smokelib.versions_match(expected, found) is ok


@pytest.mark.parametrize(
    ("found", "minimum", "ok"),
    [
        ("535.104.05", "450.80.02", True),
        ("450.102.04", "450.80.02", True),  # numeric, not lexicographic
        ("450.80.02", "450.80.2", True),
        ("418.67", "450.80.02", False),
        ("470", "470.57.02", False),
        ("1000.1", "999.9", True),
    ],
)
def test_version_ge_is_numeric(found, minimum, ok):
    assert smokelib.version_ge(found, minimum) is ok


def test_version_decoding():
    assert smokelib.major_minor("11.3.1") == "11.3"
    assert smokelib.major_minor("12") == "12.0"
    assert smokelib.major_minor(None) is None
    assert smokelib.cudnn_version_str(8302) == "8.3.2"
    assert smokelib.cudnn_version_str(7605) == "7.6.5"
    assert smokelib.cudnn_version_str(90100) == "9.1.0"
    assert smokelib.cudnn_version_str(None) is None
    assert smokelib.nccl_version_str((2, 10, 3)) == "2.10.3"
    assert smokelib.nccl_version_str(2708) == "2.7.8"
    assert smokelib.nccl_version_str(21003) == "2.10.3"


def test_archs_normalized_and_matched():
    assert smokelib.normalize_archs("sm_70, 8.0;8.6+PTX 90") == [
        "sm_70",
        "sm_80",
        "sm_86",
        "compute_86",
        "sm_90",
    ]
    with pytest.raises(ValueError):
        smokelib.normalize_archs("ampere")
    archs = ["sm_70", "sm_80", "sm_86"]
    assert smokelib.arch_supported((8, 0), archs) == (True, "exact sm_80")
    ok, how = smokelib.arch_supported((8, 9), archs)
    assert ok and "sm_86" in how  # Ada runs Ampere cubins
    ok, how = smokelib.arch_supported((9, 0), [*archs, "compute_80"])
    assert ok and "PTX compute_80" in how
    ok, how = smokelib.arch_supported((9, 0), archs)
    assert not ok and "sm_90 not in" in how
    assert not smokelib.arch_supported((6, 1), ["sm_70"])[0]
    assert smokelib.normalize_archs("sm_90a,10.0f") == ["sm_90a", "sm_100f"]
    assert smokelib.arch_supported((9, 0), ["sm_80", "sm_90a"])[0]
    assert not smokelib.arch_supported((9, 1), ["sm_90a"])[0]  # arch-specific: exact GPU only
    assert smokelib.arch_supported((12, 0), ["sm_100", "sm_120"]) == (True, "exact sm_120")


# -------------------------------------------------------------------- nvidia-smi


def test_parse_gpu_csv_with_compute_cap():
    gpus = smokelib.parse_gpu_csv(SMI_WITH_CC)
    assert len(gpus) == 2
    assert gpus[1] == {
        "index": 1,
        "name": "NVIDIA A100-SXM4-80GB",
        "driver": "535.104.05",
        "memory_mib": 81920,
        "compute_cap": "8.0",
    }


def test_parse_gpu_csv_odd_values():
    gpus = smokelib.parse_gpu_csv("Weird, Inc. GPU, 470.57.02, [N/A], [N/A]\n")
    assert gpus[0]["name"] == "Weird, Inc. GPU"
    assert gpus[0]["memory_mib"] is None and gpus[0]["compute_cap"] is None
    with pytest.raises(ValueError):
        smokelib.parse_gpu_csv("garbage\n")


def _fake_runner(*answers):
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        rc, out = answers[len(calls) - 1]
        return SimpleNamespace(returncode=rc, stdout=out)

    return run, calls


def test_query_gpus_uses_query_format():
    runner, calls = _fake_runner((0, SMI_WITH_CC))
    gpus, info = smokelib.query_gpus(runner, smi="/usr/bin/nvidia-smi")
    assert calls[0] == [
        "/usr/bin/nvidia-smi",
        "--format=csv,noheader,nounits",
        "--query-gpu=name,driver_version,memory.total,compute_cap",
    ]
    assert [g["compute_cap"] for g in gpus] == ["8.0", "8.0"]
    assert info["compute_cap_source"] == "nvidia-smi"


def test_query_gpus_falls_back_for_old_drivers():
    runner, calls = _fake_runner((2, SMI_OLD_ERROR), (0, SMI_WITHOUT_CC))
    gpus, info = smokelib.query_gpus(runner, smi="nvidia-smi")
    assert calls[1][-1] == "--query-gpu=name,driver_version,memory.total"
    assert gpus == [
        {
            "index": 0,
            "name": "Tesla V100-SXM2-16GB",
            "driver": "450.80.02",
            "memory_mib": 16160,
            "compute_cap": None,
        }
    ]
    assert "unavailable on this driver" in info["compute_cap_source"]
    assert "compute_cap" in info["compute_cap_source"]


def test_query_gpus_reports_a_dead_driver():
    msg = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    runner, _ = _fake_runner((9, msg), (9, msg))
    with pytest.raises(RuntimeError, match="couldn't communicate"):
        smokelib.query_gpus(runner, smi="nvidia-smi")


def test_nvidia_smi_list_count(monkeypatch):
    monkeypatch.setattr(smokelib, "nvidia_smi_path", lambda: "nvidia-smi")
    out = "GPU 0: NVIDIA H100 (UUID: GPU-1)\nGPU 1: NVIDIA H100 (UUID: GPU-2)\n"
    runner, _ = _fake_runner((0, out))
    assert smokelib.nvidia_smi_list_count(runner) == 2


def test_gpu_check_evaluation():
    gpus = smokelib.parse_gpu_csv(SMI_WITH_CC)
    status, reason, figures = check_gpu.evaluate(gpus, {}, min_driver="450.80.02")
    assert status == "passed" and "driver >= 450.80.02" in reason
    assert figures["driver"] == "535.104.05" and figures["count"] == 2
    status, reason, _ = check_gpu.evaluate(gpus, {}, min_driver="545.23.06")
    assert status == "failed" and "older than the minimum 545.23.06" in reason
    status, reason, _ = check_gpu.evaluate(gpus, {}, require_gpus=4)
    assert status == "failed" and "needs 4 GPUs, found 2" in reason
    status, _, figures = check_gpu.evaluate(gpus, {})
    assert status == "passed" and figures["min_driver"] == smokelib.NOT_GIVEN


# ------------------------------------------------------------- horovod check-build


def test_parse_check_build():
    parsed = smokelib.parse_check_build(CHECK_BUILD)
    assert parsed["version"] == "0.28.1"
    assert parsed["frameworks"] == {"TensorFlow": False, "PyTorch": True, "MXNet": False}
    assert parsed["controllers"] == {"MPI": True, "Gloo": True}
    assert parsed["tensor_operations"] == {
        "NCCL": False,
        "DDL": False,
        "CCL": False,
        "MPI": True,
        "Gloo": True,
    }
    empty = smokelib.parse_check_build("horovodrun: command failed\n")
    assert empty["version"] is None and empty["controllers"] == {}


def test_horovod_plan_and_commands():
    build = smokelib.parse_check_build(CHECK_BUILD)
    assert check_horovod.plan("gloo", build, True, True) == (None, "")
    assert check_horovod.plan("gloo", build, False, True) == ("failed", "horovodrun not found")
    assert check_horovod.plan("mpi", build, True, False) == ("failed", "mpirun not found")
    no_mpi = {"controllers": {"MPI": False, "Gloo": True}}
    assert check_horovod.plan("mpi", no_mpi, True, False)[0] == "skipped"
    gloo = check_horovod.launcher_command("gloo", "horovodrun", "mpirun", "py", "horovod_gloo")
    assert gloo[:7] == ["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", "py"]
    assert gloo[-2:] == ["--name", "horovod_gloo"]
    mpi = check_horovod.launcher_command("mpi", "horovodrun", "mpirun", "py", "horovod_mpi")
    text = " ".join(mpi)
    assert text.startswith("mpirun --allow-run-as-root -np 2 -bind-to none -map-by slot")
    assert "-x NCCL_DEBUG=INFO -x LD_LIBRARY_PATH -x PATH -mca pml ob1 -mca btl ^openib py" in text


# ------------------------------------------------------------------ result lines


def test_result_line_round_trip_among_noise():
    line = smokelib.format_result_line(smokelib.make_result("ddp", "passed", "ok", {"x": 1}))
    output = "\n".join(
        [
            "some warning",
            smokelib.MARKER + "{not json",
            "[default0]:" + line,  # launchers may prefix worker lines
            smokelib.MARKER + json.dumps({"name": "ddp", "status": "bogus"}),
            smokelib.format_result_line(smokelib.make_result("ddp", "failed", "later")),
            smokelib.format_result_line(smokelib.make_result("other", "skipped")),
            "trailing noise",
        ]
    )
    results = smokelib.parse_result_lines(output)
    assert [r["status"] for r in results] == ["passed", "failed", "skipped"]
    assert results[0]["figures"] == {"x": 1}
    assert smokelib.last_result(output, "ddp")["reason"] == "later"
    assert smokelib.last_result(output)["name"] == "other"
    assert smokelib.last_result("nothing here") is None
    with pytest.raises(ValueError):
        smokelib.make_result("x", "ok")


def test_emit_result_exit_code(capsys):
    assert smokelib.emit_result("gpu", "skipped", "no GPU") == 0
    assert smokelib.emit_result("gpu", "failed", "bad") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(smokelib.MARKER)
    assert json.loads(out[1][len(smokelib.MARKER) :])["reason"] == "bad"


def test_maybe_hang_only_for_named_check(monkeypatch):
    monkeypatch.setenv(smokelib.HANG_ENV, "ddp")
    smokelib.maybe_hang("torch")  # returns at once


# ---------------------------------------------------------------- report assembly


def _outcome(output="", rc=0, timed_out=False, duration=1.234):
    return smokelib.RunOutcome(rc, output, timed_out, duration)


def test_result_from_run():
    passed = smokelib.format_result_line(smokelib.make_result("torch", "passed", "fine", {"a": 1}))
    entry = suite.result_from_run("torch", _outcome("x\n" + passed), 300)
    assert entry["status"] == "passed" and entry["figures"] == {"a": 1}
    assert entry["duration_s"] == 1.23 and passed in entry["log_tail"]

    entry = suite.result_from_run("ddp", _outcome("starting\n", rc=None, timed_out=True), 5)
    assert entry["status"] == "failed" and entry["reason"] == "timed out after 5 s"

    entry = suite.result_from_run("torch", _outcome("Segmentation fault\n", rc=-11), 300)
    assert (
        entry["status"] == "failed"
        and "exited with code -11 without a result line" in entry["reason"]
    )

    entry = suite.result_from_run("torch", _outcome(passed, rc=3), 300)
    assert entry["status"] == "failed" and "exited with code 3" in entry["reason"]

    long_output = "\n".join(f"line {i}" for i in range(100))
    entry = suite.result_from_run("gpu", _outcome(long_output), 300)
    assert entry["log_tail"].splitlines() == [f"line {i}" for i in range(60, 100)]


def test_assemble_report_and_summary():
    torch_entry = {
        "name": "torch",
        "status": "passed",
        "reason": "ok",
        "duration_s": 2.0,
        "figures": {"found": {"torch": "2.13.0+cpu", "python": "3.11.7", "cuda": None}},
        "log_tail": "",
    }
    hvd_entry = {
        "name": "horovod_gloo",
        "status": "failed",
        "reason": "boom",
        "duration_s": 1.0,
        "figures": {"found": "0.28.1"},
        "log_tail": "Traceback\nboom",
    }
    results = [torch_entry, hvd_entry]
    found = suite.found_from_results(results)
    assert found["torch"] == "2.13.0+cpu" and found["horovod"] == "0.28.1"
    assert set(found) == set(suite.FOUND_KEYS)
    host = {"hostname": "h", "python": "3.11.7", "torch": "2.13.0+cpu", "gpus": []}
    report = suite.assemble_report(host, results, found, {"expect-torch": None}, 3.0)
    assert report["schema"] == 1 and report["passed"] is False
    assert report["failed_checks"] == ["horovod_gloo"]
    assert report["expected"] == {"expect-torch": smokelib.NOT_GIVEN}
    assert set(report) >= {"schema", "host", "checks", "found"}
    json.dumps(report)
    text = suite.format_summary(report)
    assert "PASS  torch" in text and "FAIL  horovod_gloo" in text
    assert "not checked" in text and "expect-torch" in text
    assert "result: FAILED (1 passed, 1 failed, 0 skipped)" in text
    assert "  | boom" in text


def test_write_report(tmp_path, capsys):
    suite.write_report({"schema": 1}, str(tmp_path / "sub" / "r.json"))
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"schema": 1}
    suite.write_report({"schema": 1}, None)
    assert json.loads(capsys.readouterr().out) == {"schema": 1}


# ------------------------------------------------------- options and env defaults


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("GPUIMAGES_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_expectations_default_from_env(clean_env):
    clean_env.setenv("GPUIMAGES_TORCH", "1.12.0")
    clean_env.setenv("GPUIMAGES_CUDA", "11.3")
    clean_env.setenv("GPUIMAGES_CUDNN", "8")
    clean_env.setenv("GPUIMAGES_PYTHON", "3.8")
    clean_env.setenv("GPUIMAGES_TORCHVISION", "none")
    clean_env.setenv("GPUIMAGES_FLAVOR", "devel")
    clean_env.setenv("GPUIMAGES_MIN_DRIVER", "450.80.02")
    clean_env.setenv("GPUIMAGES_ARCHS", "sm_70,sm_80")
    clean_env.setenv("GPUIMAGES_HOROVOD", "0.28.1")
    clean_env.setenv("GPUIMAGES_REQUIRE_GPUS", "2")
    args = suite.parse_args([])
    assert args.expect_torch == "1.12.0" and args.expect_cuda == "11.3"
    assert args.expect_cudnn == "8" and args.expect_python == "3.8"
    assert args.expect_torchvision == "none" and args.flavor == "devel"
    assert args.min_driver == "450.80.02" and args.archs == "sm_70,sm_80"
    assert args.expect_horovod == "0.28.1" and args.require_gpus == 2
    assert args.timeout == 300 and args.selected == suite.CHECK_NAMES
    # the command line wins over the environment
    args = suite.parse_args(["--expect-torch", "1.13.1", "--flavor", "runtime"])
    assert args.expect_torch == "1.13.1" and args.flavor == "runtime"


def test_unset_or_empty_expectations_are_not_invented(clean_env):
    clean_env.setenv("GPUIMAGES_TORCH", "  ")
    args = suite.parse_args([])
    assert all(v is None for v in suite.expectations(args).values())
    cmd = suite.check_command("torch", args, python="py")
    assert cmd == ["py", str(SMOKE / "check_torch.py")]
    assert suite.check_command("ddp", args, python="py")[2:] == [
        "--nnodes",
        "1",
        "--node-rank",
        "0",
    ]


def test_check_commands_forward_expectations(clean_env):
    clean_env.setenv("GPUIMAGES_CUDA", "cpu")
    args = suite.parse_args(
        ["--expect-torch", "2.13.0", "--flavor", "devel", "--min-driver", "470"]
    )
    assert suite.check_command("gpu", args, "py")[2:] == [
        "--min-driver",
        "470",
        "--expect-cuda",
        "cpu",
    ]
    assert suite.check_command("torch", args, "py")[2:] == [
        "--expect-torch",
        "2.13.0",
        "--expect-cuda",
        "cpu",
    ]
    assert suite.check_command("flavor", args, "py")[2:] == [
        "--flavor",
        "devel",
        "--expect-cuda",
        "cpu",
    ]
    assert suite.check_command("horovod_mpi", args, "py")[2:] == [
        "--launcher",
        "mpi",
        "--expect-cuda",
        "cpu",
    ]
    args = suite.parse_args(
        ["--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port", "29600"]
    )
    assert suite.check_command("ddp", args, "py")[2:] == [
        "--expect-cuda",
        "cpu",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29600",
    ]


def test_bad_options_are_refused(clean_env, capsys):
    for argv in (["--only", "nope"], ["--nnodes", "2"], ["--archs", "ampere"], ["--flavor", "x"]):
        with pytest.raises(SystemExit) as exc:
            suite.parse_args(argv)
        assert exc.value.code == 2


def test_select_checks():
    assert suite.select_checks(None, None) == suite.CHECK_NAMES
    assert suite.select_checks("ddp,torch", None) == ["torch", "ddp"]
    assert suite.select_checks(None, "horovod") == ["gpu", "torch", "cuda", "ddp", "flavor"]
    assert suite.select_checks("horovod", "horovod_mpi") == ["horovod_gloo"]
    with pytest.raises(ValueError, match="unknown check"):
        suite.select_checks("gpus", None)


# ------------------------------------------------------------------ check logic


def _found(**over):
    found = {
        "torch": "1.12.0+cu113",
        "torchvision": "0.13.0+cu113",
        "python": "3.8.13",
        "cuda": "11.3",
        "cudnn": "8.3.2",
        "nccl": "2.10.3",
    }
    found.update(over)
    return found


def test_compare_versions():
    expected = {
        "torch": "1.12.0",
        "cuda": "11.3",
        "cudnn": "8",
        "python": "3.8",
        "torchvision": "0.13.0",
    }
    comps = check_torch.compare_versions(_found(), expected)
    assert {k: c["status"] for k, c in comps.items()} == dict.fromkeys(expected, "ok")

    comps = check_torch.compare_versions(_found(cuda="11.6", cudnn="9.1.0"), expected)
    assert comps["cuda"]["status"] == "mismatch" and comps["cudnn"]["status"] == "mismatch"

    comps = check_torch.compare_versions(_found(), dict.fromkeys(expected))
    assert {c["status"] for c in comps.values()} == {smokelib.NOT_GIVEN}

    cpu = _found(torch="2.13.0+cpu", cuda=None, cudnn=None, torchvision=None)
    comps = check_torch.compare_versions(
        cpu, {"torch": "2.13.0", "cuda": "cpu", "cudnn": "none", "torchvision": "none"}
    )
    assert all(comps[k]["status"] == "ok" for k in ("torch", "cuda", "cudnn", "torchvision"))
    comps = check_torch.compare_versions(_found(), {"cuda": "cpu", "torchvision": "none"})
    assert comps["cuda"]["status"] == "mismatch" and comps["torchvision"]["status"] == "mismatch"


def test_ddp_plan():
    plan = check_ddp.plan
    assert plan(True, False, 0, None, 1, None) == (None, "CPU variant: gloo on CPU", "cpu", 2)
    assert plan(True, False, 0, None, 2, None)[2:] == ("cpu", 1)
    assert plan(False, True, 0, None, 1, None)[1:] == ("no GPU visible: gloo on CPU", "cpu", 2)
    assert plan(False, True, 1, None, 1, None)[:2] == ("skipped", "needs 2 GPUs, found 1")
    assert plan(False, True, 1, 2, 1, None)[:2] == ("failed", "needs 2 GPUs, found 1")
    assert plan(False, True, 0, 1, 1, None)[0] == "failed"
    assert plan(False, True, 8, None, 1, None)[2:] == ("gpu", 8)
    assert plan(False, True, 1, None, 2, None)[2:] == ("gpu", 1)  # 1 GPU on each of 2 nodes
    assert plan(False, True, 2, None, 1, 4)[0] == "failed"
    assert plan(True, False, 0, None, 1, 1)[0] == "failed"  # world size 1


def test_ddp_launcher_command():
    cmd = check_ddp.launcher_command("py", 2, 1, "10.0.0.1", 29500, 4, ["--backend", "nccl"])
    text = " ".join(cmd)
    assert text.startswith("py -m torch.distributed.run")
    assert "--nnodes 2 --node_rank 1 --master_addr 10.0.0.1 --master_port 29500" in text
    assert "--nproc_per_node 4" in text and text.endswith("ddp_train.py --backend nccl")
    old = check_ddp.launcher_command("py", 1, 0, "127.0.0.1", 1, 2, [], have_run=False)
    assert old[:4] == ["py", "-m", "torch.distributed.launch", "--use_env"]


def test_find_compilers():
    paths = {"gcc": "/usr/bin/gcc", "cc": "/usr/bin/cc"}
    found = check_flavor.find_compilers(which=paths.get, exists=lambda p: p.endswith("nvcc"))
    assert found == {"gcc": "/usr/bin/gcc", "cc": "/usr/bin/cc", "nvcc": "/usr/local/cuda/bin/nvcc"}
    assert check_flavor.find_compilers(which=lambda _: None, exists=lambda _: False) == {}


# -------------------------------------------------------------- process handling


def test_timeout_kills_children_in_other_sessions(tmp_path):
    """torchrun starts its workers in new sessions: a process-group kill misses them."""
    pidfile = tmp_path / "pid"
    child = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
        " start_new_session=True)\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    start = time.time()
    outcome = smokelib.run_captured([sys.executable, "-c", child], timeout=3)
    assert outcome.timed_out and time.time() - start < 10
    assert "started" in outcome.output
    grandchild = int(pidfile.read_text())
    deadline = time.time() + 5
    while time.time() < deadline and _alive(grandchild):
        time.sleep(0.1)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_run_captured_normal_exit():
    outcome = smokelib.run_captured(
        [sys.executable, "-c", "print('hi'); raise SystemExit(3)"], timeout=30
    )
    assert outcome.returncode == 3 and outcome.output.strip() == "hi" and not outcome.timed_out


def test_check_scripts_run_alone_without_torch(tmp_path):
    """check_gpu needs no torch: a CPU variant is skipped, with the one result line."""
    proc = subprocess.run(
        [sys.executable, str(SMOKE / "check_gpu.py"), "--expect-cuda", "cpu"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert smokelib.last_result(proc.stdout, "gpu")["reason"] == "CPU variant"
