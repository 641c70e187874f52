"""The doctor's rules without a GPU: driver what-ifs against compat.yaml, GPU architectures
against the wheels, and each host check on a made-up probe."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gpuimages.build.diskspace import GB, EngineDisk
from gpuimages.core.errors import UserInputError
from gpuimages.facts import support
from gpuimages.facts.matrix import load_matrix
from gpuimages.facts.support import (
    MINOR_COMPAT,
    NO_DRIVER,
    NO_GPU_NEEDED,
    REFUSED,
    SUPPORTED,
    UNSUPPORTED,
    arch_verdict,
    verdict_for,
)
from gpuimages.facts.variant import VariantRequest, resolve
from gpuimages.host import doctor
from gpuimages.host.doctor import DoctorOptions, HostProbe, diagnose
from gpuimages.vet.container import NO_GPU_RUNTIME, explain_start_error
from tests.helpers import invoke


@pytest.fixture
def variant(compat):
    def make(torch: str, cuda: str, **kw):
        return resolve(VariantRequest(torch=torch, cuda=cuda, **kw), compat)

    return make


# --- driver what-ifs (compat.yaml: min_driver, minor_compat_driver, driver_cuda) --------


@pytest.mark.parametrize(
    ("driver", "torch", "cuda", "driver_status", "headline"),
    [
        # 450.80.02: the CUDA 11.x minor-version floor; it supports CUDA 11.0 itself.
        ("450.80.02", "1.12.0", "11.3", MINOR_COMPAT, REFUSED),
        ("465.19.01", "1.12.0", "11.3", SUPPORTED, SUPPORTED),
        ("440.33", "1.12.0", "11.3", UNSUPPORTED, UNSUPPORTED),
        ("440.33", "1.12.0", "11.6", UNSUPPORTED, UNSUPPORTED),
        ("440.33", "2.1.2", "11.8", UNSUPPORTED, UNSUPPORTED),
        ("440.33", "1.12.0", "10.2", SUPPORTED, SUPPORTED),
        # CUDA 10.2 has no minor-version compatibility: below 440.33 it does not run.
        ("418.39", "1.12.0", "10.2", UNSUPPORTED, UNSUPPORTED),
        # 515.43.04 (CUDA 11.7 GA) is below 11.7 Update 1's 515.65.01, but supports 11.7:
        # minor-version compatibility, and the start check lets it through.
        ("515.43.04", "1.13.1", "11.7", MINOR_COMPAT, MINOR_COMPAT),
        # CUDA 12.x: floor 525.60.13; 520.61.05 (CUDA 11.8) is below it.
        ("525.60.13", "2.3.1", "12.1", MINOR_COMPAT, REFUSED),
        ("520.61.05", "2.3.1", "12.1", UNSUPPORTED, UNSUPPORTED),
        ("550.54.15", "2.5.1", "12.4", SUPPORTED, SUPPORTED),
        # A newer driver runs older toolkits (backward compatibility).
        ("580.65.06", "1.12.0", "10.2", SUPPORTED, SUPPORTED),
    ],
)
def test_driver_verdicts(compat, variant, driver, torch, cuda, driver_status, headline):
    v = verdict_for(variant(torch, cuda), driver, (), compat)
    assert (v.driver, v.verdict) == (driver_status, headline), v.detail


def test_minor_compat_says_which_limits_and_how_to_start_anyway(compat, variant):
    v = verdict_for(variant("1.12.0", "11.3"), "450.80.02", (), compat)
    assert "supports CUDA 11.0" in v.detail
    assert "PTX JIT is not supported" in v.detail
    assert "cudaErrorCallRequiresNewerDriver" in v.detail
    assert "NVIDIA_REQUIRE_CUDA=cuda>=11.3" in v.detail
    assert "unsatisfied condition: cuda>=11.3" in v.detail
    assert "NVIDIA_DISABLE_REQUIRE=1" in v.detail
    assert "nvidia-driver-465" in v.detail
    assert v.start == "refused (cuda>=11.3)"
    # With a GPU the wheel has kernels for, PTX JIT is not needed: the detail says so.
    native = verdict_for(variant("1.12.0", "11.3"), "450.80.02", ("sm_86",), compat)
    assert "this GPU needs none" in native.detail


def test_unsupported_driver_names_the_floor_and_the_package(compat, variant):
    v = verdict_for(variant("1.12.0", "11.3"), "440.33", (), compat)
    assert "450.80.02" in v.detail and "minor-version-compatibility floor" in v.detail
    assert "nvidia-driver-465" in v.detail
    old = verdict_for(variant("1.12.0", "10.2"), "418.39", (), compat)
    assert "no minor-version compatibility" in old.detail


def test_cpu_variant_needs_no_gpu(compat, variant):
    for driver in (None, "440.33", "580.65.06"):
        v = verdict_for(variant("2.13.0", "cpu"), driver, ("sm_90",), compat)
        assert v.verdict == NO_GPU_NEEDED


def test_no_driver_says_what_the_variant_needs(compat, variant):
    v = verdict_for(variant("1.12.0", "11.3"), None, (), compat)
    assert v.verdict == NO_DRIVER
    assert "465.19.01" in v.detail and "450.80.02" in v.detail


# --- GPU architecture against the wheel's kernels ---------------------------------------


def test_sm90_gpu_with_cu102_wheel_is_unsupported(compat, variant):
    v = verdict_for(variant("1.12.0", "10.2"), "535.104.05", ("sm_90",), compat)
    assert v.verdict == UNSUPPORTED and v.driver == SUPPORTED and v.arch == "unsupported"
    assert "no kernel image is available" in v.detail
    assert "11.8" in v.detail  # a CUDA build that has sm_90 kernels


@pytest.mark.parametrize(
    ("gpu", "status"),
    [
        ("sm_86", "native"),
        ("sm_89", "binary-compatible"),  # Ada runs Ampere (8.6) cubins: same major
        ("sm_80", "native"),
        ("sm_90", "unsupported"),  # Hopper: other major, no sm_9x kernels
        ("sm_35", "unsupported"),  # older than the oldest kernels
    ],
)
def test_arch_verdicts_for_cu113(compat, variant, gpu, status):
    assert arch_verdict(variant("1.12.0", "11.3").archs, (gpu,), compat).status == status


def test_lower_minor_of_same_major_is_not_compatible(compat):
    assert arch_verdict(("sm_86",), ("sm_80",), compat).status == "unsupported"


def test_sm89_binary_compatible_keeps_supported_headline(compat, variant):
    v = verdict_for(variant("1.12.0", "11.3"), "535.104.05", ("sm_89",), compat)
    assert v.verdict == SUPPORTED and v.arch == "binary-compatible"
    assert "sm_86" in v.detail


@pytest.mark.parametrize(
    ("text", "arch"),
    [
        ("8.6", "sm_86"),
        ("86", "sm_86"),
        ("sm_90", "sm_90"),
        ("12.0", "sm_120"),
        ("compute_75", "sm_75"),
    ],
)
def test_normalize_arch(text, arch):
    assert support.normalize_arch(text) == arch


@pytest.mark.parametrize("bad", ["ampere", "sm_", "8.x", ""])
def test_bad_arch_and_driver_are_user_errors(bad):
    with pytest.raises(UserInputError):
        support.normalize_arch(bad)
    with pytest.raises(UserInputError):
        support.normalize_driver(bad)


# --- the driver -> CUDA table added to compat.yaml --------------------------------------


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        ("450.80.02", "11.0"),
        ("465.19.01", "11.3"),
        ("440.33", "10.2"),
        ("470.82.01", "11.4"),
        ("525.60.13", "12.0"),
        ("535.104.05", "12.2"),
        ("570.124.06", "12.8"),
        ("400.0", None),
    ],
)
def test_cuda_for_driver(compat, driver, cuda):
    assert compat.cuda_for_driver(driver) == cuda


def test_every_cuda_minimum_meets_its_own_require_check(compat):
    """NVIDIA's minimum driver of a CUDA release supports at least that release."""
    from packaging.version import Version

    for version, rel in compat.cuda.items():
        assert version in compat.driver_cuda, f"driver_cuda lacks CUDA {version}"
        reached = compat.cuda_for_driver(rel.min_driver)
        assert Version(reached) >= Version(version), (version, rel.min_driver, reached)


def test_newest_branch_runs_the_whole_matrix(repo_root):
    variants = load_matrix(repo_root / "matrix.yaml").variants
    assert support.newest_branch(variants) == "580"  # CUDA 13.0: 580.65.06


# --- host checks on made-up probes ------------------------------------------------------

NO_GPU = HostProbe(
    pci_method="/sys/bus/pci/devices",
    pci_gpus=(),
    lspci_missing=True,
    smi_found=False,
    smi_error=None,
    gpus=(),
    docker_version="20.10.24+dfsg1",
    docker_api="1.41",
    docker_error=None,
    runtimes=("io.containerd.runc.v2", "runc"),
    toolkit_binaries=(),
    shm_bytes=8 << 30,
    build_client="/usr/bin/docker (client 20.10: BuildKit built in, no buildx needed)",
    engine_disk=EngineDisk("/var/lib/docker", 80 * GB, None),
)
GPU_HOST = replace(
    NO_GPU,
    pci_method="lspci",
    pci_gpus=("01:00.0 3D controller [0302]: NVIDIA Corporation GA100 [A100] [10de:20b2]",),
    lspci_missing=False,
    smi_found=True,
    gpus=(doctor.Gpu(0, "NVIDIA A100-SXM4-80GB", "535.104.05", "sm_80"),),
    runtimes=("nvidia", "runc"),
    toolkit_binaries=("nvidia-container-runtime-hook", "nvidia-ctk"),
)


def _checks(probe: HostProbe, **opts) -> dict[str, doctor.Check]:
    options = DoctorOptions(**opts)
    return {c.name: c for c in (check(probe, options) for check in doctor.CHECKS)}


def test_no_gpu_host_says_so_and_passes():
    checks = _checks(NO_GPU)
    assert checks["GPU"].status == "warn"
    assert "No NVIDIA GPU on this host" in checks["GPU"].detail
    assert "lspci is not installed" in checks["GPU"].detail
    assert checks["NVIDIA driver"].status == "skip"
    assert checks["NVIDIA container runtime"].status == "skip"
    assert all(c.status != "fail" for c in checks.values())


def test_require_gpu_fails_with_the_fixes():
    checks = _checks(NO_GPU, require_gpu=True)
    assert checks["GPU"].status == "fail"
    runtime = checks["NVIDIA container runtime"]
    assert runtime.status == "fail"
    assert "No NVIDIA container runtime on this host" in runtime.detail
    for step in (
        "apt-get install -y nvidia-container-toolkit",
        "nvidia-ctk runtime configure --runtime=docker",
        "systemctl restart docker",
        "docker run --rm --gpus all",
    ):
        assert step in runtime.fix


def test_gpu_host_is_all_ok():
    checks = _checks(GPU_HOST)
    assert {c.status for c in checks.values()} == {"ok"}
    assert "535.104.05" in checks["NVIDIA driver"].detail


def test_gpu_without_driver_prints_the_ubuntu_driver_fix():
    probe = replace(GPU_HOST, smi_found=False, gpus=())
    driver = _checks(probe, driver_branch="550")["NVIDIA driver"]
    assert driver.status == "fail"
    assert "ubuntu-drivers devices" in driver.fix
    assert "apt-get install -y nvidia-driver-550" in driver.fix


def test_gpu_with_broken_driver():
    probe = replace(
        GPU_HOST,
        gpus=(),
        smi_error="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    )
    driver = _checks(probe)["NVIDIA driver"]
    assert driver.status == "fail" and "couldn't communicate" in driver.detail


@pytest.mark.parametrize(
    ("version", "status"),
    [("18.09.7", "fail"), ("19.03.13-ce", "ok"), ("20.10.24+dfsg1", "ok"), ("28.2.2", "ok")],
)
def test_docker_version_gate(version, status):
    assert _checks(replace(NO_GPU, docker_version=version))["Docker engine"].status == status


def test_no_engine_is_a_failure_with_the_fix():
    probe = replace(NO_GPU, docker_version=None, docker_error="connection refused")
    check = _checks(probe)["Docker engine"]
    assert check.status == "fail" and "systemctl enable --now docker" in check.fix


def test_small_shm_warns_with_ipc_host_fix():
    check = _checks(replace(NO_GPU, shm_bytes=64 << 20))["Shared memory"]
    assert check.status == "warn"
    assert "--ipc=host" in check.fix and "--shm-size" in check.fix


def test_a_short_engine_disk_warns_with_the_prune_fix():
    probe = replace(NO_GPU, engine_disk=EngineDisk("/var/lib/docker", 4 * GB, 72 * GB))
    check = _checks(probe)["Disk for builds"]
    assert check.status == "warn"
    assert "/var/lib/docker has 4.0 GB free, 72.0 GB of it BuildKit's cache" in check.detail
    assert "docker builder prune --keep-storage 15GB" in check.fix
    assert "docker system df" in check.fix


@pytest.mark.parametrize(
    ("disk", "status", "words"),
    [
        (EngineDisk("/var/lib/docker", 80 * GB, None), "ok", "enough for a CUDA build"),
        (EngineDisk("/remote/docker", None, None), "skip", "not on this host"),
        (None, "skip", "No engine answered"),
    ],
)
def test_disk_row_without_a_shortfall(disk, status, words):
    check = _checks(replace(NO_GPU, engine_disk=disk))["Disk for builds"]
    assert check.status == status and words in check.detail


def test_diagnose_exit_codes_follow_what_was_asked(compat, repo_root):
    variants = load_matrix(repo_root / "matrix.yaml").variants
    assert diagnose(variants, compat, probe=NO_GPU).exit_code == 0
    assert diagnose(variants, compat, probe=NO_GPU, require_gpu=True).exit_code == 1
    report = diagnose(variants, compat, probe=GPU_HOST)
    assert report.exit_code == 0 and report.driver == "535.104.05"
    by_name = {v.variant: v for v in report.verdicts}
    # 535 (CUDA 12.2) is above the 12.x floor but below 12.4's 550.54.15: minor-version
    # compatibility, which the image's NVIDIA_REQUIRE_CUDA=cuda>=12.4 refuses at start.
    cu124 = by_name["2.5.1-cuda12.4-cudnn9-runtime"]
    assert (cu124.driver, cu124.verdict, cu124.arch) == (MINOR_COMPAT, REFUSED, "native")
    assert by_name["2.1.2-cuda11.8-cudnn8-runtime"].verdict == SUPPORTED


def test_hypothetical_host_skips_host_checks(compat, repo_root):
    variants = load_matrix(repo_root / "matrix.yaml").variants
    report = diagnose(variants, compat, driver="450.80.02")
    assert report.hypothetical and report.checks == () and report.exit_code == 0
    with pytest.raises(UserInputError):
        diagnose(variants, compat, driver="450.80.02", image="x")


# --- reading the host's tables ----------------------------------------------------------


def test_parse_smi():
    text = "535.104.05, NVIDIA A100-SXM4-80GB, 8.0\n535.104.05, NVIDIA H100 80GB HBM3, 9.0\n"
    gpus = doctor.parse_smi(text)
    assert [(g.index, g.driver, g.arch) for g in gpus] == [
        (0, "535.104.05", "sm_80"),
        (1, "535.104.05", "sm_90"),
    ]
    old = doctor.parse_smi("470.82.01, Tesla V100-SXM2-16GB\n")  # no compute_cap field
    assert old[0].arch is None and old[0].name == "Tesla V100-SXM2-16GB"


def _pci(root, slot, vendor, klass, device="0x20b2"):
    d = root / slot
    d.mkdir()
    (d / "vendor").write_text(vendor + "\n")
    (d / "class").write_text(klass + "\n")
    (d / "device").write_text(device + "\n")


def test_sysfs_scan_finds_nvidia_display_controllers_only(tmp_path):
    _pci(tmp_path, "0000:00:02.0", "0x8086", "0x030000")
    _pci(tmp_path, "0000:01:00.0", "0x10de", "0x030200")
    _pci(tmp_path, "0000:01:00.1", "0x10de", "0x040300", "0x1aef")  # the card's HDMI audio
    found = doctor._pci_sysfs(tmp_path)
    assert len(found) == 1 and found[0].startswith("0000:01:00.0")


def test_procfs_scan(tmp_path):
    table = tmp_path / "devices"
    table.write_text("0008\t80861237\t0\n0100\t10de20b2\t10\n")
    found = doctor._pci_procfs(table)
    assert found == ("bus/devfn 0100 (vendor 0x10de, device 0x20b2)",)


def test_engine_errors_become_plain_messages():
    message, fix = explain_start_error(f"{NO_GPU_RUNTIME} with capabilities: [[gpu]]", "img:1")
    assert message.startswith("No NVIDIA container runtime on this host")
    assert "docker run --rm --gpus all img:1 nvidia-smi" in fix
    refused = explain_start_error(
        "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=11.8, please "
        "update your driver to a newer version, or use an earlier cuda container: unknown"
    )
    assert refused and "cuda>=11.8" in refused[0] and "NVIDIA_DISABLE_REQUIRE=1" in refused[1]
    assert explain_start_error("some other error") is None


# --- the task, for a hypothetical host (no Docker, no GPU needed) -----------------------


def test_doctor_driver_json():
    r = invoke("doctor", "--driver", "450.80.02", "--gpu-arch", "8.6", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["hypothetical"] and data["driver"] == "450.80.02" and data["checks"] == []
    rows = {v["variant"]: v for v in data["variants"]}
    assert rows["1.12.0-cuda11.3-cudnn8-runtime"]["driver"] == MINOR_COMPAT
    assert rows["1.12.0-cuda11.3-cudnn8-runtime"]["verdict"] == REFUSED
    assert rows["1.12.0-cuda10.2-cudnn7-runtime"]["verdict"] == UNSUPPORTED  # no sm_86 kernels
    assert rows["2.3.1-cuda12.1-cudnn8-runtime"]["verdict"] == UNSUPPORTED  # below 525.60.13
    assert rows["2.13.0-cpu-runtime"]["verdict"] == NO_GPU_NEEDED


def test_doctor_table_for_one_variant():
    r = invoke("doctor", "--driver", "465.19.01", "--torch", "1.12.0", "--cuda", "11.3")
    assert r.returncode == 0, r.stderr
    assert "Hypothetical host: driver 465.19.01" in r.stdout and "supported" in r.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--driver", "four-fifty"], "is not an NVIDIA driver version"),
        (["--driver", "450.80.02", "--gpu-arch", "ampere"], "is not a compute capability"),
        (["--driver", "450.80.02", "--image", "x"], "hypothetical host"),
    ],
)
def test_doctor_bad_input_is_exit_2(args, words):
    r = invoke("doctor", *args)
    assert r.returncode == 2 and words in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def _fake_smi(tmp_path, monkeypatch, body: str) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + body)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")


def test_query_smi_with_a_fake_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, 'echo "550.54.15, NVIDIA H100 80GB HBM3, 9.0"\n')
    found, error, gpus = doctor.query_smi()
    assert found and error is None
    assert gpus == (doctor.Gpu(0, "NVIDIA H100 80GB HBM3", "550.54.15", "sm_90"),)


def test_query_smi_retries_without_compute_cap(tmp_path, monkeypatch):
    body = (
        'case "$1" in *compute_cap*) echo \'Field "compute_cap" is not a valid field to '
        'query.\'; exit 2;; esac\necho "470.82.01, Tesla V100-SXM2-16GB"\n'
    )
    _fake_smi(tmp_path, monkeypatch, body)
    found, error, gpus = doctor.query_smi()
    assert found and error is None
    assert gpus[0].driver == "470.82.01" and gpus[0].arch is None


def test_query_smi_reports_the_drivers_own_words(tmp_path, monkeypatch):
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    _fake_smi(tmp_path, monkeypatch, f'echo "{message}"\nexit 9\n')
    found, error, gpus = doctor.query_smi()
    assert found and gpus == () and error == message


def test_the_build_client_is_named_with_its_reason_or_its_absence_warned():
    chosen = replace(NO_GPU, build_client="/usr/bin/docker (client 20.10: BuildKit built in)")
    check = doctor.check_build_client(chosen, DoctorOptions())
    assert check.status == doctor.OK and "/usr/bin/docker (client 20.10" in check.detail
    missing = replace(
        NO_GPU,
        build_client=None,
        build_client_error="No docker client that can build with BuildKit was found "
        "(tried: /usr/local/bin/docker (28.2, no buildx)). Pass --start-engine ...",
    )
    check = doctor.check_build_client(missing, DoctorOptions())
    assert check.status == doctor.WARN and "28.2, no buildx" in check.detail
    assert "building them does not" in check.detail
