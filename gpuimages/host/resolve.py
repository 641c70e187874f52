"""Which images fit a host: `invoke resolve --driver 535.104.05 --gpu-arch sm_90`.

Every matrix variant is judged by the doctor's verdicts (doctor.py: the driver against the
CUDA minimum and the minor-version-compatibility floor, the image's NVIDIA_REQUIRE_CUDA
start check, the GPUs' compute capabilities against the wheel's archs) and by the
filters asked for (--torch as a prefix, --python, --flavor). What fits is ranked best
first; everything else carries every reason it does not fit. With catalogs (catalog.json
from `invoke publish`), a fitting variant names its published reference@digest, and one
the catalogs lack is marked "not published".

Ranking: published first (when a catalog is given); the driver under the plain
"supported" policy before minor-version compatibility, and that before a start the
image's NVIDIA_REQUIRE_CUDA refuses; newest torch; newest CUDA; runtime before devel;
without Horovod before with; native GPU kernels before binary-compatible ones; newest
Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from packaging.version import Version

from gpuimages.core.errors import UserInputError, one_of
from gpuimages.core.reference import shown
from gpuimages.facts import support
from gpuimages.facts.compat import Compat, driver_tuple
from gpuimages.facts.variant import Variant
from gpuimages.host import doctor
from gpuimages.release.catalog import PublishedImage

Policy = Literal["supported", "minor-version compatibility", "no GPU needed"]
NO_GPU = "none"  # --driver none: a host without an NVIDIA GPU (CPU variants fit)
FLAVORS = ("runtime", "devel")


@dataclass(frozen=True)
class HostRequest:
    """The host asked about, and what the user narrows the answer to."""

    driver: str | None  # None: no NVIDIA GPU on the host
    gpu_archs: tuple[str, ...] = ()
    torch: str | None = None
    python: str | None = None
    flavor: str | None = None


@dataclass(frozen=True)
class Candidate:
    variant: Variant
    fits: bool
    policy: Policy | None = None  # how the driver runs it (fitting GPU variants)
    start_refused: bool = False  # NVIDIA_REQUIRE_CUDA refuses this driver at start
    arch: str = support.ARCH_UNKNOWN
    reasons: tuple[str, ...] = ()  # why it does not fit
    notes: tuple[str, ...] = ()  # what to know when it fits
    detail: str = ""  # the doctor's whole verdict
    published: PublishedImage | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant.name,
            "tag": self.variant.tag,
            "fits": self.fits,
            "policy": self.policy,
            "start_refused": self.start_refused,
            "arch": self.arch,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "detail": self.detail,
            "published": self.published.as_dict() if self.published else None,
            "versions": {
                "torch": self.variant.torch,
                "cuda": self.variant.cuda,
                "cudnn": self.variant.cudnn,
                "python": self.variant.python,
                "os": self.variant.os,
                "flavor": self.variant.flavor,
                "horovod": self.variant.horovod,
            },
            "min_driver": self.variant.min_driver,
            "minor_compat_driver": self.variant.minor_compat_driver,
            "archs": list(self.variant.archs),
        }


@dataclass(frozen=True)
class Resolution:
    request: HostRequest
    fits: tuple[Candidate, ...]
    others: tuple[Candidate, ...]
    catalog_given: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def best(self) -> Candidate | None:
        """The first fit that can be pulled (with a catalog) or built (without)."""
        usable = [c for c in self.fits if c.published or not self.catalog_given]
        return usable[0] if usable else None

    @property
    def exit_code(self) -> int:
        return 0 if self.best else 1

    def as_dict(self) -> dict[str, Any]:
        r = self.request
        return {
            "driver": r.driver,
            "gpu_archs": list(r.gpu_archs),
            "filters": {"torch": r.torch, "python": r.python, "flavor": r.flavor},
            "catalog": self.catalog_given,
            "best": self.best.variant.name if self.best else None,
            "fits": [c.as_dict() for c in self.fits],
            "others": [c.as_dict() for c in self.others],
            "notes": list(self.notes),
        }


# --- options, checked up front ---------------------------------------------------------------


def host_request(
    driver: str | None,
    gpu_arch: Iterable[str] | str | None,
    *,
    torch: str | None = None,
    python: str | None = None,
    flavor: str | None = None,
) -> HostRequest:
    """The request from the options; without --driver, this host's (nvidia-smi)."""
    archs = gpu_archs(gpu_arch)
    if driver is not None and str(driver).strip().lower() == NO_GPU:
        if archs:
            raise UserInputError(
                "--driver none asks about a host without an NVIDIA GPU; --gpu-arch names its "
                "GPUs. Give the driver with --gpu-arch, or leave --gpu-arch out."
            )
        return HostRequest(None, (), torch, python, flavor)
    if driver is not None:
        return HostRequest(support.normalize_driver(str(driver)), archs, torch, python, flavor)
    found, error, gpus = doctor.query_smi()
    if not gpus:
        why = error or ("it lists no GPU" if found else "nvidia-smi is not installed")
        raise UserInputError(
            f"--driver is needed: this host has no NVIDIA driver to ask ({why}). Give the "
            "driver of the host you ask about, as nvidia-smi shows it, e.g. --driver "
            "535.104.05 --gpu-arch sm_90, or --driver none for a host without a GPU."
        )
    archs = archs or tuple(dict.fromkeys(g.arch for g in gpus if g.arch))
    return HostRequest(gpus[0].driver, archs, torch, python, flavor)


def gpu_archs(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """--gpu-arch sm_90 --gpu-arch 8.6, or 'sm_90,sm_86': normalized, in order, once each."""
    if values is None:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    words = [w.strip() for item in items for w in str(item).split(",") if w.strip()]
    return tuple(dict.fromkeys(support.normalize_arch(w) for w in words))


def torch_matches(prefix: str, torch: str) -> bool:
    """--torch 2.5 matches 2.5.1 (whole version parts, so 2.1 does not match 2.13.0)."""
    want = prefix.split(".")
    return torch.split(".")[: len(want)] == want


def check_filters(
    variants: tuple[Variant, ...],
    *,
    torch: str | None,
    python: str | None,
    flavor: str | None,
    matrix: str = "the matrix",
) -> None:
    """Each filter must name something the matrix has; one paragraph otherwise."""
    torches = sorted({v.torch for v in variants}, key=Version)
    pythons = sorted({v.python for v in variants}, key=Version)
    if torch is not None and (
        not re.fullmatch(r"\d+(\.\d+){0,2}", torch)
        or not any(torch_matches(torch, t) for t in torches)
    ):
        raise UserInputError(
            f"--torch {shown(torch)} matches no variant of {matrix}: it has torch "
            f"{one_of(torches)} (a prefix such as 2.5 matches 2.5.1)."
        )
    if python is not None and python not in pythons:
        raise UserInputError(
            f"--python {shown(python)} is not a Python of {matrix}'s variants: {one_of(pythons)}."
        )
    if flavor is not None and flavor not in FLAVORS:
        raise UserInputError(f"--flavor {shown(flavor)} is not a flavor: {one_of(FLAVORS)}.")


# --- judging one variant -------------------------------------------------------------------------


def _filter_reasons(v: Variant, r: HostRequest) -> list[str]:
    reasons = []
    if r.torch is not None and not torch_matches(r.torch, v.torch):
        reasons.append(f"torch {v.torch} is not --torch {r.torch}")
    if r.python is not None and v.python != r.python:
        reasons.append(f"Python {v.python} is not --python {r.python}")
    if r.flavor is not None and v.flavor != r.flavor:
        reasons.append(f"{v.flavor} is not --flavor {r.flavor}")
    return reasons


def _driver_reason(v: Variant, driver: str) -> str:
    floor = v.minor_compat_driver
    under = (
        f"or >= {floor} under minor-version compatibility"
        if floor
        else f"and CUDA {v.cuda} has no minor-version compatibility"
    )
    return (
        f"driver {driver} is too old for CUDA {v.cuda} under every policy: it needs "
        f">= {v.min_driver} (supported) {under}"
    )


def _arch_reason(v: Variant, gpus: tuple[str, ...], compat: Compat) -> str:
    missing = [
        g
        for g in gpus
        if support.arch_verdict(v.archs, (g,), compat).status == support.ARCH_UNSUPPORTED
    ]
    which = f"GPU {missing[0]} is" if len(missing) == 1 else f"GPUs {', '.join(missing)} are"
    return f"{which} not in the image's archs ({' '.join(v.archs)})"


def judge(
    v: Variant,
    request: HostRequest,
    compat: Compat,
    published: PublishedImage | None = None,
) -> Candidate:
    """Does the variant fit the request? With the doctor's verdicts and every reason."""
    reasons = _filter_reasons(v, request)
    if request.driver is None:  # a host without an NVIDIA GPU
        if v.is_cpu:
            return Candidate(
                v, not reasons, "no GPU needed" if not reasons else None, reasons=tuple(reasons),
                detail="CPU build: runs anywhere.", published=published,
            )  # fmt: skip
        reasons.append(f"needs an NVIDIA GPU and driver >= {v.min_driver}")
        return Candidate(v, False, reasons=tuple(reasons), published=published)
    if v.is_cpu:
        reasons.append("CPU build: runs on any host but does not use its GPUs")
        return Candidate(v, False, reasons=tuple(reasons), published=published)
    arch = support.arch_verdict(v.archs, request.gpu_archs, compat)
    dv = support.driver_verdict(v, request.driver, compat, arch)
    if dv.status == support.UNSUPPORTED:
        reasons.append(_driver_reason(v, request.driver))
    if arch.status == support.ARCH_UNSUPPORTED:  # which GPUs: judged one by one only then
        reasons.append(_arch_reason(v, request.gpu_archs, compat))
    detail = dv.detail + (f" GPU: {arch.detail}" if arch.detail else "")
    common = {"arch": arch.status, "detail": detail, "published": published}
    if reasons:
        return Candidate(v, False, reasons=tuple(reasons), **common)
    policy: Policy = (
        "supported" if dv.status == support.SUPPORTED else "minor-version compatibility"
    )
    notes = []
    if policy != "supported":
        notes.append(
            f"minor-version compatibility: driver below {v.min_driver}, at or above "
            f"{v.minor_compat_driver}; runs with limits (no PTX JIT, newer CUDA APIs fail)"
        )
    if dv.start_refused:
        notes.append(
            f"the image's NVIDIA_REQUIRE_CUDA={v.require_cuda} refuses this driver at "
            "container start: run with -e NVIDIA_DISABLE_REQUIRE=1"
        )
    if arch.status == support.ARCH_COMPATIBLE:
        notes.append(arch.detail)
    if not request.gpu_archs:
        notes.append(f"GPU not judged (no --gpu-arch): the image has {' '.join(v.archs)}")
    return Candidate(
        v,
        True,
        policy=policy,
        start_refused=dv.start_refused,
        notes=tuple(notes),
        **common,
    )


def _newest(version: str) -> tuple[int, ...]:
    return tuple(-p for p in Version(version).release)


def rank(c: Candidate, request: HostRequest, catalog_given: bool) -> tuple[Any, ...]:
    """Sort key of a fitting candidate: smaller is better (module docstring)."""
    v = c.variant
    return (
        catalog_given and c.published is None,
        c.policy != "supported",
        c.start_refused,
        _newest(v.torch),
        () if v.is_cpu else _newest(v.cuda),
        request.flavor is None and v.flavor != "runtime",
        v.horovod is not None,
        c.arch != support.ARCH_NATIVE,
        _newest(v.python),
        v.name,
    )


def resolve_host(
    variants: tuple[Variant, ...],
    request: HostRequest,
    compat: Compat,
    catalog: Mapping[str, PublishedImage] | None = None,
) -> Resolution:
    """Every variant judged; the fitting ones best first, the others in matrix order."""
    candidates = [judge(v, request, compat, (catalog or {}).get(v.name)) for v in variants]
    given = catalog is not None
    fits = sorted((c for c in candidates if c.fits), key=lambda c: rank(c, request, given))
    others = tuple(c for c in candidates if not c.fits)
    notes = []
    if catalog is not None:
        unknown = sorted(set(catalog) - {v.name for v in variants})
        if unknown:
            notes.append(f"in the catalog but not in the matrix (not judged): {', '.join(unknown)}")
    return Resolution(request, tuple(fits), others, given, tuple(notes))


def describe(request: HostRequest, joint: str = ", ") -> str:
    """'driver 535.104.05, GPU sm_90' or 'a host without an NVIDIA GPU'."""
    if request.driver is None:
        return "a host without an NVIDIA GPU"
    gpus = f"{joint}GPU {', '.join(request.gpu_archs)}" if request.gpu_archs else ""
    return f"driver {request.driver}{gpus}"


def failure(resolution: Resolution) -> str:
    """The one-paragraph message when nothing fits (exit 1)."""
    host = describe(resolution.request, " and ")
    if resolution.fits:  # only with a catalog: fitting variants, none published
        names = ", ".join(c.variant.name for c in resolution.fits[:3])
        return (
            f"no published image fits {host}: the catalog has none of the variants that fit "
            f"({names}); publish one of them (`invoke publish --variant NAME`)."
        )
    reasons = {reason for c in resolution.others for reason in c.reasons}
    # Variants that only the driver keeps out: a newer driver would run them.
    too_old = [c for c in resolution.others if len(c.reasons) == 1 and "too old" in c.reasons[0]]
    hint = ""
    if too_old:
        easiest = min((c.variant for c in too_old), key=lambda v: driver_tuple(v.min_driver or "0"))
        hint = (
            f" The oldest driver that fully supports one of them: {easiest.min_driver} "
            f"(nvidia-driver-{support.branch(easiest.min_driver or '0')}), for {easiest.name}."
        )
    return (
        f"no variant of the matrix fits {host} ({len(reasons)} distinct reason(s); each "
        f"variant's are listed above).{hint}"
    )
