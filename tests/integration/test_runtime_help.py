"""Images that help their users at run time (issue 15), in a real CPU image:
protected torch (PIP_CONSTRAINT), the start-up check (entrypoint), non-root by default.

The image is the session's CPU runtime build (conftest's `cpu_build`: the shipped variant
under the tests' own repository name, from the local base and the wheelhouse). Without a GPU, a
stand-in `nvidia-smi` and a CUDA variant's rendered startup.json, both bound into the
container, drive the driver and arch verdicts through the real entrypoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

CUDA13 = "2.14.1-cuda13.0-cudnn9-runtime"


@pytest.fixture(scope="module")
def image(cpu_build) -> str:
    return cpu_build["image_id"]


def run(client, image, command, *, shm="2g", **kw) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a container, removed afterwards."""
    container = client.containers.run(image, command, detach=True, shm_size=shm, **kw)
    try:
        code = container.wait(timeout=300)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        return code, out, err
    finally:
        container.remove(force=True)


def make_wheel(dest: Path, name: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (no network, no build backend)."""
    dist = f"{name.replace('-', '_')}-1.0"
    files = {
        f"{name.replace('-', '_')}/__init__.py": "VERSION = '1.0'\n",
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: 1.0\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: gpuimages-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("wheels")
    dest.chmod(0o755)
    make_wheel(dest, "gpuimages-probe-ok", ("numpy",))
    make_wheel(dest, "gpuimages-probe-needs-torch", ("torch==2.12.0",))
    for wheel in dest.iterdir():
        wheel.chmod(0o644)
    return dest


def pip(wheels: Path, *args: str) -> dict:
    return {
        "command": [
            "python",
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            "/wheels",
            *list(args),
        ],
        "volumes": {str(wheels): {"bind": "/wheels", "mode": "ro"}},
    }


# --- 1. protected torch --------------------------------------------------------------


def test_constraints_pin_what_is_installed(client, image):
    code, out, err = run(client, image, ["cat", "/opt/gpuimages/constraints.txt"])
    assert code == 0, err
    pins = [line for line in out.splitlines() if not line.startswith("#")]
    assert pins == ["numpy==2.4.1", "torch==2.13.0+cpu"], out


def test_pip_installs_an_ordinary_package(client, image, wheels):
    spec = pip(wheels, "gpuimages-probe-ok")
    code, out, err = run(client, image, spec["command"], volumes=spec["volumes"])
    assert code == 0, out + err
    assert "Successfully installed gpuimages-probe-ok-1.0" in out


def test_pip_refuses_a_package_that_needs_another_torch(client, image, wheels):
    spec = pip(wheels, "gpuimages-probe-needs-torch")
    cmd = (
        " ".join(spec["command"])
        + "; echo rc=$?; python -c 'import torch; print(torch.__version__)'"
    )
    _code, out, err = run(client, image, ["bash", "-c", cmd], volumes=spec["volumes"])
    assert "rc=1" in out, out + err
    # pip prints the headline on stderr and "The conflict is caused by" on stdout.
    assert "conflicting dependencies" in err, err
    assert "The user requested (constraint) torch==2.13.0+cpu" in out, out
    assert out.strip().endswith("2.13.0+cpu")  # torch unchanged


def test_escape_hatch_drops_the_constraint(client, image, wheels):
    spec = pip(wheels, "gpuimages-probe-needs-torch")
    code, _out, err = run(
        client, image, spec["command"], volumes=spec["volumes"], environment={"PIP_CONSTRAINT": ""}
    )
    # Offline there is no torch 2.12.0 to move to: pip now fails on that, not on the pin.
    assert code == 1 and "(constraint)" not in err
    assert "torch==2.12.0" in err


# --- 2. the start-up check -------------------------------------------------------------


def test_docker_default_shm_prints_the_warning(client, image):
    code, out, err = run(client, image, ["true"], shm=None)
    assert code == 0 and out == ""
    assert err.startswith("gpuimages: /dev/shm is 64 MiB, below 1.0 GiB"), err
    assert "--ipc=host" in err and "--shm-size" in err and "GPUIMAGES_QUIET=1" in err


def test_silent_when_well_and_quiet_mutes(client, image):
    assert run(client, image, ["true"]) == (0, "", "")
    assert run(client, image, ["true"], shm=None, environment={"GPUIMAGES_QUIET": "1"}) == (
        0,
        "",
        "",
    )


def test_command_keeps_its_exit_code_output_and_pid_1(client, image):
    code, out, err = run(client, image, ["sh", "-c", "echo $$; exit 7"])
    assert (code, out, err) == (7, "1\n", "")


def test_command_gets_the_stop_signal(client, image):
    container = client.containers.run(
        image,
        ["bash", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; sleep 300 & wait"],
        detach=True,
        shm_size="2g",
    )
    try:
        for _ in range(100):
            if b"ready" in container.logs():
                break
            time.sleep(0.1)
        container.stop(timeout=20)
        assert container.wait(timeout=30)["StatusCode"] == 42
        assert b"got-term" in container.logs()
    finally:
        container.remove(force=True)


def test_default_command_is_bash(client, image):
    code, _out, err = run(client, image, None, stdin_open=False)
    assert code == 0 and err == ""  # bash with no terminal reads EOF and exits


STAND_IN_SMI = """#!/bin/sh
# A stand-in nvidia-smi: answers the query the start-up check makes.
case "$*" in
  *compute_cap*) printf '%s\\n' "$FAKE_SMI_ROWS" ;;
  *) printf '%s\\n' "$FAKE_SMI_ROWS" | cut -d, -f1,2 ;;
esac
"""


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("smi")
    smi = d / "nvidia-smi"
    smi.write_text(STAND_IN_SMI)
    smi.chmod(0o755)
    facts = ROOT / "dockerfiles" / CUDA13 / "startup.json"
    return {
        str(smi): {"bind": "/usr/local/bin/nvidia-smi", "mode": "ro"},
        str(facts): {"bind": "/opt/gpuimages/startup.json", "mode": "ro"},
    }


def test_stand_in_smi_driver_too_old(client, image, stand_in):
    rows = "535.104.05, NVIDIA H100 80GB HBM3, 9.0"
    code, _out, err = run(
        client, image, ["true"], volumes=stand_in, environment={"FAKE_SMI_ROWS": rows}
    )
    assert code == 0, err
    assert "gpuimages: driver 535.104.05: unsupported." in err
    assert "install nvidia-driver-580 or newer" in err
    assert "Tags that fit this driver: 2.3.1-cuda12.1-cudnn8-runtime" in err


def test_stand_in_smi_arch_without_kernels(client, image, stand_in):
    rows = "580.65.06, Tesla M60, 5.2\n580.65.06, NVIDIA H100 80GB HBM3, 9.0"
    _code, _out, err = run(
        client, image, ["true"], volumes=stand_in, environment={"FAKE_SMI_ROWS": rows}
    )
    lines = [line for line in err.splitlines() if "GPU " in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("gpuimages: GPU 0 Tesla M60: no kernels for sm_52")
    assert "Matrix variants with its kernels: 2.5.1-cuda12.4-cudnn9-runtime" in lines[0]
    assert "driver" not in err  # 580.65.06 is supported


def test_stand_in_smi_all_well_is_silent(client, image, stand_in):
    rows = "580.65.06, NVIDIA H100 80GB HBM3, 9.0"
    assert run(client, image, ["true"], volumes=stand_in, environment={"FAKE_SMI_ROWS": rows}) == (
        0,
        "",
        "",
    )


# --- 3. non-root ---------------------------------------------------------------------


def test_default_user_is_not_root(client, image):
    code, out, err = run(client, image, ["sh", "-c", "id -u; id -g; echo $HOME; pwd"])
    assert (code, out.split()) == (0, ["1000", "0", "/home/trainer", "/workspace"]), err


def test_arbitrary_uid_in_group_0_works(client, image, wheels):
    script = (
        "set -e; python -c 'import torch; print(torch.__version__)'; "
        "echo w > /workspace/written; echo h > $HOME/written; "
        "python -m pip install --no-index --find-links /wheels gpuimages-probe-ok >/dev/null; "
        "python -c 'import gpuimages_probe_ok; print(\"probe\", gpuimages_probe_ok.VERSION)'; "
        "python /opt/gpuimages/smoke/check_ddp.py --expect-cuda cpu --steps 5"
    )
    code, out, err = run(
        client,
        image,
        ["bash", "-c", script],
        user="12345:0",
        volumes={str(wheels): {"bind": "/wheels", "mode": "ro"}},
    )
    assert code == 0, out[-3000:] + err[-3000:]
    assert out.startswith("2.13.0+cpu\n") and "probe 1.0" in out
    result = [line for line in out.splitlines() if line.startswith("GPUIMAGES_RESULT ")][-1]
    ddp = json.loads(result.removeprefix("GPUIMAGES_RESULT "))
    assert ddp["status"] == "passed", ddp
