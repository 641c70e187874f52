"""`Variant`: the one value every step takes, and how a request becomes one.

A `VariantRequest` is what a user or a matrix entry asked for (anything may be missing
but torch and cuda); `resolve()` checks it against the compatibility data, fills the
defaults, and returns an immutable `Variant` with everything later steps need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from packaging.version import InvalidVersion, Version

from gpuimages.core.errors import UserInputError, did_you_mean, one_of
from gpuimages.core.reference import check_repository
from gpuimages.facts.compat import BuildFacts, Compat, CudaRelease, TorchRelease, split_os

FLAVORS = ("runtime", "devel")
LABEL_PREFIX = "io.gpuimages"
NONE_WORDS = {"none", "no", "false", "null", ""}


@dataclass(frozen=True)
class VariantRequest:
    torch: str
    cuda: str
    cudnn: str | None = None
    flavor: str | None = None
    python: str | None = None
    os: str | None = None
    horovod: str | None = None
    torchvision: str | None = None  # only "none" is accepted: leave torchvision out
    size_budget_mb: int | None = None
    base: str | None = None  # "os" | "nvidia": where CUDA comes from (default: see _route)
    extension_archs: str | None = None  # devel's TORCH_CUDA_ARCH_LIST: a subset of the wheel's
    python_source: str | None = None  # "apt" | "standalone" (default: see _python_and_os)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Variant:
    torch: str
    cuda: str  # "11.3", or "cpu"
    cudnn: str | None
    flavor: str
    python: str
    os: str
    horovod: str | None
    repository: str
    # Derived from the compatibility data by resolve(); never set by hand.
    cuda_full: str | None
    base_image: str
    builder_image: str  # where the venv (and Horovod) is built; CUDA devel for GPU Horovod
    torchvision: str | None
    torchaudio: str | None
    numpy: str | None
    index_url: str
    min_driver: str | None
    minor_compat_driver: str | None
    archs: tuple[str, ...]
    eol: bool
    horovod_fixes: tuple[str, ...]
    mpi_packages: tuple[str, ...]  # OpenMPI runtime packages of the OS (Horovod only)
    horovod_build_requires: tuple[str, ...]  # pinned, installed before Horovod compiles
    base: str = "os"  # "os": torch's own CUDA on a plain OS image; "nvidia": nvidia/cuda
    cuda_toolkit: str | None = None  # PyPI cuda-toolkit pin for nvcc (os route devel/Horovod)
    pypi_build: bool = False  # PyPI's default torch wheel is this build (no +cuXYZ there)
    extension_archs: tuple[str, ...] = ()  # what devel compiles extensions for (default: archs)
    cudnn_version: str | None = None  # full cuDNN version the wheel pins, where recorded
    nccl: str | None = None  # NCCL version the wheel pins, where recorded
    size_budget_mb: int | None = None
    python_source: str = "apt"  # "apt": the OS archive's; "standalone": python-build-standalone
    uv: str | None = None  # the pinned uv that installs a standalone Python
    # Why this OS and Python source were chosen: for `invoke check`, not part of the identity.
    python_why: str = field(default="", compare=False)

    @property
    def is_cpu(self) -> bool:
        return self.cuda == "cpu"

    @property
    def wheel_tag(self) -> str:
        """PyTorch's local version tag: 'cu113' or 'cpu'."""
        return wheel_tag(self.cuda)

    @property
    def name(self) -> str:
        """The tag without repository, official grammar: 1.12.0-cuda11.3-cudnn8-runtime."""
        if self.is_cpu:
            core = f"{self.torch}-cpu-{self.flavor}"
        else:
            core = f"{self.torch}-cuda{self.cuda}-cudnn{self.cudnn}-{self.flavor}"
        return core + (f"-horovod{self.horovod}" if self.horovod else "")

    @property
    def tag(self) -> str:
        return f"{self.repository}:{self.name}"

    @property
    def pip_pins(self) -> tuple[str, ...]:
        """Exact requirement lines for the torch family (local version pins the build)."""
        # PyPI's own wheel of a release is one CUDA build without a local version; that
        # build is pinned by its public version (the smoke suite checks its CUDA inside).
        local = "" if self.pypi_build else f"+{self.wheel_tag}"
        pins = [f"torch=={self.torch}{local}"]
        if self.torchvision:
            pins.append(f"torchvision=={self.torchvision}{local}")
        if self.torchaudio:
            pins.append(f"torchaudio=={self.torchaudio}{local}")
        if self.numpy:
            pins.append(f"numpy=={self.numpy}")
        return tuple(pins)

    @property
    def requirements(self) -> tuple[str, ...]:
        """Everything pip installs into the venv before Horovod (if any) is compiled."""
        return self.pip_pins + self.horovod_build_requires + self.toolchain_requirements

    @property
    def toolchain_requirements(self) -> tuple[str, ...]:
        """nvcc from PyPI, matching torch's CUDA: what an os-route devel image adds."""
        if not self.cuda_toolkit:
            return ()
        return (f"cuda-toolkit[nvcc,cccl]=={self.cuda_toolkit}",)

    @property
    def cuda_home(self) -> str | None:
        """Where the PyPI toolkit lands in the venv (CUDA 13: site-packages/nvidia/cu13)."""
        if not self.cuda_toolkit:
            return None
        major = self.cuda.split(".")[0]
        return f"/opt/venv/lib/python{self.python}/site-packages/nvidia/cu{major}"

    @property
    def torch_cuda_arch_list(self) -> str:
        """TORCH_CUDA_ARCH_LIST for devel's extensions ('sm_86' -> '8.6'); '' for CPU."""
        return ";".join(f"{a[3:-1]}.{a[-1]}" for a in self.extension_archs or self.archs)

    @property
    def require_cuda(self) -> str | None:
        """NVIDIA_REQUIRE_CUDA: the container runtime refuses drivers too old for this CUDA."""
        return None if self.is_cpu else f"cuda>={self.cuda}"

    def versions(self) -> dict[str, str]:
        """What is inside, as plain strings ('none' where absent): labels, env and reports."""
        return {
            "torch": self.torch,
            "cuda": self.cuda,
            "cudnn": self.cudnn or "none",
            "cudnn_version": self.cudnn_version or "none",
            "nccl": self.nccl or "none",
            "flavor": self.flavor,
            "python": self.python,
            "python_source": self.python_source,
            "os": self.os,
            "base": self.base,
            "horovod": self.horovod or "none",
            "torchvision": self.torchvision or "none",
            "torchaudio": self.torchaudio or "none",
            "min_driver": self.min_driver or "none",
            "archs": ",".join(self.archs) or "none",
        }

    def labels(self) -> dict[str, str]:
        """Static labels (the build adds created/revision at build time, outside any layer)."""
        out = {
            "org.opencontainers.image.title": self.repository,
            "org.opencontainers.image.version": self.name,
            "org.opencontainers.image.description": (
                f"PyTorch {self.torch} ({'CPU' if self.is_cpu else 'CUDA ' + self.cuda}),"
                f" {self.flavor}, Python {self.python} on {self.os}"
            ),
            "org.opencontainers.image.base.name": self.base_image,
            f"{LABEL_PREFIX}.variant": self.name,
        }
        for key, value in self.versions().items():
            out[f"{LABEL_PREFIX}.{key.replace('_', '-')}"] = value
        return dict(sorted(out.items()))

    def smoke_env(self) -> dict[str, str]:
        """Expectations the in-image smoke suite reads (scripts/smoke/suite.py)."""
        return {f"GPUIMAGES_{k.upper()}": v for k, v in sorted(self.versions().items())}

    def as_dict(self) -> dict[str, object]:
        """JSON form for CI fan-out (`invoke matrix --json`) and reports."""
        return {
            "name": self.name,
            "tag": self.tag,
            "torch": self.torch,
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "flavor": self.flavor,
            "python": self.python,
            "python_source": self.python_source,
            "uv": self.uv,
            "os": self.os,
            "base": self.base,
            "horovod": self.horovod,
            "torchvision": self.torchvision,
            "torchaudio": self.torchaudio,
            "numpy": self.numpy,
            "base_image": self.base_image,
            "builder_image": self.builder_image,
            "index_url": self.index_url,
            "min_driver": self.min_driver,
            "minor_compat_driver": self.minor_compat_driver,
            "archs": list(self.archs),
            "eol": self.eol,
            "cuda_toolkit": self.cuda_toolkit,
            "extension_archs": list(self.extension_archs or self.archs),
            "size_budget_mb": self.size_budget_mb,
        }


def wheel_tag(cuda: str) -> str:
    return "cpu" if cuda == "cpu" else "cu" + cuda.replace(".", "")


def normalize_cuda(value: str) -> str:
    """Accept '11.3', 'cu113', 'cuda11.3', '11.3.1', 'CPU'; return '11.3' or 'cpu'."""
    v = str(value).strip().lower()
    if v in ("cpu", "+cpu"):
        return "cpu"
    v = v.removeprefix("+").removeprefix("cuda").removeprefix("-")
    m = re.fullmatch(r"cu(\d+)(\d)", v)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"(\d+)\.(\d+)\.\d+", v)  # a full CUDA version names its line
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    return v


def _nearest(value: str, choices: tuple[str, ...] | list[str]) -> list[str]:
    """The valid choices closest to value by version distance (at most three)."""
    try:
        target = Version(value)
    except InvalidVersion:
        return list(choices)[:3]

    def distance(c: str) -> tuple[float, str]:
        try:
            cv = Version(c)
        except InvalidVersion:
            return (float("inf"), c)
        parts = (*cv.release, 0, 0, 0)[:3]
        tparts = (*target.release, 0, 0, 0)[:3]
        weights = (1e6, 1e3, 1)
        return (sum(abs(a - b) * w for a, b, w in zip(parts, tparts, weights, strict=True)), c)

    return sorted(choices, key=distance)[:3]


def _none(value: str | None) -> str | None:
    if value is None:
        return None
    return None if str(value).strip().lower() in NONE_WORDS else str(value).strip()


def _default_python(usable: tuple[str, ...], offered: tuple[str, ...]) -> str:
    """The OS's own default Python when torch supports it, else the newest usable one."""
    if not usable:
        return ""
    return offered[0] if offered[0] in usable else max(usable, key=Version)


BASES = ("os", "nvidia")


def resolve(req: VariantRequest, compat: Compat, repository: str = "gpuimages/pytorch") -> Variant:
    """Check a request against the compatibility data and fill in every default.

    One named step per axis, in the order the axes depend on each other: the torch release
    decides the CUDA builds, the build decides cuDNN, the route and the OS images, the OS
    decides the Pythons, and so on. Each step raises UserInputError with the valid choices.
    """
    check_repository(repository)
    torch, release = _torch_release(req.torch, compat)
    cuda, cuda_rel = _cuda_build(req.cuda, torch, release, compat)
    cudnn = _cudnn(req.cudnn, torch, cuda, compat)
    flavor = _flavor(req.flavor)
    horovod = _none(req.horovod)
    base = _route(req.base, cuda, cuda_rel, flavor, horovod, compat)
    choice = _python_and_os(req, torch, release, cuda, base, compat)
    os_name, python = choice.os, choice.python
    fixes = _horovod_fixes(horovod, torch, python, compat)
    torchvision = _torchvision(req.torchvision, torch, release)
    budget = _budget(req.size_budget_mb)

    if cuda_rel is None or base == "os":
        base_image = compat.os_base[os_name]
        builder_image = base_image
    else:
        assert cudnn is not None
        base_image = cuda_rel.base_image(cudnn, flavor, os_name)
        # Horovod's NCCL operations compile with nvcc and NCCL headers: CUDA devel only.
        builder_image = cuda_rel.base_image(cudnn, "devel", os_name) if horovod else base_image
    facts = compat.build_facts(torch, cuda) if cuda_rel else None
    archs = _archs(torch, cuda, compat)
    toolkit = None
    if cuda_rel is not None and base == "os" and (flavor == "devel" or horovod):
        toolkit = _cuda_toolkit(torch, cuda, facts)

    return Variant(
        torch=torch,
        cuda=cuda,
        cudnn=cudnn if cuda_rel else None,
        flavor=flavor,
        python=python,
        os=os_name,
        horovod=horovod,
        repository=repository,
        base=base,
        cuda_full=cuda_rel.full if cuda_rel else None,
        base_image=base_image,
        builder_image=builder_image,
        torchvision=torchvision,
        torchaudio=release.torchaudio if torchvision else None,
        numpy=compat.numpy_for(torch, python),
        index_url=f"{compat.wheel_index}/{wheel_tag(cuda)}",
        min_driver=cuda_rel.min_driver if cuda_rel else None,
        minor_compat_driver=cuda_rel.minor_compat_driver if cuda_rel else None,
        archs=archs,
        extension_archs=_extension_archs(req.extension_archs, archs, torch, cuda, flavor),
        eol=cuda_rel.eol if cuda_rel else False,
        horovod_fixes=fixes,
        mpi_packages=compat.os_mpi_runtime[os_name] if horovod else (),
        horovod_build_requires=compat.horovod[horovod].build_requires if horovod else (),
        cuda_toolkit=toolkit,
        pypi_build=release.pypi_default == cuda,
        cudnn_version=facts.cudnn_version if facts else None,
        nccl=facts.nccl if facts and facts.nccl and facts.nccl.count(".") == 2 else None,
        size_budget_mb=budget,
        python_source=choice.source,
        uv=compat.python_standalone.uv
        if choice.source == "standalone" and compat.python_standalone
        else None,
        python_why=choice.why,
    )


def _torch_release(value: str, compat: Compat) -> tuple[str, TorchRelease]:
    torch = str(value).strip()
    release = compat.torch.get(torch)
    if release is None:
        known = sorted(compat.torch, key=Version)
        near = ", ".join(_nearest(torch, known))
        raise UserInputError(
            f"torch {torch} is not in the compatibility data. Nearest known releases: {near}. "
            f"All known: {one_of(known)}."
        )
    return torch, release


def _cuda_build(
    value: str, torch: str, release: TorchRelease, compat: Compat
) -> tuple[str, CudaRelease | None]:
    cuda = normalize_cuda(value)
    if cuda not in release.builds():
        gpu = ", ".join(release.cuda) or "none"
        cpu_note = " and a CPU build (--cuda cpu)" if release.cpu else ""
        near = ""
        if cuda != "cpu" and release.cuda:
            near = f" Nearest: {', '.join(_nearest(cuda, release.cuda))}."
        raise UserInputError(
            f"torch {torch} has no build for CUDA {cuda}: torch {torch} has CUDA wheels for "
            f"{gpu}{cpu_note}.{near}"
        )
    if cuda == "cpu":
        return cuda, None
    cuda_rel = compat.cuda.get(cuda)
    if cuda_rel is None:
        raise UserInputError(
            f"CUDA {cuda} is not in the compatibility data's CUDA table (known: "
            f"{one_of(compat.cuda)}); add its base images and driver minimum with a source."
        )
    return cuda, cuda_rel


def _cudnn(value: str | None, torch: str, cuda: str, compat: Compat) -> str | None:
    """The cuDNN major of the torch × CUDA build (build_facts); an asked one must match."""
    cudnn = _none(value)
    if cudnn is not None:
        cudnn = cudnn.lower().removeprefix("cudnn")
    if cuda == "cpu":
        if cudnn is not None:
            raise UserInputError(
                f"cuDNN {cudnn} was asked for a CPU build of torch {torch}; CPU variants have "
                "no cuDNN: leave --cudnn out."
            )
        return None
    facts = compat.build_facts(torch, cuda)
    shipped = facts.cudnn_major if facts else None
    if shipped is None:
        raise UserInputError(
            f"compat.yaml has no cuDNN for the torch {torch} CUDA {cuda} build (build_facts); "
            "add it with a source."
        )
    if cudnn is not None and cudnn != shipped:
        exact = f" ({facts.cudnn})" if facts and facts.cudnn != shipped else ""
        raise UserInputError(
            f"torch {torch} was built against cuDNN {shipped}, not cuDNN {cudnn}: its CUDA "
            f"{cuda} wheels ship cuDNN {shipped}{exact}. Use --cudnn {shipped} or leave it out."
        )
    return shipped


def _flavor(value: str | None) -> str:
    flavor = (value or "runtime").strip().lower()
    if flavor not in FLAVORS:
        raise UserInputError(
            f"flavor '{flavor}' is not valid{did_you_mean(flavor, FLAVORS)}; "
            f"valid flavors: {one_of(FLAVORS)}."
        )
    return flavor


def _route(
    value: str | None,
    cuda: str,
    cuda_rel: CudaRelease | None,
    flavor: str,
    horovod: str | None,
    compat: Compat,
) -> str:
    """Where CUDA comes from: `os` (torch's own wheels on a plain OS image) or `nvidia`.

    The os route is the default wherever it works; a compiler (devel, or Horovod's NCCL
    build) needs nvcc, which only CUDA versions with a PyPI nvcc have outside nvidia/cuda.
    """
    asked = (value or "").strip().lower() or None
    if asked is not None and asked not in BASES:
        raise UserInputError(
            f"base '{asked}' is not valid{did_you_mean(asked, BASES)}; valid bases: "
            f"{one_of(BASES)} (os: a plain OS image and the CUDA inside torch's wheels; "
            "nvidia: nvidia/cuda images)."
        )
    if cuda_rel is None:
        if asked == "nvidia":
            raise UserInputError(
                "base 'nvidia' was asked for a CPU variant: nvidia/cuda images only make sense "
                "with CUDA. Leave --base out (CPU variants use the os route)."
            )
        return "os"
    needs_nvcc = flavor == "devel" or horovod is not None
    if asked == "os" and needs_nvcc and not cuda_rel.pypi_nvcc:
        what = "a devel image" if flavor == "devel" else f"Horovod {horovod} with NCCL"
        with_nvcc = sorted((c for c, r in compat.cuda.items() if r.pypi_nvcc), key=Version)
        raise UserInputError(
            f"{what} for CUDA {cuda} cannot use the os route: it needs nvcc {cuda}, and PyPI "
            f"has no nvcc for CUDA {cuda} (nvidia-cuda-nvcc-cu12 ships ptxas, not nvcc). Use "
            f"--base nvidia (the nvidia/cuda devel image), or a torch build for CUDA "
            f"{', '.join(with_nvcc)}, where PyPI's cuda-toolkit[nvcc] works."
        )
    route = asked or ("nvidia" if needs_nvcc and not cuda_rel.pypi_nvcc else "os")
    if route == "nvidia" and cuda_rel.tags_deleted:
        fix = (
            "Use --base-image with a copy you mirrored earlier, or a newer CUDA."
            if needs_nvcc
            else "Use --base os (torch's own CUDA on a plain OS image), or --base-image with "
            "a copy you mirrored earlier."
        )
        raise UserInputError(
            f"base 'nvidia' is not available for CUDA {cuda}: NVIDIA deleted its end-of-life "
            f"nvidia/cuda:{cuda_rel.full}-* tags from Docker Hub. {fix}"
        )
    return route


PYTHON_SOURCES = ("apt", "standalone")


@dataclass(frozen=True)
class PythonChoice:
    """Where the image's Python comes from, on which OS, and why (for `invoke check`)."""

    os: str
    python: str
    source: str  # one of PYTHON_SOURCES
    why: str


def normalize_python(value: str) -> str:
    """Accept '3.12', '3.12.4', 'py3.12', 'cp312', '312'; return '3.12' (else as given)."""
    v = str(value).strip().lower()
    m = re.fullmatch(r"(?:python|py|cp)?(\d)\.?(\d{1,2})(?:\.\d+)?", v)
    return f"{m.group(1)}.{m.group(2)}" if m else v


def _python_and_os(
    req: VariantRequest,
    torch: str,
    release: TorchRelease,
    cuda: str,
    base: str,
    compat: Compat,
) -> PythonChoice:
    """The OS the image sits on and the source of its Python.

    The Python is checked against the wheels torch shipped before anything else. `--os`
    is the user's; without it an asked Python picks the OS: the build's preferred OS whose
    own archive carries that Python (apt), else the build's default OS with a
    python-build-standalone CPython (uv), else a clear no naming what would work.
    """
    source = _python_source(req.python_source)
    python = normalize_python(req.python) if (req.python or "").strip() else None
    if python is not None:
        _shipped(python, torch, release, cuda)
    asked_os = (req.os or "").strip().lower() or None
    if asked_os is not None:
        os_name = _os(asked_os, torch, cuda, base, compat)
        return _on_os(os_name, python, source, torch, release, cuda, base, compat, asked=True)
    if python is None or source == "standalone":
        os_name = compat.default_os(torch, cuda, base)
        if os_name is None and source == "standalone":
            os_name = _standalone_default_os(torch, cuda, base, compat)
        if os_name is None:
            raise UserInputError(
                f"no OS in compat.yaml offers a Python that the torch {torch} {cuda} build has "
                f"wheels for (it has {one_of(release.pythons(cuda))}; OS choices for it: "
                f"{one_of(compat.os_for(cuda, base))})."
            )
        return _on_os(os_name, python, source, torch, release, cuda, base, compat, asked=False)
    found = compat.default_os(torch, cuda, base, python)
    if found is not None:
        return PythonChoice(found, python, "apt", _why_apt(found, python, torch, cuda, compat))
    default = compat.default_os(torch, cuda, base) or _standalone_default_os(
        torch, cuda, base, compat
    )
    if source is None and default and compat.standalone_fits(torch, default, python):
        return PythonChoice(
            default, python, "standalone", _why_standalone(default, python, torch, cuda, compat)
        )
    raise UserInputError(_no_source(python, torch, cuda, base, compat, source))


def _python_source(value: str | None) -> str | None:
    source = (value or "").strip().lower() or None
    if source is not None and source not in PYTHON_SOURCES:
        raise UserInputError(
            f"python_source '{source}' is not valid{did_you_mean(source, PYTHON_SOURCES)}; "
            f"valid: {one_of(PYTHON_SOURCES)} (apt: the OS archive's Python; standalone: "
            "python-build-standalone CPython installed by uv, for Pythons the OS lacks)."
        )
    return source


def _shipped(python: str, torch: str, release: TorchRelease, cuda: str) -> None:
    """Refuse, before any OS is looked at, a Python torch never shipped a wheel for."""
    shipped = release.pythons(cuda)
    if python in shipped:
        return
    if not re.fullmatch(r"\d+\.\d+", python):
        raise UserInputError(
            f"Python '{python}' is not a major.minor version (e.g. 3.12); torch {torch}'s "
            f"{_build_name(cuda)} has wheels for Python {one_of(shipped)}."
        )
    what = _build_name(cuda)
    near = _nearest(python, shipped)
    other = [b for b in release.builds() if python in release.pythons(b)]
    hint = ""
    if other:
        names = ", ".join("cpu" if b == "cpu" else f"CUDA {b}" for b in other)
        hint = f" Python {python} wheels exist for its {names} build (--cuda)."
    raise UserInputError(
        f"torch {torch} never shipped a wheel for Python {python} ({what}): its wheels are "
        f"for Python {one_of(shipped)}. Nearest: {', '.join(near) or 'none'}.{hint}"
    )


def _standalone_default_os(torch: str, cuda: str, base: str, compat: Compat) -> str | None:
    """Where a standalone Python goes when no OS archive fits: the build's preferred OS,
    judged on glibc alone (the Python does not come from its archive)."""
    fits = [
        o
        for o in compat.os_for(cuda, base)
        if compat.glibc_ok(torch, o) and not (base == "os" and o in compat.os_last_resort)
    ]
    if not fits:
        return None
    if cuda == "cpu":
        return fits[0]
    preferred = [o for o in compat.cuda[cuda].os if o in fits] or fits
    return max(preferred, key=lambda o: Version(split_os(o)[1]))


def _on_os(
    os_name: str,
    python: str | None,
    source: str | None,
    torch: str,
    release: TorchRelease,
    cuda: str,
    base: str,
    compat: Compat,
    *,
    asked: bool,
) -> PythonChoice:
    """The Python on a given OS: its archive's where it has it, else a standalone one."""
    apt = compat.pythons_for(torch, os_name, cuda)
    offered = compat.os_python[os_name]
    by = f"--os {os_name}" if asked else f"{os_name}, the build's default OS"
    if python is None:
        if source != "standalone" and apt:
            python = _default_python(apt, offered)
            why = f"Python {python}: {os_name}'s own (apt), on {by}"
            return PythonChoice(os_name, python, "apt", why + _glibc_note(torch, os_name, compat))
        pbs = compat.python_standalone
        usable = [p for p in release.pythons(cuda) if pbs and p in pbs.pythons]
        newest = max(usable, key=Version, default=None)
        if source != "apt" and newest and compat.standalone_fits(torch, os_name, newest):
            python = newest
            return PythonChoice(
                os_name, python, "standalone", _why_standalone(os_name, python, torch, cuda, compat)
            )
        raise UserInputError(_no_python_on(os_name, torch, release, cuda, compat))
    if source != "standalone" and python in apt:
        why = f"Python {python}: {os_name}'s own archive (apt) has it, on {by}"
        return PythonChoice(os_name, python, "apt", why + _glibc_note(torch, os_name, compat))
    if source != "apt" and compat.standalone_fits(torch, os_name, python):
        return PythonChoice(
            os_name, python, "standalone", _why_standalone(os_name, python, torch, cuda, compat)
        )
    raise UserInputError(_no_source(python, torch, cuda, base, compat, source, os_name))


def _glibc_note(torch: str, os_name: str, compat: Compat) -> str:
    floor = compat.torch[torch].glibc
    have = compat.os_glibc.get(os_name)
    if not (floor and have):
        return "."
    return f"; its glibc {have} meets the wheel's floor (glibc {floor})."


def _why_apt(os_name: str, python: str, torch: str, cuda: str, compat: Compat) -> str:
    return (
        f"Python {python} asked without --os: {os_name} is the preferred OS for torch {torch}'s "
        f"{_build_name(cuda)} whose own archive (apt) has Python {python}"
        + _glibc_note(torch, os_name, compat)
    )


def _why_standalone(os_name: str, python: str, torch: str, cuda: str, compat: Compat) -> str:
    pbs = compat.python_standalone
    assert pbs is not None
    carriers = [o for o in compat.os_python if python in compat.os_python[o]]
    archives = (
        f"archives with it: {', '.join(carriers)}"
        if carriers
        else "no OS archive in compat.yaml carries it"
    )
    return (
        f"Python {python} from python-build-standalone, installed by uv {pbs.uv} into "
        f"/opt/python (offline: UV_PYTHON_INSTALL_MIRROR), on {os_name} ({os_name}'s own "
        f"archive offers {one_of(compat.os_python[os_name])}; {archives})"
        + _glibc_note(torch, os_name, compat)
    )


def _no_python_on(
    os_name: str, torch: str, release: TorchRelease, cuda: str, compat: Compat
) -> str:
    return (
        f"no Python fits torch {torch} on {os_name}: torch {torch} ({cuda} build) supports "
        f"Python {one_of(release.pythons(cuda))}; {os_name} offers "
        f"{one_of(compat.os_python[os_name])}, and python-build-standalone cannot help there "
        f"(it needs glibc >= {compat.python_standalone.glibc if compat.python_standalone else '?'}"
        f"; {os_name} has {compat.os_glibc.get(os_name, 'an unknown glibc')})."
    )


def _no_source(
    python: str,
    torch: str,
    cuda: str,
    base: str,
    compat: Compat,
    source: str | None,
    os_name: str | None = None,
) -> str:
    """A refusal naming every OS that can carry the Python, by which source."""
    choices = compat.os_for(cuda, base)
    apt = [o for o in choices if python in compat.pythons_for(torch, o, cuda)]
    pbs = [o for o in choices if compat.standalone_fits(torch, o, python)]
    standalone = compat.python_standalone
    where = f"on {os_name}" if os_name else "on any OS for this build"
    offered = (
        f" ({os_name}'s archive offers {one_of(compat.os_python[os_name])})" if os_name else ""
    )
    parts = []
    if apt:
        parts.append(f"apt: --os {', '.join(apt)}")
    if pbs and source != "apt":
        parts.append(f"python-build-standalone: --os {', '.join(pbs)}")
    elif pbs:
        parts.append(f"--python-source standalone puts it on {', '.join(pbs)}")
    if standalone and python not in standalone.pythons:
        range_ = f"{standalone.pythons[0]}-{standalone.pythons[-1]}"
        parts.append(f"python-build-standalone (via uv) has Python {range_} only")
    how = "; ".join(parts) or "none"
    return (
        f"Python {python} cannot be had {where} for torch {torch}'s {_build_name(cuda)}"
        f"{offered}. Where it can: {how}."
    )


def _build_name(cuda: str) -> str:
    return "CPU build" if cuda == "cpu" else f"CUDA {cuda} build"


def _os(value: str, torch: str, cuda: str, base: str, compat: Compat) -> str:
    """An OS the user named: one this route can sit on, with glibc for the wheel."""
    choices = compat.os_for(cuda, base)
    os_name = value.strip().lower()
    if os_name not in choices:
        if cuda == "cpu" or base == "os":
            what = "the os route (plain OS images)"
        else:
            what = f"CUDA {cuda} nvidia/cuda images"
        hint = ""
        if base == "nvidia" and os_name in compat.os_base:
            hint = f" --base os puts torch's own CUDA on {os_name}."
        raise UserInputError(
            f"OS '{os_name}' is not available for {what}{did_you_mean(os_name, choices)};"
            f" valid: {one_of(choices)}.{hint}"
        )
    if not compat.glibc_ok(torch, os_name):
        raise UserInputError(
            f"torch {torch} wheels need glibc >= {compat.torch[torch].glibc}; {os_name} has "
            f"glibc {compat.os_glibc.get(os_name)}. Choose a newer OS "
            f"({one_of(o for o in choices if compat.glibc_ok(torch, o))})."
        )
    return os_name


def _horovod_fixes(horovod: str | None, torch: str, python: str, compat: Compat) -> tuple[str, ...]:
    if horovod is None:
        return ()
    hvd = compat.horovod.get(horovod)
    if hvd is None:
        raise UserInputError(
            f"Horovod {horovod} is not in the compatibility data; known: "
            f"{one_of(sorted(compat.horovod, key=Version))}."
        )
    if not hvd.torch.contains(torch, prereleases=True):
        ok = [v for v, h in compat.horovod.items() if h.torch.contains(torch)]
        raise UserInputError(
            f"Horovod {horovod} does not build against torch {torch} (it supports torch "
            f"{hvd.torch}); Horovod versions known to work with torch {torch}: {one_of(ok)}."
        )
    if not hvd.python.contains(python + ".0"):
        raise UserInputError(
            f"Horovod {horovod} does not support Python {python} (it needs {hvd.python})."
        )
    return hvd.fixes_for(torch)


def _torchvision(value: str | None, torch: str, release: TorchRelease) -> str | None:
    if value is None:
        return release.torchvision
    if _none(value) is not None:
        raise UserInputError(
            f"torchvision '{value}' cannot be chosen: it follows torch "
            f"({torch} -> {release.torchvision}). Only 'none' (leave it out) is accepted."
        )
    return None


def _archs(torch: str, cuda: str, compat: Compat) -> tuple[str, ...]:
    """GPU archs compiled into the torch × CUDA build (the CUDA line's list if unrecorded)."""
    if cuda == "cpu":
        return ()
    facts = compat.build_facts(torch, cuda)
    return facts.archs if facts and facts.archs else compat.cuda[cuda].archs


def _extension_archs(
    value: str | None, archs: tuple[str, ...], torch: str, cuda: str, flavor: str
) -> tuple[str, ...]:
    """A devel image's TORCH_CUDA_ARCH_LIST, narrowed to some of the wheel's archs.

    Extensions for an arch torch itself was not compiled for cannot run there ("no kernel
    image is available"), so only the wheel's own archs are accepted.
    """
    if not value or not str(value).strip():
        return ()
    if cuda == "cpu" or flavor != "devel":
        raise UserInputError(
            f"extension_archs '{value}' only applies to CUDA devel images (it sets "
            "TORCH_CUDA_ARCH_LIST for building extensions); leave it out here."
        )
    asked = []
    for item in re.split(r"[\s,;]+", str(value).strip()):
        m = re.fullmatch(r"(?:sm_)?(\d+)\.?(\d)", item.lower())
        name = f"sm_{m.group(1)}{m.group(2)}" if m else item
        if name not in archs:
            raise UserInputError(
                f"GPU arch '{item}' is not in torch {torch}'s CUDA {cuda} wheels, so an "
                f"extension built for it could not run there. The wheels carry: "
                f"{one_of(archs)}; or choose another CUDA build."
            )
        asked.append(name)
    return tuple(dict.fromkeys(asked))


def _cuda_toolkit(torch: str, cuda: str, facts: BuildFacts | None) -> str:
    toolkit = facts.cuda_toolkit if facts else None
    if toolkit is None:
        raise UserInputError(
            f"torch {torch}'s CUDA {cuda} build has no recorded cuda-toolkit version, so a "
            f"compiler matching it cannot be pinned on the os route. Use --base nvidia, or add "
            f"`cuda_toolkit` for {torch} to the compatibility data (from the wheel's METADATA)."
        )
    return toolkit


def _budget(value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise UserInputError(
            f"size_budget_mb must be a positive whole number of MB, not {value!r}."
        )
    return value
