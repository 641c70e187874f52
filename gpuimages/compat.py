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

from gpuimages.yamlio import load_yaml


@dataclass(frozen=True)
class BuildFacts:
    """What one torch × CUDA wheel pins (its METADATA): None where not recorded."""

    cudnn_version: str | None = None
    nccl: str | None = None
    cuda_toolkit: str | None = None  # the cuda-toolkit release of its CUDA libraries


@dataclass(frozen=True)
class TorchRelease:
    version: str
    python: SpecifierSet
    cuda: tuple[str, ...]
    cpu: bool
    cudnn: str | None
    torchvision: str | None
    torchaudio: str | None
    builds_facts: dict[str, BuildFacts] = field(default_factory=dict)  # per CUDA build
    pypi_cuda: str | None = None  # the build PyPI's default Linux wheel is ("cpu" or CUDA)

    def facts(self, cuda: str) -> BuildFacts:
        return self.builds_facts.get(cuda, BuildFacts())

    def builds(self) -> tuple[str, ...]:
        """Every value `cuda` may take for this release, CPU last."""
        return self.cuda + (("cpu",) if self.cpu else ())


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
    pypi_nvcc: bool = False  # nvcc installable from PyPI: devel works on the os route
    tags_deleted: bool = False  # NVIDIA removed this CUDA's nvidia/cuda tags: no nvidia route

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

    def fixes_for(self, torch: str) -> tuple[str, ...]:
        return tuple(f.fix for f in self.fixes if f.torch.contains(torch, prereleases=True))


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

    def cuda_for_driver(self, driver: str) -> str | None:
        """The newest CUDA release this driver supports (what NVIDIA_REQUIRE_CUDA meets)."""
        have = driver_tuple(driver)
        reached = [c for c, d in self.driver_cuda.items() if have >= driver_tuple(d)]
        return max(reached, key=Version, default=None)

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

    def pythons_for(self, torch: str, os_name: str) -> tuple[str, ...]:
        """Python versions that both the OS archive offers and the torch release supports."""
        spec = self.torch[torch].python
        return tuple(p for p in self.os_python[os_name] if spec.contains(p + ".0"))

    def default_os(self, torch: str, cuda: str, base: str) -> str | None:
        """The OS a build gets when none is asked for.

        CPU: the first os_base entry that offers a usable Python. CUDA: the newest OS that
        NVIDIA publishes this CUDA for (on either route, so switching routes keeps the OS)
        and that offers a Python the torch release supports.
        """
        if cuda == "cpu":
            candidates = [o for o in self.os_base if self.pythons_for(torch, o)]
            return candidates[0] if candidates else None
        usable = [o for o in self.os_for(cuda, base) if self.pythons_for(torch, o)]
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
            python=_spec(d["python"]),
            cuda=tuple(str(c) for c in d.get("cuda") or ()),
            cpu=bool(d.get("cpu")),
            cudnn=None if d.get("cudnn") is None else str(d["cudnn"]),
            torchvision=d.get("torchvision"),
            torchaudio=d.get("torchaudio"),
            builds_facts={
                str(k): BuildFacts(**{f: None if x is None else str(x) for f, x in b.items()})
                for k, b in (d.get("builds") or {}).items()
            },
            pypi_cuda=None if d.get("pypi_cuda") is None else str(d["pypi_cuda"]),
        )
        for v, d in raw["torch"].items()
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
            pypi_nvcc=bool(d.get("pypi_nvcc")),
            tags_deleted=bool(d.get("tags_deleted")),
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
        )
        for v, d in raw["horovod"].items()
    }
    return Compat(
        wheel_index=raw["wheel_index"],
        torch=torch,
        cuda=cuda,
        os_base={str(k): str(v) for k, v in raw["os_base"].items()},
        os_python={k: tuple(str(p) for p in v["python"]) for k, v in raw["os"].items()},
        os_mpi_runtime={k: tuple(v["mpi_runtime"]) for k, v in raw["os"].items()},
        horovod=horovod,
        numpy=tuple(
            (_spec(spec), {str(k): str(v) for k, v in table.items()})
            for spec, table in (raw.get("numpy") or {}).items()
        ),
        driver_cuda={str(k): str(v) for k, v in (raw.get("driver_cuda") or {}).items()},
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
