"""The image's start-up check: the doctor's verdicts baked as data (gpuimages/build/startup.py)
and the stdlib entrypoint that reads them (scripts/entrypoint/startup_check.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpuimages.build.startup import facts_text, startup_facts
from gpuimages.facts import support
from gpuimages.facts.matrix import load_matrix

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "entrypoint" / "startup_check.py"
CUDA13 = "2.14.1-cuda13.0-cudnn9-runtime"
CUDA113 = "1.12.0-cuda11.3-cudnn8-runtime"


def _load():
    spec = importlib.util.spec_from_file_location("gpuimages_startup_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load()


@pytest.fixture(scope="module")
def shipped():
    return load_matrix(ROOT / "matrix.yaml")


def facts(shipped, compat, name: str) -> dict:
    # Through JSON, exactly as the image reads it.
    return json.loads(facts_text(shipped.by_name()[name], shipped.variants, compat))


def gpus(driver: str, *caps: str) -> list[dict]:
    rows = "\n".join(f"{driver}, NVIDIA Test GPU {i}, {cap}" for i, cap in enumerate(caps))
    return check.parse_smi(rows)


def run_findings(f, smi_rows, shm=16 << 30):
    return check.findings(f, environ={}, smi=lambda: smi_rows, shm=lambda: shm)


@pytest.mark.parametrize(
    "driver",
    ["0", "450.80.02", "470.42.01", "520.61.05", "535.104.05", "575.51.03", "580.65.06", "590"],
)
def test_every_driver_gets_the_doctors_verdict(shipped, compat, driver):
    """The band lookup in the image answers what the doctor answers, word for word."""
    for name in (CUDA13, CUDA113):
        variant = shipped.by_name()[name]
        expected = support.verdict_for(variant, driver, (), compat)
        band = check.band_for(facts(shipped, compat, name)["driver_bands"], driver)
        assert band["verdict"] == expected.verdict
        assert band["detail"].replace("{driver}", driver) == expected.detail


def test_silent_when_all_is_well(shipped, compat):
    f = facts(shipped, compat, CUDA13)
    assert run_findings(f, gpus("580.65.06", "9.0", "8.6")) == []
    assert run_findings(f, gpus("590.48.01", "10.3")) == []  # binary compatible with sm_100


def test_driver_too_old_names_fix_and_tags_that_fit(shipped, compat):
    [line] = run_findings(facts(shipped, compat, CUDA13), gpus("535.104.05", "9.0"))
    assert line.startswith("driver 535.104.05: unsupported. driver 535.104.05 (supports CUDA 12.2)")
    assert "install nvidia-driver-580 or newer" in line
    assert "Tags that fit this driver: 2.3.1-cuda12.1-cudnn8-runtime" in line


def test_minor_version_compatibility_with_its_limits(shipped, compat):
    [line] = run_findings(facts(shipped, compat, CUDA113), gpus("455.32.00", "8.0"))
    assert "refused by NVIDIA_REQUIRE_CUDA" in line
    assert "minor-version-compatibility floor: CUDA 11.3 runs with limits" in line
    assert "NVIDIA_DISABLE_REQUIRE=1" in line


def test_no_kernel_image_predicted_with_a_variant_that_has_it(shipped, compat):
    lines = run_findings(facts(shipped, compat, CUDA13), gpus("580.65.06", "5.2", "9.0"))
    [line] = lines
    assert line.startswith("GPU 0 NVIDIA Test GPU 0: no kernels for sm_52 in this wheel")
    assert "no kernel image is available for execution on the device" in line
    assert "Matrix variants with its kernels: 2.5.1-cuda12.4-cudnn9-runtime" in line


def test_small_shm_warns_with_the_fix(shipped, compat):
    for name in ("2.13.0-cpu-runtime", CUDA13):
        lines = run_findings(facts(shipped, compat, name), [], shm=64 << 20)
        assert len(lines) == 1
        assert lines[0].startswith("/dev/shm is 64 MiB, below 1.0 GiB")
        assert "--ipc=host" in lines[0] and "--shm-size" in lines[0]


def test_cpu_image_never_asks_nvidia_smi(shipped, compat):
    def smi():
        raise AssertionError("nvidia-smi asked on a CPU image")

    f = facts(shipped, compat, "2.13.0-cpu-runtime")
    assert check.findings(f, environ={}, smi=smi, shm=lambda: 8 << 30) == []
    assert "driver_bands" not in f


def test_old_driver_without_compute_cap_asks_again():
    calls = []

    def run(argv, **kw):
        calls.append(argv[1])
        if "compute_cap" in argv[1]:
            return subprocess.CompletedProcess(argv, 2, "", 'Field "compute_cap" is not a valid')
        return subprocess.CompletedProcess(argv, 0, "470.82.01, Tesla T4\n", "")

    assert check.query_smi(run) == [
        {"index": 0, "driver": "470.82.01", "name": "Tesla T4", "arch": None}
    ]
    assert calls == [
        "--query-gpu=driver_version,name,compute_cap",
        "--query-gpu=driver_version,name",
    ]


def test_nvidia_smi_missing_or_hanging_is_no_gpu():
    def missing(argv, **kw):
        raise FileNotFoundError(argv[0])

    def hanging(argv, **kw):
        raise subprocess.TimeoutExpired(argv, kw["timeout"])

    assert check.query_smi(missing) == [] and check.query_smi(hanging) == []


def _entrypoint(tmp_path, facts_obj, *argv, env=None):
    path = tmp_path / "startup.json"
    path.write_text(json.dumps(facts_obj))
    environ = {"PATH": "/usr/bin:/bin", "GPUIMAGES_STARTUP_FACTS": str(path), **(env or {})}
    return subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        env=environ,
        timeout=30,
    )


HUGE_SHM = {"schema": 1, "cuda": "cpu", "shm": {"min_bytes": 1 << 50, "fix": "use --ipc=host"}}


def test_command_runs_with_its_exit_code_and_signal(tmp_path):
    r = _entrypoint(tmp_path, HUGE_SHM, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7 and r.stdout == "out\n"
    assert r.stderr.startswith("gpuimages: /dev/shm is ") and r.stderr.endswith("err\n")
    r = _entrypoint(tmp_path, HUGE_SHM, "sh", "-c", "kill -TERM $$")
    assert r.returncode == -15


def test_exec_keeps_the_pid(tmp_path):
    """exec, not a child: signals sent to the container's PID 1 reach the command."""
    code = "import os; print(os.getpid(), os.getppid())"
    path = tmp_path / "pid.py"
    path.write_text(code)
    r = _entrypoint(tmp_path, HUGE_SHM, sys.executable, str(path), env={"GPUIMAGES_QUIET": "1"})
    pid, _ppid = r.stdout.split()
    assert r.returncode == 0 and r.stderr == ""
    assert int(pid) > 0


def test_quiet_mutes_and_missing_command_says_so(tmp_path):
    r = _entrypoint(tmp_path, HUGE_SHM, "true", env={"GPUIMAGES_QUIET": "1"})
    assert r.returncode == 0 and r.stderr == ""
    r = _entrypoint(tmp_path, HUGE_SHM, "no-such-command-here", env={"GPUIMAGES_QUIET": "1"})
    assert r.returncode == 127 and "no-such-command-here" in r.stderr


def test_broken_facts_never_stop_the_command(tmp_path):
    r = _entrypoint(tmp_path, {"shm": {"min_bytes": "many"}}, "sh", "-c", "exit 3")
    assert r.returncode == 3 and "start-up check failed (ValueError" in r.stderr


def test_facts_are_plain_json_per_variant(shipped, compat):
    for v in shipped.variants:
        f = startup_facts(v, shipped.variants, compat)
        assert json.loads(json.dumps(f)) == f
        assert f["variant"] == v.name and f["shm"]["min_bytes"] == support.MIN_SHM_BYTES
