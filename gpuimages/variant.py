"""`Variant`: the one value every step takes, and how a request becomes one.

A `VariantRequest` is what a user or a matrix entry asked for (anything may be missing
but torch and cuda); `resolve()` checks it against the compatibility data, fills the
defaults, and returns an immutable `Variant` with everything later steps need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from packaging.version import InvalidVersion, Version

from gpuimages.compat import Compat
from gpuimages.errors import UserInputError, did_you_mean, one_of

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
    size_budget_mb: int | None = None

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
        pins = [f"torch=={self.torch}+{self.wheel_tag}"]
        if self.torchvision:
            pins.append(f"torchvision=={self.torchvision}+{self.wheel_tag}")
        if self.torchaudio:
            pins.append(f"torchaudio=={self.torchaudio}+{self.wheel_tag}")
        if self.numpy:
            pins.append(f"numpy=={self.numpy}")
        return tuple(pins)

    @property
    def requirements(self) -> tuple[str, ...]:
        """Everything pip installs into the venv before Horovod (if any) is compiled."""
        return self.pip_pins + self.horovod_build_requires

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
            "flavor": self.flavor,
            "python": self.python,
            "os": self.os,
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
            "os": self.os,
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


def build_cudnn(compat: Compat, torch: str, cuda: str, asked: str | None) -> str:
    """The cuDNN major of the torch x CUDA build; `asked` must match it."""
    facts = compat.build_facts(torch, cuda)
    shipped = facts.cudnn_major if facts else None
    if shipped is None:
        raise UserInputError(
            f"compat.yaml has no cuDNN for the torch {torch} CUDA {cuda} build (build_facts); "
            "add it with a source."
        )
    if asked is not None and asked != shipped:
        exact = f" ({facts.cudnn})" if facts and facts.cudnn != shipped else ""
        raise UserInputError(
            f"torch {torch} was built against cuDNN {shipped}, not cuDNN {asked}: its CUDA "
            f"{cuda} wheels ship cuDNN {shipped}{exact}. Use --cudnn {shipped} or leave it out."
        )
    return shipped


def refuse_deleted_base(compat: Compat, cuda: str, route: str | None) -> None:
    """The nvidia route needs nvidia/cuda tags: refuse a CUDA line whose tags were deleted."""
    rel = compat.cuda.get(cuda)
    if route == "nvidia" and rel is not None and rel.tags_deleted:
        raise UserInputError(
            f"CUDA {cuda} is end-of-life and its nvidia/cuda tags were deleted from Docker Hub, "
            "so the nvidia base route cannot build it. Use the os route (a plain OS image; the "
            "torch wheel brings its own CUDA) or a newer CUDA."
        )


def choose_os(compat: Compat, torch: str, cuda: str, python: str | None) -> str | None:
    """The OS a request without --os gets: one that has the asked Python, if any was asked."""
    return compat.default_os(torch, cuda, python) or compat.default_os(torch, cuda)


def build_archs(compat: Compat, torch: str, cuda: str) -> tuple[str, ...]:
    """GPU archs compiled into the torch x CUDA build (the CUDA line's list if unrecorded)."""
    if cuda == "cpu":
        return ()
    facts = compat.build_facts(torch, cuda)
    if facts and facts.archs:
        return facts.archs
    return compat.cuda[cuda].archs


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


def resolve(req: VariantRequest, compat: Compat, repository: str = "gpuimages/pytorch") -> Variant:
    """Check a request against the compatibility data and fill in every default."""
    torch = str(req.torch).strip()
    release = compat.torch.get(torch)
    if release is None:
        known = sorted(compat.torch, key=Version)
        near = ", ".join(_nearest(torch, known))
        raise UserInputError(
            f"torch {torch} is not in the compatibility data. Nearest known releases: {near}. "
            f"All known: {one_of(known)}."
        )

    cuda = normalize_cuda(req.cuda)
    builds = release.builds()
    if cuda not in builds:
        gpu = ", ".join(release.cuda) or "none"
        cpu_note = " and a CPU build (--cuda cpu)" if release.cpu else ""
        near = ""
        if cuda != "cpu" and release.cuda:
            near = f" Nearest: {', '.join(_nearest(cuda, release.cuda))}."
        raise UserInputError(
            f"torch {torch} has no build for CUDA {cuda}: torch {torch} has CUDA wheels for "
            f"{gpu}{cpu_note}.{near}"
        )
    cuda_rel = None if cuda == "cpu" else compat.cuda.get(cuda)
    if cuda != "cpu" and cuda_rel is None:
        raise UserInputError(
            f"CUDA {cuda} is not in the compatibility data's CUDA table (known: "
            f"{one_of(compat.cuda)}); add its base images and driver minimum with a source."
        )

    cudnn = _none(req.cudnn)
    if cudnn is not None:
        cudnn = cudnn.lower().removeprefix("cudnn")
    if cuda_rel is None:
        if cudnn is not None:
            raise UserInputError(
                f"cuDNN {cudnn} was asked for a CPU build of torch {torch}; CPU variants have "
                "no cuDNN: leave --cudnn out."
            )
    else:
        cudnn = build_cudnn(compat, torch, cuda, cudnn)
        refuse_deleted_base(compat, cuda, getattr(req, "base", None))

    flavor = (req.flavor or "runtime").strip().lower()
    if flavor not in FLAVORS:
        raise UserInputError(
            f"flavor '{flavor}' is not valid{did_you_mean(flavor, FLAVORS)}; "
            f"valid flavors: {one_of(FLAVORS)}."
        )

    os_choices = compat.os_for_cuda(cuda)
    asked_python = (req.python or "").strip() or None
    os_name = (req.os or "").strip().lower() or choose_os(compat, torch, cuda, asked_python)
    if os_name is None:
        raise UserInputError(
            f"no OS in compat.yaml offers a Python that the torch {torch} {cuda} build has "
            f"wheels for (it has {one_of(release.pythons(cuda))}; "
            f"OS choices for it: {one_of(os_choices)})."
        )
    if os_name not in os_choices:
        what = "CPU variants" if cuda == "cpu" else f"CUDA {cuda} base images"
        raise UserInputError(
            f"OS '{os_name}' is not available for {what}{did_you_mean(os_name or '', os_choices)};"
            f" valid: {one_of(os_choices)}."
        )
    if not compat.glibc_ok(torch, os_name):
        raise UserInputError(
            f"torch {torch} wheels need glibc >= {release.glibc}; {os_name} has glibc "
            f"{compat.os_glibc.get(os_name)}. Choose a newer OS "
            f"({one_of(o for o in os_choices if compat.glibc_ok(torch, o))})."
        )
    pythons = compat.pythons_for(torch, os_name, cuda)
    python = asked_python or _default_python(pythons, compat.os_python[os_name])
    if python not in pythons:
        offered = compat.os_python[os_name]
        other_os = [o for o in os_choices if python in compat.pythons_for(torch, o, cuda)]
        hint = f" Python {python} is available with --os {', '.join(other_os)}." if other_os else ""
        raise UserInputError(
            f"Python '{python}' does not fit torch {torch} on {os_name}: torch {torch} ({cuda} "
            f"build) supports Python {one_of(release.pythons(cuda))}; {os_name} "
            f"offers {one_of(offered)}; usable here: {one_of(pythons)}.{hint}"
        )

    horovod = _none(req.horovod)
    fixes: tuple[str, ...] = ()
    if horovod is not None:
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
        fixes = hvd.fixes_for(torch)

    torchvision = release.torchvision
    if req.torchvision is not None:
        if _none(req.torchvision) is not None:
            raise UserInputError(
                f"torchvision '{req.torchvision}' cannot be chosen: it follows torch "
                f"({torch} -> {release.torchvision}). Only 'none' (leave it out) is accepted."
            )
        torchvision = None
    torchaudio = release.torchaudio if torchvision else None

    if cuda_rel is None:
        base_image = compat.cpu_base[os_name][flavor]
        builder_image = base_image
    else:
        assert cudnn is not None
        base_image = cuda_rel.base_image(cudnn, flavor, os_name)
        # Horovod's NCCL operations compile with nvcc and NCCL headers: CUDA devel only.
        builder_image = cuda_rel.base_image(cudnn, "devel", os_name) if horovod else base_image

    budget = req.size_budget_mb
    if budget is not None and (not isinstance(budget, int) or budget <= 0):
        raise UserInputError(
            f"size_budget_mb must be a positive whole number of MB, not {budget!r}."
        )

    return Variant(
        torch=torch,
        cuda=cuda,
        cudnn=cudnn if cuda_rel else None,
        flavor=flavor,
        python=python,
        os=os_name,
        horovod=horovod,
        repository=repository,
        cuda_full=cuda_rel.full if cuda_rel else None,
        base_image=base_image,
        builder_image=builder_image,
        torchvision=torchvision,
        torchaudio=torchaudio,
        numpy=compat.numpy_for(torch, python),
        index_url=f"{compat.wheel_index}/{wheel_tag(cuda)}",
        min_driver=cuda_rel.min_driver if cuda_rel else None,
        minor_compat_driver=cuda_rel.minor_compat_driver if cuda_rel else None,
        archs=build_archs(compat, torch, cuda),
        eol=cuda_rel.eol if cuda_rel else False,
        horovod_fixes=fixes,
        mpi_packages=compat.os_mpi_runtime[os_name] if horovod else (),
        horovod_build_requires=compat.horovod[horovod].build_requires if horovod else (),
        size_budget_mb=budget,
    )
