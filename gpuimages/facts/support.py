"""Can a driver and a GPU run a variant's image? Verdicts computed from the facts alone.

Pure functions of a `Variant`, a driver version, compute capabilities and compat.yaml:
the host doctor asks them about the machine it probed, the image's start-up facts
(build/startup.py) ask them ahead of time for every driver branch, `invoke resolve` for
a host described on the command line.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Final, Literal

from packaging.version import Version

from gpuimages.core.errors import UserInputError
from gpuimages.core.reference import shown
from gpuimages.facts.compat import Compat, driver_tuple
from gpuimages.facts.variant import Variant

MIN_SHM_BYTES = 1 << 30  # below 1 GiB, DataLoader workers and NCCL run out of /dev/shm

# Verdicts, worst first where they combine.
Verdicts = Literal[
    "unsupported",
    "refused by NVIDIA_REQUIRE_CUDA",
    "minor-version compatibility, with limits",
    "supported",
    "no GPU needed",
    "no NVIDIA driver here",
]
UNSUPPORTED: Final = "unsupported"
REFUSED: Final = "refused by NVIDIA_REQUIRE_CUDA"
MINOR_COMPAT: Final = "minor-version compatibility, with limits"
SUPPORTED: Final = "supported"
NO_GPU_NEEDED: Final = "no GPU needed"
NO_DRIVER: Final = "no NVIDIA driver here"

# Architecture verdicts: the GPU's compute capability against the wheel's kernels.
ArchStatus = Literal["native", "binary-compatible", "unsupported", "unknown"]
ARCH_NATIVE: Final = "native"
ARCH_COMPATIBLE: Final = "binary-compatible"
ARCH_UNSUPPORTED: Final = "unsupported"
ARCH_UNKNOWN: Final = "unknown"


def normalize_arch(value: str) -> str:
    """'8.6', '86', 'sm_86', 'compute_86' -> 'sm_86'; UserInputError otherwise."""
    text = value.strip().lower().removeprefix("sm_").removeprefix("compute_")
    m = re.fullmatch(r"(\d+)\.(\d)", text) or re.fullmatch(r"(\d+)(\d)", text)
    if not m:
        raise UserInputError(
            f"GPU architecture {shown(value)} is not a compute capability: use sm_86, 8.6 or 86 "
            "(nvidia-smi --query-gpu=compute_cap --format=csv shows it)."
        )
    return f"sm_{int(m.group(1))}{m.group(2)}"


def _cap(arch: str) -> tuple[int, int]:
    digits = arch.removeprefix("sm_")
    return int(digits[:-1]), int(digits[-1])


def normalize_driver(value: str) -> str:
    text = value.strip()
    if not re.fullmatch(r"\d{2,4}(\.\d{1,3}){0,2}", text):
        raise UserInputError(
            f"driver {shown(value)} is not an NVIDIA driver version: use what nvidia-smi shows as "
            "'Driver Version', e.g. 535.104.05 or 450.80.02."
        )
    return text


@dataclass(frozen=True)
class ArchVerdict:
    status: ArchStatus
    detail: str


def arch_verdict(archs: tuple[str, ...], gpu_archs: tuple[str, ...], compat: Compat) -> ArchVerdict:
    """The GPUs' compute capabilities against the kernels a wheel carries (`archs`)."""
    if not gpu_archs:
        return ArchVerdict(ARCH_UNKNOWN, "")
    parts, worst = [], ARCH_NATIVE
    order = (ARCH_NATIVE, ARCH_COMPATIBLE, ARCH_UNSUPPORTED)
    for gpu in gpu_archs:
        major, minor = _cap(gpu)
        same = [a for a in archs if _cap(a)[0] == major and _cap(a)[1] <= minor]
        if gpu in archs:
            status, text = ARCH_NATIVE, f"{gpu} is in the wheel"
        elif same:
            best = max(same, key=_cap)
            status = ARCH_COMPATIBLE
            text = f"{gpu} runs the wheel's {best} kernels (same major: binary compatible)"
        else:
            builds = [c for c, rel in compat.cuda.items() if _runs(gpu, rel.archs)]
            status = ARCH_UNSUPPORTED
            text = (
                f"no kernels for {gpu} in this wheel (it has {' '.join(archs)}): torch fails "
                "with 'no kernel image is available for execution on the device'; CUDA builds "
                f"with kernels for {gpu}: {', '.join(builds) or 'none recorded'}"
            )
        parts.append(text)
        worst = max(worst, status, key=order.index)
    return ArchVerdict(worst, "; ".join(parts) + ".")


def _runs(gpu: str, archs: tuple[str, ...]) -> bool:
    major, minor = _cap(gpu)
    return any(_cap(a)[0] == major and _cap(a)[1] <= minor for a in archs)


@dataclass(frozen=True)
class DriverVerdict:
    status: Verdicts  # supported | minor-version compatibility, with limits | unsupported
    driver_cuda: str | None  # the newest CUDA this driver supports
    start_refused: bool  # the image's NVIDIA_REQUIRE_CUDA makes the runtime refuse it
    detail: str


def branch(driver: str) -> str:
    return driver.split(".")[0]


def driver_verdict(
    variant: Variant, driver: str, compat: Compat, arch: ArchVerdict | None = None
) -> DriverVerdict:
    """The driver against CUDA's minimum, its minor-version floor and NVIDIA_REQUIRE_CUDA."""
    assert variant.min_driver is not None
    have = driver_tuple(driver)
    cuda, minimum, floor = variant.cuda, variant.min_driver, variant.minor_compat_driver
    driver_cuda = compat.cuda_for_driver(driver)
    supports = f"CUDA {driver_cuda}" if driver_cuda else "no CUDA release in compat.yaml"
    refused = driver_cuda is None or Version(driver_cuda) < Version(cuda)
    family = cuda.split(".")[0]
    if have >= driver_tuple(minimum):
        return DriverVerdict(
            SUPPORTED,
            driver_cuda,
            refused,
            f"driver {driver} >= {minimum}, NVIDIA's minimum for CUDA {variant.cuda_full}.",
        )
    below = (
        f"driver {driver} (supports {supports}) is below {minimum}, NVIDIA's minimum for "
        f"CUDA {variant.cuda_full}"
    )
    if floor is None or have < driver_tuple(floor):
        why = (
            f"and below {floor}, the CUDA {family}.x minor-version-compatibility floor"
            if floor
            else f"and CUDA {cuda} has no minor-version compatibility (it starts with CUDA 11)"
        )
        return DriverVerdict(
            UNSUPPORTED,
            driver_cuda,
            refused,
            f"{below}, {why}: install nvidia-driver-{branch(minimum)} or newer.",
        )
    if arch is not None and arch.status in (ARCH_NATIVE, ARCH_COMPATIBLE):
        ptx = "PTX JIT is not supported, and this GPU needs none (the wheel has its kernels)"
    else:
        ptx = (
            "PTX JIT is not supported: only GPUs the wheel has kernels for work "
            f"({' '.join(variant.archs)}); others fail with CUDA_ERROR_UNSUPPORTED_PTX_VERSION"
        )
    detail = (
        f"{below}, but at or above {floor}, the CUDA {family}.x minor-version-compatibility "
        f"floor: CUDA {cuda} runs with limits. {ptx}; CUDA APIs newer than {supports} fail "
        "with cudaErrorCallRequiresNewerDriver."
    )
    if refused:
        detail += (
            f" The image sets NVIDIA_REQUIRE_CUDA={variant.require_cuda}; at container start "
            f"the NVIDIA runtime compares it with the driver's CUDA ({driver_cuda}) and refuses "
            f"('nvidia-container-cli: requirement error: unsatisfied condition: "
            f"{variant.require_cuda}'). Start it anyway with -e NVIDIA_DISABLE_REQUIRE=1 (minor-"
            f"version compatibility, limits above), or install nvidia-driver-{branch(minimum)} "
            "or newer."
        )
    return DriverVerdict(MINOR_COMPAT, driver_cuda, refused, detail)


@dataclass(frozen=True)
class Verdict:
    variant: str
    cuda: str
    verdict: str  # the headline: one of the verdict constants above
    driver: str  # the driver's verdict against the toolkit, or "-"
    start: str  # what the NVIDIA_REQUIRE_CUDA start check does, or "-"
    arch: str  # the GPU architecture verdict, or "-"
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def verdict_for(
    variant: Variant, driver: str | None, gpu_archs: tuple[str, ...], compat: Compat
) -> Verdict:
    """Can a host with this driver and these GPUs run the variant's image, and how?"""
    if variant.is_cpu:
        return Verdict(
            variant.name, "cpu", NO_GPU_NEEDED, "-", "-", "-", "CPU build: runs anywhere."
        )
    arch = arch_verdict(variant.archs, gpu_archs, compat)
    if driver is None:
        floor = variant.minor_compat_driver
        detail = (
            f"needs an NVIDIA GPU ({' '.join(variant.archs)}) and driver >= {variant.min_driver}"
            + (f" (>= {floor} under minor-version compatibility)" if floor else "")
            + "."
        )
        return Verdict(variant.name, variant.cuda, NO_DRIVER, "-", "-", arch.status, detail)
    dv = driver_verdict(variant, driver, compat, arch)
    start = f"refused ({variant.require_cuda})" if dv.start_refused else "accepted"
    if dv.status == UNSUPPORTED or arch.status == ARCH_UNSUPPORTED:
        headline = UNSUPPORTED
    elif dv.start_refused:
        headline = REFUSED
    else:
        headline = dv.status
    detail = dv.detail + (f" GPU: {arch.detail}" if arch.detail else "")
    return Verdict(variant.name, variant.cuda, headline, dv.status, start, arch.status, detail)


def newest_branch(variants: tuple[Variant, ...]) -> str:
    """The nvidia-driver-XXX branch that runs every GPU variant given (fully supported)."""
    mins = [v.min_driver for v in variants if v.min_driver]
    return branch(max(mins, key=driver_tuple)) if mins else "550"
