"""What an image's start-up check knows, decided here and baked into the image as data.

The check itself (scripts/entrypoint/startup_check.py) runs inside the image with the
standard library only, so it cannot ask the doctor. Instead the doctor is asked here, at
render time, every question the check can meet:

- the driver: `support.driver_verdict` is a step function of the driver version (it
  changes only at the CUDA minimum, the minor-version-compatibility floor and the first
  driver of each CUDA release), so one verdict per band, its text with the driver left as
  `{driver}`, plus the matrix tags that run fully supported in that band;
- the GPU: `support.arch_verdict` for every compute capability NVIDIA has shipped, plus the
  matrix variants that have kernels for it;
- /dev/shm: the doctor's minimum and its fix.

The result is written next to the Dockerfile (dockerfiles/<name>/startup.json) and copied
into the image; `invoke render --check` catches it drifting like the Dockerfile.
"""

from __future__ import annotations

import json

from packaging.version import Version

from gpuimages.facts import support
from gpuimages.facts.compat import Compat, driver_tuple
from gpuimages.facts.variant import Variant

FACTS_FILE = "startup.json"
IN_IMAGE = "/opt/gpuimages/startup.json"
SCHEMA = 1
DRIVER_PLACEHOLDER = "{driver}"

# Compute capabilities of shipped NVIDIA GPUs (developer.nvidia.com/cuda-gpus, CUDA C
# Programming Guide "Compute Capabilities"); the wheels' archs are added to these.
GPU_ARCHS = (
    *("sm_30", "sm_32", "sm_35", "sm_37", "sm_50", "sm_52", "sm_53", "sm_60", "sm_61"),
    *("sm_62", "sm_70", "sm_72", "sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90"),
    *("sm_100", "sm_101", "sm_103", "sm_110", "sm_120", "sm_121"),
)

SHM_FIX = (
    "Docker gives containers a 64 MiB /dev/shm unless told otherwise: run with --ipc=host "
    "or --shm-size=16g (`invoke run` does); on Kubernetes mount an emptyDir with "
    "medium: Memory at /dev/shm (`invoke launch --k8s` does)."
)


def _arch_key(arch: str) -> tuple[int, int]:
    digits = arch.removeprefix("sm_")
    return int(digits[:-1]), int(digits[-1])


def _known_archs(compat: Compat, variants: tuple[Variant, ...]) -> list[str]:
    archs = set(GPU_ARCHS)
    for rel in compat.cuda.values():
        archs.update(rel.archs)
    for v in variants:
        archs.update(v.archs)
    return sorted(archs, key=_arch_key)


def _thresholds(variant: Variant, compat: Compat) -> list[str]:
    """Driver versions where the doctor's verdict for this variant can change."""
    found = {"0"}
    found.update(d for d in (variant.min_driver, variant.minor_compat_driver) if d)
    found.update(compat.driver_cuda.values())
    return sorted(found, key=driver_tuple)


def _fits(
    variant: Variant, driver: str, variants: tuple[Variant, ...], compat: Compat
) -> list[str]:
    """Matrix variants that this driver runs fully supported, nearest to `variant` first."""
    ok = [
        v
        for v in variants
        if not v.is_cpu and support.verdict_for(v, driver, (), compat).verdict == support.SUPPORTED
    ]

    def nearness(v: Variant) -> tuple[object, ...]:
        return (
            v.flavor != variant.flavor,
            bool(v.horovod) != bool(variant.horovod),
            v.torch != variant.torch,
            tuple(-p for p in driver_tuple(v.min_driver or "0")),  # newest CUDA first
            v.name,
        )

    return [v.name for v in sorted(ok, key=nearness)[:3]]


def driver_bands(
    variant: Variant, variants: tuple[Variant, ...], compat: Compat
) -> list[dict[str, object]]:
    bands = []
    for start in _thresholds(variant, compat):
        verdict = support.verdict_for(variant, start, (), compat)
        detail = verdict.detail.replace(f"driver {start} ", f"driver {DRIVER_PLACEHOLDER} ")
        band: dict[str, object] = {"from": start, "verdict": verdict.verdict, "detail": detail}
        if verdict.verdict != support.SUPPORTED:
            band["fits"] = _fits(variant, start, variants, compat)
        if bands and {k: v for k, v in bands[-1].items() if k != "from"} == {
            k: v for k, v in band.items() if k != "from"
        }:
            continue  # the same answer as the band below: one band
        bands.append(band)
    return bands


def arch_verdicts(
    variant: Variant, variants: tuple[Variant, ...], compat: Compat
) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for arch in _known_archs(compat, variants):
        verdict = support.arch_verdict(variant.archs, (arch,), compat)
        entry: dict[str, object] = {"status": verdict.status, "detail": verdict.detail}
        if verdict.status == support.ARCH_UNSUPPORTED:
            having = [
                v
                for v in variants
                if not v.is_cpu
                and v.flavor == variant.flavor
                and support.arch_verdict(v.archs, (arch,), compat).status
                != support.ARCH_UNSUPPORTED
            ]
            newest = sorted(having, key=lambda v: (Version(v.torch), v.name), reverse=True)
            entry["variants"] = [v.name for v in newest[:3]]
        out[arch] = entry
    return out


def startup_facts(
    variant: Variant, variants: tuple[Variant, ...], compat: Compat
) -> dict[str, object]:
    """The data the in-image start-up check reads (plain JSON types only)."""
    facts: dict[str, object] = {
        "schema": SCHEMA,
        "variant": variant.name,
        "cuda": variant.cuda,
        "archs": list(variant.archs),
        "shm": {"min_bytes": support.MIN_SHM_BYTES, "fix": SHM_FIX},
    }
    if not variant.is_cpu:
        facts["min_driver"] = variant.min_driver
        facts["driver_bands"] = driver_bands(variant, variants, compat)
        facts["arch_verdicts"] = arch_verdicts(variant, variants, compat)
    return facts


def facts_text(variant: Variant, variants: tuple[Variant, ...], compat: Compat) -> str:
    return json.dumps(startup_facts(variant, variants, compat), indent=1, sort_keys=True) + "\n"
