"""Host doctor: can this machine run the images, and which variants can its driver run?

Two halves, both plain data:

- Host checks. `gather()` looks at the host once (PCI devices, `nvidia-smi`, the Docker
  engine, the NVIDIA container runtime, /dev/shm) into a `HostProbe`; each check in
  `CHECKS` is a pure function of that probe returning a `Check` (ok | warn | fail | skip,
  with the Ubuntu fix for what failed). With an image, `image_check()` runs
  `docker run --rm --gpus all IMAGE nvidia-smi` for real.
- Verdicts per variant. The driver against the CUDA toolkit's minimum and its
  minor-version-compatibility floor (both in compat.yaml), the image's
  NVIDIA_REQUIRE_CUDA start check against the newest CUDA the driver supports, and the
  GPU's compute capability against the wheel's architectures. `--driver` asks the same
  for a hypothetical host.

A host without a GPU is not an error: the checks say so plainly, and only what the user
asked to have (`require_gpu`, an image to run) makes the doctor fail.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, Literal

import docker

from gpuimages.build.diskspace import (
    NEED_CUDA,
    PRUNE_HINT,
    EngineDisk,
    disk_for,
    gb,
)
from gpuimages.build.engine import (
    NoBuildKitClientError,
    NoEngineError,
    engine_client,
    engine_errors,
    find_docker_cli,
)
from gpuimages.core.errors import CommandError, GpuImagesError, UserInputError
from gpuimages.core.runner import capture, run
from gpuimages.facts.compat import Compat
from gpuimages.facts.support import (
    MIN_SHM_BYTES,
    Verdict,
    newest_branch,
    normalize_arch,
    normalize_driver,
    verdict_for,
)
from gpuimages.facts.variant import Variant
from gpuimages.vet.container import (
    TOOLKIT_FIX,
    ContainerStartError,
    ImageMissingError,
    RunSpec,
    tracked,
)

log = logging.getLogger(__name__)

CheckStatus = Literal["ok", "warn", "fail", "skip"]
OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "fail"
SKIP: Final = "skip"


NVIDIA_PCI_VENDOR = "0x10de"
PCI_SYS = Path("/sys/bus/pci/devices")
PCI_PROC = Path("/proc/bus/pci/devices")
SHM = Path("/dev/shm")
MIN_DOCKER = (19, 3)  # `docker run --gpus` (DeviceRequests) arrived in Docker 19.03
DOCKER_DEFAULT_SHM = "64 MiB"
SMI_QUERY = ("driver_version", "name", "compute_cap")
IMAGE_CHECK_TIMEOUT_S = 120
# On PATH when the NVIDIA Container Toolkit is installed; dockerd needs the hook for --gpus.
TOOLKIT_BINARIES = (
    "nvidia-container-runtime-hook",
    "nvidia-ctk",
    "nvidia-container-toolkit",
    "nvidia-container-runtime",
    "nvidia-container-cli",
)

DOCKER_FIX = """\
Install and start a Docker engine >= 19.03 (Ubuntu):
  sudo apt-get update && sudo apt-get install -y docker.io
  sudo systemctl enable --now docker
  docker version   # Server: Version must be 19.03 or newer for --gpus"""

SHM_FIX = f"""\
Containers get a {DOCKER_DEFAULT_SHM} /dev/shm unless told otherwise; PyTorch DataLoader
workers and NCCL need more. Run containers with --ipc=host (what `invoke run` does by
default) or --shm-size=16g; on Kubernetes mount an emptyDir with medium: Memory at
/dev/shm (`invoke launch --k8s` does). To enlarge the host's own /dev/shm:
  sudo mount -o remount,size=16G /dev/shm"""

GPU_FIX = """\
Run on a machine with an NVIDIA GPU: on a cloud, pick a GPU instance type; in a VM, pass
the GPU through (PCI passthrough / vGPU). `lspci | grep -i nvidia` must list it."""


def driver_fix(branch: str) -> str:
    return f"""\
Install the NVIDIA driver (Ubuntu):
  sudo ubuntu-drivers devices                    # the nvidia-driver-XXX packages for this GPU
  sudo apt-get install -y nvidia-driver-{branch}   # {branch} or newer runs every variant here
  sudo reboot
  nvidia-smi                                     # lists the GPUs and 'Driver Version'
(With Secure Boot on, enroll the module signing key the installer asks for.)"""


@dataclass(frozen=True)
class Check:
    name: str
    status: CheckStatus
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    driver: str
    arch: str | None  # "sm_86", or None when the driver does not report compute_cap


@dataclass(frozen=True)
class HostProbe:
    """Everything the doctor looked at, gathered once; the checks only read it."""

    pci_method: str  # "lspci", "/sys/bus/pci/devices", "/proc/bus/pci/devices" or "none"
    pci_gpus: tuple[str, ...]
    lspci_missing: bool
    smi_found: bool
    smi_error: str | None
    gpus: tuple[Gpu, ...]
    docker_version: str | None
    docker_api: str | None
    docker_error: str | None
    runtimes: tuple[str, ...]
    toolkit_binaries: tuple[str, ...]
    shm_bytes: int | None
    # The client `invoke build` would use and why (DockerCli.describe), or why there is none.
    build_client: str | None = None
    build_client_error: str | None = None
    # The engine's data root and what is free there (None: no engine answered).
    engine_disk: EngineDisk | None = None

    @property
    def has_gpu(self) -> bool:
        return bool(self.pci_gpus or self.gpus)

    @property
    def driver(self) -> str | None:
        return self.gpus[0].driver if self.gpus else None

    @property
    def archs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g.arch for g in self.gpus if g.arch))

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "has_gpu": self.has_gpu, "driver": self.driver}


@dataclass(frozen=True)
class DoctorOptions:
    require_gpu: bool = False
    image: str | None = None
    driver_branch: str = "550"  # nvidia-driver-XXX that runs every variant asked about


# --- gathering (the only part that touches the host) ---------------------------------


def _pci_lspci() -> tuple[str, ...]:
    out = capture(["lspci", "-nn"], timeout=30)
    # Display controllers (class 03xx) of vendor 10de; not the cards' audio/USB functions.
    return tuple(
        line.strip()
        for line in out.splitlines()
        if "[10de:" in line.lower() and re.search(r"\[03[0-9a-f]{2}\]", line.lower())
    )


def _pci_sysfs(root: Path = PCI_SYS) -> tuple[str, ...]:
    found = []
    for dev in sorted(root.iterdir()):
        try:
            vendor = (dev / "vendor").read_text().strip().lower()
            klass = (dev / "class").read_text().strip().lower()
            device = (dev / "device").read_text().strip().lower()
        except OSError:
            continue
        if vendor == NVIDIA_PCI_VENDOR and klass.startswith("0x03"):
            found.append(f"{dev.name} (vendor {vendor}, device {device}, class {klass})")
    return tuple(found)


def _pci_procfs(path: Path = PCI_PROC) -> tuple[str, ...]:
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].lower().startswith("10de"):
            found.append(f"bus/devfn {parts[0]} (vendor 0x10de, device 0x{parts[1][4:8]})")
    return tuple(found)


def scan_pci() -> tuple[str, tuple[str, ...], bool]:
    """(method, NVIDIA GPUs found, lspci missing): lspci, else the kernel's PCI tables."""
    lspci_missing = shutil.which("lspci") is None
    if not lspci_missing:
        try:
            return "lspci", _pci_lspci(), False
        except CommandError as exc:
            log.debug("lspci failed, reading the kernel's PCI tables: %s", exc)
    if PCI_SYS.is_dir():
        return str(PCI_SYS), _pci_sysfs(), lspci_missing
    if PCI_PROC.is_file():
        return str(PCI_PROC), _pci_procfs(), lspci_missing
    return "none", (), lspci_missing


def parse_smi(text: str) -> tuple[Gpu, ...]:
    """`nvidia-smi --query-gpu=driver_version,name,compute_cap --format=csv,noheader`."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not re.fullmatch(r"\d+(\.\d+)*", fields[0]):
            continue  # not a GPU row (a warning the driver printed)
        cap = fields[2] if len(fields) > 2 else ""
        arch = normalize_arch(cap) if re.fullmatch(r"\d+\.\d+", cap) else None
        gpus.append(Gpu(len(gpus), fields[1], fields[0], arch))
    return tuple(gpus)


def query_smi() -> tuple[bool, str | None, tuple[Gpu, ...]]:
    """(nvidia-smi found, its error, the GPUs it lists)."""
    if shutil.which("nvidia-smi") is None:
        return False, None, ()
    fields = list(SMI_QUERY)
    while True:
        argv = ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"]
        lines: list[str] = []
        result = run(argv, check=False, timeout=60, on_line=lines.append)
        output = "\n".join(lines).strip()
        if result.returncode == 0:
            return True, None, parse_smi(output)
        # Drivers older than R510 do not know compute_cap: ask again without it.
        if "compute_cap" in fields and "compute_cap" in output:
            fields.remove("compute_cap")
            continue
        return True, output or f"exit code {result.returncode}", ()


def query_docker() -> tuple[str | None, str | None, str | None, tuple[str, ...]]:
    """(engine version, API version, error, runtimes) through the docker SDK."""
    try:
        client = engine_client(timeout=20)
        with engine_errors("the engine did not answer"):
            version = client.version()
            runtimes = tuple(sorted((client.info().get("Runtimes") or {}).keys()))
    except NoEngineError as exc:
        return None, None, exc.cause, ()
    except GpuImagesError as exc:
        return None, None, str(exc), ()
    return version.get("Version"), version.get("ApiVersion"), None, runtimes


def shm_size(path: Path = SHM) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_frsize * st.f_blocks


def gather() -> HostProbe:
    method, pci_gpus, lspci_missing = scan_pci()
    smi_found, smi_error, gpus = query_smi()
    version, api, docker_error, runtimes = query_docker()
    try:
        build_client, build_client_error = find_docker_cli().describe(), None
    except NoBuildKitClientError as exc:
        build_client, build_client_error = None, str(exc)
    try:
        disk = disk_for(engine_client(timeout=60), NEED_CUDA)
    except GpuImagesError:
        disk = None
    return HostProbe(
        pci_method=method,
        pci_gpus=pci_gpus,
        lspci_missing=lspci_missing,
        smi_found=smi_found,
        smi_error=smi_error,
        gpus=gpus,
        docker_version=version,
        docker_api=api,
        docker_error=docker_error,
        runtimes=runtimes,
        toolkit_binaries=tuple(b for b in TOOLKIT_BINARIES if shutil.which(b)),
        shm_bytes=shm_size(),
        build_client=build_client,
        build_client_error=build_client_error,
        engine_disk=disk,
    )


# --- host checks: pure functions of the probe ------------------------------------------


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def _required(opts: DoctorOptions) -> bool:
    return opts.require_gpu or opts.image is not None


def check_gpu(probe: HostProbe, opts: DoctorOptions) -> Check:
    if probe.lspci_missing:
        how = f"lspci is not installed (package pciutils), so {probe.pci_method} was read"
    else:
        how = f"looked with {probe.pci_method}"
    if probe.has_gpu:
        names = [g.name for g in probe.gpus] or list(probe.pci_gpus)
        return Check("GPU", OK, f"{len(names)} NVIDIA GPU(s): {'; '.join(names)}; {how}.")
    detail = (
        f"No NVIDIA GPU on this host: {how}, and it lists no device of vendor "
        f"{NVIDIA_PCI_VENDOR}. GPU variants cannot run here; CPU variants can."
    )
    if _required(opts):
        asked = "--require-gpu" if opts.require_gpu else "--image"
        return Check("GPU", FAIL, f"{detail} {asked} asks for a GPU.", GPU_FIX)
    return Check("GPU", WARN, detail)


def check_driver(probe: HostProbe, opts: DoctorOptions) -> Check:
    fix = driver_fix(opts.driver_branch)
    if probe.gpus:
        driver = probe.driver or "?"
        listed = "; ".join(
            f"GPU {g.index} {g.name} ({g.arch or 'arch not reported'})" for g in probe.gpus
        )
        return Check("NVIDIA driver", OK, f"driver {driver}: {listed}.")
    if not probe.has_gpu:
        return Check("NVIDIA driver", SKIP, "No NVIDIA GPU, so no driver is needed.")
    if not probe.smi_found:
        return Check(
            "NVIDIA driver",
            FAIL,
            "nvidia-smi is not installed: the NVIDIA driver is missing, so no container can "
            "use the GPU.",
            fix,
        )
    return Check(
        "NVIDIA driver",
        FAIL,
        f"nvidia-smi failed: {probe.smi_error or 'no GPU listed'}. The driver is not loaded "
        "(installed but not rebooted, a kernel update without the module, or Secure Boot "
        "refusing an unsigned module).",
        fix,
    )


def docker_version_tuple(version: str) -> tuple[int, ...]:
    """'20.10.24+dfsg1' -> (20, 10, 24); '19.03.13-ce' -> (19, 3, 13)."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0].split("-")[0])[:3])


def check_docker(probe: HostProbe, opts: DoctorOptions) -> Check:
    if probe.docker_error or not probe.docker_version:
        return Check(
            "Docker engine", FAIL, f"No Docker engine answers: {probe.docker_error}.", DOCKER_FIX
        )
    version = probe.docker_version
    if docker_version_tuple(version) < MIN_DOCKER:
        return Check(
            "Docker engine",
            FAIL,
            f"Docker {version} is older than 19.03: it has no --gpus (device requests).",
            DOCKER_FIX,
        )
    return Check(
        "Docker engine",
        OK,
        f"Docker {version} (API {probe.docker_api}): --gpus is supported (>= 19.03).",
    )


def check_build_client(probe: HostProbe, opts: DoctorOptions) -> Check:
    name = "Docker client for builds"
    if probe.build_client:
        return Check(name, OK, f"`invoke build` uses {probe.build_client}.")
    if probe.build_client_error is None:
        return Check(name, SKIP, "Not looked for.")
    # Images still run without one; only building them needs BuildKit.
    return Check(
        name, WARN, f"{probe.build_client_error} Running images works; building them does not."
    )


DISK_FIX = f"""\
{"docker system df":<41} # what holds the space
{PRUNE_HINT:<41} # trims BuildKit's cache, least recently used first
{"docker image prune":<41} # removes untagged images
(Or give the engine a bigger disk: dockerd --data-root /big/docker.)"""


def check_disk(probe: HostProbe, opts: DoctorOptions) -> Check:
    name = "Disk for builds"
    disk = probe.engine_disk
    if disk is None:
        return Check(name, SKIP, "No engine answered: its data root is unknown.")
    if disk.free is None:
        return Check(
            name, SKIP, f"The engine's data root {disk.root} is not on this host: not checked."
        )
    if disk.free < NEED_CUDA:
        return Check(
            name,
            WARN,
            f"{disk.describe()}: a CUDA build needs about {gb(NEED_CUDA)} there, and one that "
            "runs short fails with 'no space left on device' after its downloads.",
            DISK_FIX,
        )
    return Check(name, OK, f"{disk.describe()}: enough for a CUDA build (about {gb(NEED_CUDA)}).")


def check_runtime(probe: HostProbe, opts: DoctorOptions) -> Check:
    name = "NVIDIA container runtime"
    found = []
    if "nvidia" in probe.runtimes:
        found.append("Docker runtime 'nvidia'")
    found += probe.toolkit_binaries
    if found:
        return Check(name, OK, f"Found: {', '.join(found)}.")
    runtimes = ", ".join(probe.runtimes) if probe.runtimes else "unknown (no engine answered)"
    detail = (
        f"No NVIDIA container runtime on this host: Docker's runtimes are {runtimes}, and none "
        f"of {', '.join(TOOLKIT_BINARIES)} is on PATH, so `docker run --gpus` fails with "
        "'could not select device driver \"\" with capabilities: [[gpu]]'."
    )
    if probe.has_gpu or _required(opts):
        return Check(name, FAIL, detail, TOOLKIT_FIX.replace("IMAGE", opts.image or "IMAGE"))
    return Check(name, SKIP, detail + " Not needed without a GPU.")


def check_shm(probe: HostProbe, opts: DoctorOptions) -> Check:
    if probe.shm_bytes is None:
        return Check("Shared memory", WARN, f"{SHM} does not exist on this host.", SHM_FIX)
    size = _gib(probe.shm_bytes)
    if probe.shm_bytes < MIN_SHM_BYTES:
        return Check(
            "Shared memory",
            WARN,
            f"{SHM} is {size}, below {_gib(MIN_SHM_BYTES)}: DataLoader workers and NCCL will "
            "fail with 'No space left on device' or a bus error.",
            SHM_FIX,
        )
    return Check(
        "Shared memory",
        OK,
        f"{SHM} is {size} on the host; containers get {DOCKER_DEFAULT_SHM} unless run with "
        "--ipc=host (the default of `invoke run`) or --shm-size.",
    )


CHECKS: tuple[Callable[[HostProbe, DoctorOptions], Check], ...] = (
    check_gpu,
    check_driver,
    check_docker,
    check_build_client,
    check_disk,
    check_runtime,
    check_shm,
)


def image_check(image: str, client: docker.DockerClient | None = None) -> Check:
    """A real `docker run --rm --gpus all IMAGE nvidia-smi`, its failure explained."""
    spec = RunSpec(image=image, command=("nvidia-smi",), gpus="all")
    name = "GPU container"
    line = spec.docker_line()
    try:
        client = client or engine_client(timeout=120)
        with tracked(client) as box:
            container = box.start(image, spec.command, **spec.create_kwargs())
            code = box.wait(container, IMAGE_CHECK_TIMEOUT_S)
            if code is None:
                return Check(name, FAIL, f"`{line}` did not finish in {IMAGE_CHECK_TIMEOUT_S} s.")
            out = box.logs(container).strip()
    except ImageMissingError:
        return Check(
            name,
            FAIL,
            f"`{line}`: image {image} is not on this host.",
            f"Build it (invoke build --variant NAME) or pull it: docker pull {image}",
        )
    except ContainerStartError as exc:
        if exc.known:
            return Check(name, FAIL, f"`{line}` failed. {exc.known[0]}", exc.known[1])
        return Check(name, FAIL, f"`{line}` failed: {exc.text}")
    except GpuImagesError as exc:
        return Check(name, FAIL, f"`{line}`: {exc}", DOCKER_FIX)
    tail = "\n".join(out.splitlines()[-15:])
    if code != 0:
        return Check(name, FAIL, f"`{line}` exited {code}:\n{tail}")
    return Check(name, OK, f"`{line}` works:\n{tail}")


# --- the whole report -------------------------------------------------------------------


@dataclass(frozen=True)
class DoctorReport:
    hypothetical: bool
    driver: str | None
    gpu_archs: tuple[str, ...]
    checks: tuple[Check, ...]
    verdicts: tuple[Verdict, ...]
    probe: HostProbe | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == FAIL)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "hypothetical": self.hypothetical,
            "driver": self.driver,
            "gpu_archs": list(self.gpu_archs),
            "checks": [c.as_dict() for c in self.checks],
            "variants": [v.as_dict() for v in self.verdicts],
            "host": self.probe.as_dict() if self.probe else None,
            "notes": list(self.notes),
            "exit_code": self.exit_code,
        }


def diagnose(
    variants: tuple[Variant, ...],
    compat: Compat,
    *,
    driver: str | None = None,
    gpu_arch: str | None = None,
    image: str | None = None,
    require_gpu: bool = False,
    probe: HostProbe | None = None,
    client: docker.DockerClient | None = None,
) -> DoctorReport:
    """Check this host (or answer for a hypothetical one with `driver`) and judge variants."""
    archs = (normalize_arch(gpu_arch),) if gpu_arch else ()
    if driver is not None:
        if image or require_gpu:
            raise UserInputError(
                "--driver asks about a hypothetical host; --image and --require-gpu check this "
                "one. Run them separately."
            )
        driver = normalize_driver(driver)
        verdicts = tuple(verdict_for(v, driver, archs, compat) for v in variants)
        return DoctorReport(True, driver, archs, (), verdicts)
    opts = DoctorOptions(
        require_gpu=require_gpu, image=image, driver_branch=newest_branch(variants)
    )
    probe = probe or gather()
    checks = [check(probe, opts) for check in CHECKS]
    if image:
        checks.append(image_check(image, client))
    archs = archs or probe.archs
    verdicts = tuple(verdict_for(v, probe.driver, archs, compat) for v in variants)
    notes = ()
    if not probe.has_gpu:
        notes = ("No NVIDIA GPU on this host: GPU variants cannot run here; CPU variants can.",)
    return DoctorReport(False, probe.driver, archs, tuple(checks), verdicts, probe, notes)
