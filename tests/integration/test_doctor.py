"""The doctor and `invoke run` for real: this host's PCI tables, nvidia-smi (or its absence),
the real Docker engine, and containers of the local Debian base image.

The no-GPU expectations are checked on hosts without an NVIDIA GPU (the CI and development
machines here); on a GPU host those tests skip and the `gpu`-marked one runs instead.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from gpuimages.facts import support
from gpuimages.host import doctor

from .conftest import TEST_REPOSITORY, invoke

TOOLKIT_STEPS = (
    "sudo apt-get install -y nvidia-container-toolkit",
    "sudo nvidia-ctk runtime configure --runtime=docker",
    "sudo systemctl restart docker",
)


@pytest.fixture(scope="module")
def probe(docker_cli) -> doctor.HostProbe:
    return doctor.gather()


@pytest.fixture(scope="module")
def no_gpu(probe) -> doctor.HostProbe:
    if probe.has_gpu:
        pytest.skip("this host has an NVIDIA GPU: the no-GPU expectations do not apply")
    return probe


def leftover_containers(client, image: str, command: str) -> list:
    found = client.containers.list(all=True, filters={"ancestor": image})
    return [c for c in found if (c.attrs.get("Config", {}).get("Cmd") or [None])[0] == command]


def test_probe_reads_this_host(probe):
    assert probe.pci_method in ("lspci", "/sys/bus/pci/devices", "/proc/bus/pci/devices")
    assert probe.docker_version and doctor.docker_version_tuple(probe.docker_version) >= (19, 3)
    assert probe.shm_bytes and probe.shm_bytes > 0


def test_doctor_without_gpu_says_so_and_exits_0(no_gpu):
    r = invoke("doctor")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "No NVIDIA GPU on this host" in r.stdout
    assert "CPU variants can" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_doctor_json_on_this_host(no_gpu):
    r = invoke("doctor", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["GPU"]["status"] == "warn"
    assert checks["NVIDIA driver"]["status"] == "skip"
    assert checks["Docker engine"]["status"] == "ok"
    assert checks["NVIDIA container runtime"]["status"] in ("skip", "ok")
    assert data["host"]["has_gpu"] is False and data["driver"] is None
    verdicts = {v["variant"]: v["verdict"] for v in data["variants"]}
    assert verdicts["2.13.0-cpu-runtime"] == support.NO_GPU_NEEDED
    assert verdicts["1.12.0-cuda11.3-cudnn8-runtime"] == support.NO_DRIVER


def test_require_gpu_exits_1(no_gpu):
    r = invoke("doctor", "--require-gpu")
    assert r.returncode == 1
    assert "--require-gpu asks for a GPU" in r.stdout
    assert "doctor: " in r.stderr and "GPU" in r.stderr


def test_image_run_explains_the_missing_runtime(no_gpu, client, local_base):
    if "nvidia" in no_gpu.runtimes or no_gpu.toolkit_binaries:
        pytest.skip("this host has an NVIDIA container runtime")
    r = invoke("doctor", "--image", local_base, "--variant", "2.13.0-cpu-runtime")
    assert r.returncode == 1, r.stdout[-3000:]
    out = " ".join(r.stdout.split())  # the table wraps long cells
    assert f"docker run --rm --gpus all --ipc=host {local_base} nvidia-smi" in out
    assert "No NVIDIA container runtime on this host" in out
    assert "could not select device driver" in out
    for step in TOOLKIT_STEPS:
        assert step in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert leftover_containers(client, local_base, "nvidia-smi") == []


def test_image_run_json(no_gpu, local_base):
    if "nvidia" in no_gpu.runtimes or no_gpu.toolkit_binaries:
        pytest.skip("this host has an NVIDIA container runtime")
    r = invoke("doctor", "--image", local_base, "--json", "--variant", "2.13.0-cpu-runtime")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    check = {c["name"]: c for c in data["checks"]}["GPU container"]
    assert check["status"] == "fail"
    assert 'could not select device driver ""' in check["detail"]
    assert all(step in check["fix"] for step in TOOLKIT_STEPS)
    assert data["exit_code"] == 1


def test_image_that_is_not_there(no_gpu):
    r = invoke("doctor", "--image", f"gpuimages-test/absent:{uuid.uuid4().hex[:8]}", "--json")
    assert r.returncode == 1
    check = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["GPU container"]
    assert "is not on this host" in check["detail"]


@pytest.mark.gpu
def test_doctor_on_a_gpu_host(probe):
    if not probe.has_gpu:
        pytest.skip("no NVIDIA GPU on this host")
    r = invoke("doctor", "--require-gpu", "--json")
    data = json.loads(r.stdout)
    assert data["driver"], data["checks"]
    assert r.returncode == 0, data["checks"]


# --- invoke run -------------------------------------------------------------------------


def test_run_dry_run_prints_only_the_docker_line(docker_cli, tmp_path):
    r = invoke(
        "run", "--variant", "2.13.0-cpu-runtime", "--mount", str(tmp_path), "--dry-run",
        "--", "python", "-c", "print(1, 2)",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        f"docker run --rm --ipc=host -v {tmp_path}:/workspace -w /workspace --user 0:0 "
        f"{TEST_REPOSITORY}:2.13.0-cpu-runtime python -c 'print(1, 2)'\n"
    )


def test_run_dry_run_gpu_flags(docker_cli):
    r = invoke(
        "run", "--torch", "1.12.0", "--cuda", "11.3", "--gpus", "0,1", "--shm-size", "16g",
        "--dry-run", "--cmd", "python train.py",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        "docker run --rm --gpus '\"device=0,1\"' --shm-size=16g "
        f"{TEST_REPOSITORY}:1.12.0-cuda11.3-cudnn8-runtime python train.py"
    )


def test_run_for_real_in_the_local_base(client, local_base, tmp_path):
    script = "echo hello from $(pwd); echo written > /workspace/out.txt; exit 3"
    r = invoke(
        "run", "--image", local_base, "--gpus", "none", "--mount", str(tmp_path),
        "--", "sh", "-c", script,
    )  # fmt: skip
    assert r.returncode == 3, r.stdout + r.stderr  # the command's own exit code
    assert "hello from /workspace" in r.stdout
    assert (tmp_path / "out.txt").read_text() == "written\n"
    assert f"$ docker run --rm --ipc=host -v {tmp_path}:/workspace" in r.stderr
    assert leftover_containers(client, local_base, "sh") == []


def test_run_mount_is_written_as_its_owner_in_a_real_image(cpu_build, tmp_path):
    """The images run as uid 1000; a mounted folder of another owner (mode 700 here) is
    still written to, as that owner, and torch imports."""
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    os.chown(work, 4321, 4321)
    script = "id -u; echo written > /workspace/out.txt; python -c 'import torch'"
    r = invoke(
        "run", "--variant", "2.13.0-cpu-runtime", "--gpus", "none", "--mount", str(work),
        "--", "sh", "-c", script,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split()[0] == "4321"
    out = work / "out.txt"
    assert out.read_text() == "written\n" and out.stat().st_uid == 4321


def test_run_with_gpus_on_this_host_explains(no_gpu, local_base):
    if "nvidia" in no_gpu.runtimes or no_gpu.toolkit_binaries:
        pytest.skip("this host has an NVIDIA container runtime")
    r = invoke("run", "--image", local_base, "--", "true")
    assert r.returncode == 1
    assert "No NVIDIA container runtime on this host" in r.stderr
    assert "nvidia-ctk runtime configure --runtime=docker" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_refuses_an_image_that_is_not_built(client):
    name = "1.12.0-cuda10.2-cudnn7-runtime"
    if client.images.list(name=f"{TEST_REPOSITORY}:{name}"):
        pytest.skip(f"{name} is built on this host")
    r = invoke("run", "--variant", name, "--", "true")
    assert r.returncode == 2
    assert f"invoke build --variant {name}" in r.stderr
