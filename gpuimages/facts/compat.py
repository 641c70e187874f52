"""Compatibility facts (data/compat.yaml) as typed values, plus the questions asked of them.

The facts live in YAML with a source per line; this module only reads and queries them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from gpuimages.core.yamlio import load_yaml


@dataclass(frozen=True)
class TorchRelease:
    version: str
    python: SpecifierSet  # Requires-Python of the release
    build_python: dict[str, tuple[str, ...]]  # build ("11.8" | "cpu") -> CPython versions
    torchvision: str | None
    torchaudio: str | None
    pypi_default: str | None = None  # the build PyPI's plain `torch==X` wheel is
    glibc: str | None = None  # floor stated by its wheels' manylinux tag

    @property
    def cuda(self) -> tuple[str, ...]:
        return tuple(sorted((b for b in self.build_python if b != "cpu"), key=Version))

    @property
    def cpu(self) -> bool:
        return "cpu" in self.build_python

    def builds(self) -> tuple[str, ...]:
        """Every value `cuda` may take for this release, CPU last."""
        return self.cuda + (("cpu",) if self.cpu else ())

    def pythons(self, build: str) -> tuple[str, ...]:
        """CPython versions the index has wheels of for this build (no free-threaded ones)."""
        return self.build_python.get(build, ())


@dataclass(frozen=True)
class BuildFacts:
    """cuDNN, NCCL and GPU archs of one torch x CUDA build (compat.yaml build_facts)."""

    cudnn: str | None  # exact ("8.7.0.84") where sourced, else the major ("9")
    nccl: str | None
    archs: tuple[str, ...]
    src: str = ""
    cuda_toolkit: str | None = None  # cuda-toolkit release its CUDA wheels come from

    @property
    def cudnn_version(self) -> str | None:
        """What torch.backends.cudnn.version() reads: X.Y.Z, where the exact one is known."""
        parts = (self.cudnn or "").split(".")
        return ".".join(parts[:3]) if len(parts) >= 3 else None

    @property
    def cudnn_major(self) -> str | None:
        return self.cudnn.split(".")[0] if self.cudnn else None


@dataclass(frozen=True)
class BuildRule:
    torch: SpecifierSet
    facts: BuildFacts


@dataclass(frozen=True)
class CudaRelease:
    version: str
    full: str
    os: tuple[str, ...]
    cudnn: tuple[str, ...]
    cudnn_tag: dict[str, str]
    eol: bool
    min_driver: str
    minor_compat_driver: str | None
    archs: tuple[str, ...]
    tags_deleted: bool = False  # nvidia/cuda tags gone from Docker Hub: no nvidia route
    pypi_nvcc: bool = False  # nvcc installable from PyPI: devel works on the os route
    duplicate_gb: float | None = None  # CUDA libs twice with a pip torch on nvidia/cuda

    def base_image(self, cudnn: str, flavor: str, os_name: str) -> str:
        """The nvidia/cuda tag; without a cuDNN part when no image carries that cuDNN major.

        PyTorch's wheels bring their own cuDNN (bundled in 1.12, the nvidia-cudnn-cu*
        wheels from 1.13 on), so the plain CUDA image is a sound base in that case.
        """
        distro, release = split_os(os_name)
        part = f"{self.cudnn_tag[cudnn]}-" if cudnn in self.cudnn_tag else ""
        return f"nvidia/cuda:{self.full}-{part}{flavor}-{distro}{release}"


@dataclass(frozen=True)
class HorovodFix:
    torch: SpecifierSet
    fix: str


@dataclass(frozen=True)
class HorovodRelease:
    version: str
    torch: SpecifierSet
    python: SpecifierSet
    fixes: tuple[HorovodFix, ...]
    build_requires: tuple[str, ...]
    upstream_torch: SpecifierSet | None = None  # what its own release supports
    built_here: str | None = None  # the newest torch this project built it against

    def support_note(self, torch: str) -> str | None:
        """A line for `check` when this torch needs our patch (not upstream-supported)."""
        fixes = self.fixes_for(torch)
        if not fixes or self.upstream_torch is None:
            return None
        if self.upstream_torch.contains(torch, prereleases=True):
            return None
        built = f"; newest torch built against here: {self.built_here}" if self.built_here else ""
        return (
            f"Horovod {self.version} with torch {torch} builds with our patch "
            f"({', '.join(fixes)}), not upstream-supported (upstream: torch "
            f"{self.upstream_torch}){built}."
        )

    def fixes_for(self, torch: str) -> tuple[str, ...]:
        return tuple(f.fix for f in self.fixes if f.torch.contains(torch, prereleases=True))


@dataclass(frozen=True)
class StandalonePython:
    """The second Python source: python-build-standalone CPython, installed by a pinned uv."""

    uv: str
    pythons: tuple[str, ...]
    glibc: str  # the oldest glibc its Linux builds run on

    def fits(self, python: str, os_glibc: str | None) -> bool:
        glibc_ok = os_glibc is None or Version(os_glibc) >= Version(self.glibc)
        return python in self.pythons and glibc_ok


@dataclass(frozen=True)
class Compat:
    wheel_index: str
    torch: dict[str, TorchRelease]
    cuda: dict[str, CudaRelease]
    os_base: dict[str, str]  # OS -> its official image (the os route's base)
    os_python: dict[str, tuple[str, ...]]
    os_mpi_runtime: dict[str, tuple[str, ...]]
    horovod: dict[str, HorovodRelease]
    numpy: tuple[tuple[SpecifierSet, dict[str, str]], ...]
    driver_cuda: dict[str, str] = field(default_factory=dict)  # CUDA -> its first driver
    build_rules: dict[str, tuple[BuildRule, ...]] = field(default_factory=dict)
    os_glibc: dict[str, str] = field(default_factory=dict)
    os_last_resort: frozenset[str] = frozenset()  # never a default (compat.yaml last_resort)
    python_standalone: StandalonePython | None = None

    def build_facts(self, torch: str, cuda: str) -> BuildFacts | None:
        """cuDNN/NCCL/archs of the torch x CUDA build: the first rule whose range holds torch."""
        for rule in self.build_rules.get(cuda, ()):
            if rule.torch.contains(torch, prereleases=True):
                return rule.facts
        return None

    def cuda_for_driver(self, driver: str) -> str | None:
        """The newest CUDA release this driver supports (what NVIDIA_REQUIRE_CUDA meets)."""
        have = driver_tuple(driver)
        reached = [c for c, d in self.driver_cuda.items() if have >= driver_tuple(d)]
        return max(reached, key=Version, default=None)

    def driver_for_cuda(self, cuda: str) -> str | None:
        """The inverse: the oldest driver whose CUDA meets NVIDIA_REQUIRE_CUDA=cuda>=CUDA."""
        reaching = [d for c, d in self.driver_cuda.items() if Version(c) >= Version(cuda)]
        return min(reaching, key=driver_tuple, default=None)

    def numpy_for(self, torch: str, python: str) -> str | None:
        for spec, by_python in self.numpy:
            if spec.contains(torch, prereleases=True):
                return by_python.get(python)
        return None

    def os_for(self, cuda: str, base: str) -> tuple[str, ...]:
        """The OSes a build can sit on: any OS image on the os route, else nvidia/cuda's."""
        if base == "os":
            return tuple(self.os_base)
        return self.cuda[cuda].os

    def pythons_for(self, torch: str, os_name: str, cuda: str | None = None) -> tuple[str, ...]:
        """Python versions the OS archive offers and the torch build has wheels for.

        Without `cuda`, any build of the release counts. An OS whose glibc is below the
        release's floor offers none.
        """
        release = self.torch[torch]
        if not self.glibc_ok(torch, os_name):
            return ()
        if cuda is None:
            wheels = {p for b in release.builds() for p in release.pythons(b)}
        else:
            wheels = set(release.pythons(cuda))
        return tuple(p for p in self.os_python[os_name] if p in wheels)

    def standalone_fits(self, torch: str, os_name: str, python: str) -> bool:
        """Whether python-build-standalone can put `python` on this OS for this torch."""
        pbs = self.python_standalone
        return (
            pbs is not None
            and self.glibc_ok(torch, os_name)
            and pbs.fits(python, self.os_glibc.get(os_name))
        )

    def glibc_ok(self, torch: str, os_name: str) -> bool:
        floor = self.torch[torch].glibc
        have = self.os_glibc.get(os_name)
        return not (floor and have) or Version(have) >= Version(floor)

    def default_os(self, torch: str, cuda: str, base: str, python: str | None = None) -> str | None:
        """The OS a build gets when none is asked for: one with `python`, if given.

        CPU: the first os_base entry that fits. CUDA: the newest OS that NVIDIA publishes
        this CUDA for (on either route, so switching routes keeps the OS), else the newest
        OS image that fits.
        """

        def fits(o: str) -> bool:
            usable = self.pythons_for(torch, o, cuda)
            return python in usable if python else bool(usable)

        usable = [o for o in self.os_for(cuda, base) if fits(o)]
        # An end-of-life OS image kept for old Pythons only: on the os route it is chosen
        # when nothing else carries the asked Python (nvidia/cuda's own lists stand as is).
        if base == "os":
            kept = [o for o in usable if o not in self.os_last_resort]
            usable = kept or (usable if python else [])
        if cuda == "cpu":
            return usable[0] if usable else None  # os_base lists the preferred first
        preferred = [o for o in self.cuda[cuda].os if o in usable] or usable
        return max(preferred, key=lambda o: Version(split_os(o)[1]), default=None)


def split_os(os_name: str) -> tuple[str, str]:
    """'ubuntu20.04' -> ('ubuntu', '20.04'); 'debian12' -> ('debian', '12')."""
    for i, ch in enumerate(os_name):
        if ch.isdigit():
            return os_name[:i], os_name[i:]
    return os_name, ""


def _spec(value: str | None) -> SpecifierSet:
    return SpecifierSet(value or "")


def parse_compat(raw: dict) -> Compat:
    torch = {
        str(v): TorchRelease(
            version=str(v),
            python=_spec(d.get("python")),
            build_python={
                str(b): tuple(str(p) for p in (facts or {}).get("python") or ())
                for b, facts in (d.get("builds") or {}).items()
            },
            torchvision=d.get("torchvision"),
            torchaudio=d.get("torchaudio"),
            pypi_default=None if d.get("pypi_default") is None else str(d["pypi_default"]),
            glibc=None if d.get("glibc") is None else str(d["glibc"]),
        )
        for v, d in raw["torch"].items()
    }
    build_rules = {
        str(c): tuple(
            BuildRule(
                torch=SpecifierSet("" if r["torch"] in ("*", None) else r["torch"]),
                facts=BuildFacts(
                    cudnn=None if r.get("cudnn") is None else str(r["cudnn"]),
                    nccl=None if r.get("nccl") is None else str(r["nccl"]),
                    archs=tuple(r.get("archs") or ()),
                    src=str(r.get("src") or ""),
                    cuda_toolkit=None if r.get("cuda_toolkit") is None else str(r["cuda_toolkit"]),
                ),
            )
            for r in rules
        )
        for c, rules in (raw.get("build_facts") or {}).items()
    }
    cuda = {
        str(v): CudaRelease(
            version=str(v),
            full=str(d["full"]),
            os=tuple(d["os"]),
            cudnn=tuple(str(c) for c in d["cudnn"]),
            cudnn_tag={str(k): str(t) for k, t in d["cudnn_tag"].items()},
            eol=bool(d["eol"]),
            min_driver=str(d["min_driver"]),
            minor_compat_driver=d.get("minor_compat_driver"),
            archs=tuple(d["archs"]),
            tags_deleted=bool(d.get("tags_deleted")),
            pypi_nvcc=bool(d.get("pypi_nvcc")),
            duplicate_gb=None if d.get("duplicate_gb") is None else float(d["duplicate_gb"]),
        )
        for v, d in raw["cuda"].items()
    }
    horovod = {
        str(v): HorovodRelease(
            version=str(v),
            torch=_spec(d["torch"]),
            python=_spec(d["python"]),
            fixes=tuple(HorovodFix(_spec(f["torch"]), f["fix"]) for f in d.get("fixes") or ()),
            build_requires=tuple(d.get("build_requires") or ()),
            upstream_torch=_spec(d["upstream_torch"]) if d.get("upstream_torch") else None,
            built_here=None if d.get("built_here") is None else str(d["built_here"]),
        )
        for v, d in raw["horovod"].items()
    }
    return Compat(
        wheel_index=raw["wheel_index"],
        torch=torch,
        cuda=cuda,
        os_base={str(k): str(v) for k, v in raw["os_base"].items()},
        os_python={k: tuple(str(p) for p in v["python"]) for k, v in raw["os"].items()},
        os_mpi_runtime={k: tuple(v.get("mpi_runtime") or ()) for k, v in raw["os"].items()},
        os_glibc={k: str(v["glibc"]) for k, v in raw["os"].items() if v.get("glibc")},
        os_last_resort=frozenset(k for k, v in raw["os"].items() if v.get("last_resort")),
        python_standalone=_standalone(raw.get("python_standalone")),
        build_rules=build_rules,
        horovod=horovod,
        numpy=tuple(
            (_spec(spec), {str(k): str(v) for k, v in table.items()})
            for spec, table in (raw.get("numpy") or {}).items()
        ),
        driver_cuda={str(k): str(v) for k, v in (raw.get("driver_cuda") or {}).items()},
    )


def _standalone(raw: dict | None) -> StandalonePython | None:
    if not raw:
        return None
    return StandalonePython(
        uv=str(raw["uv"]),
        pythons=tuple(str(p) for p in raw["pythons"]),
        glibc=str(raw["glibc"]),
    )


@functools.cache
def load_compat(path: Path | None = None) -> Compat:
    """The shipped compatibility data, or another file with the same shape."""
    if path is None:
        path = Path(str(resources.files("gpuimages") / "data" / "compat.yaml"))
    return parse_compat(load_yaml(path))


def driver_tuple(v: str) -> tuple[int, ...]:
    """Driver versions ('465.19.01') compare numerically part by part."""
    return tuple(int(p) for p in v.split("."))
