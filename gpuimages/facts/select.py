"""Which variants a command acts on: one rule set shared by check, build, smoke, publish.

`Selection` is what the options of a selecting task say (`--all`, `--variant NAME...`,
or the axes `--torch/--cuda/...`, and `--matrix`), parsed once by `from_options`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import Version

from gpuimages.core.errors import UserInputError, did_you_mean
from gpuimages.core.options import AXES
from gpuimages.core.paths import MATRIX
from gpuimages.core.reference import check_axis_value, check_tag
from gpuimages.facts.compat import Compat, load_compat
from gpuimages.facts.matrix import DEFAULT_REPOSITORY, Matrix, load_matrix
from gpuimages.facts.variant import Variant, VariantRequest, normalize_python, resolve

log = logging.getLogger(__name__)


def check(request: VariantRequest, compat: Compat, repository: str) -> Variant:
    """Resolve any combination the compatibility data knows, in the matrix or not."""
    variant = resolve(request, compat, repository)
    for warning in warnings_for(variant, compat):
        log.warning("%s", warning)
    return variant


def warnings_for(variant: Variant, compat: Compat | None = None) -> list[str]:
    out = []
    if variant.horovod and compat and variant.horovod in compat.horovod:
        note = compat.horovod[variant.horovod].support_note(variant.torch)
        if note:
            out.append(note)
    if variant.base == "nvidia":
        measured = compat.cuda[variant.cuda].duplicate_gb if compat else None
        size = (
            f"about {measured:.1f} GB for CUDA {variant.cuda} (measured)"
            if measured
            else "several GB (not measured for this CUDA)"
        )
        out.append(
            f"base nvidia: torch {variant.torch}'s wheels bring their own CUDA libraries and "
            f"only those are loaded, so the base image's cuBLAS/cuDNN/NCCL... are a second "
            f"copy: {size}; the smoke suite's cuda check reports the exact bytes. --base os "
            "leaves them out."
        )
    if variant.eol and variant.base == "nvidia":
        out.append(
            f"CUDA {variant.cuda} images ({variant.base_image}) are end-of-life at NVIDIA: "
            "they get no fixes and may vanish from registries; mirror the base image."
        )
    elif variant.eol:
        out.append(
            f"CUDA {variant.cuda} is end-of-life at NVIDIA: the CUDA inside torch "
            f"{variant.torch}'s wheels gets no fixes; prefer a newer CUDA where you can."
        )
    return out


def select(
    matrix: Matrix,
    compat: Compat,
    *,
    all_variants: bool = False,
    names: tuple[str, ...] = (),
    request: VariantRequest | None = None,
) -> tuple[Variant, ...]:
    """--all, --variant NAME..., or --torch/--cuda/... resolved like `check`.

    A request that resolves to a variant of the matrix takes the matrix's entry, so its
    settings (size budget, torchvision) apply; anything else is built as `check` says.
    """
    chosen = sum(bool(x) for x in (all_variants, names, request))
    if chosen != 1:
        raise UserInputError(
            "Say which images: --all (the whole matrix), --variant NAME (from `invoke matrix`),"
            " or --torch VERSION --cuda VERSION|cpu [--cudnn/--flavor/--python/--horovod]."
        )
    if all_variants:
        return matrix.variants
    by_name = matrix.by_name()
    if names:
        missing = [n for n in names if n not in by_name]
        if missing:
            bad = missing[0]
            raise UserInputError(
                f"variant '{bad}' is not in {matrix.path}{did_you_mean(bad, by_name)}. "
                "`invoke matrix` lists the variants."
            )
        return tuple(by_name[n] for n in names)
    assert request is not None
    variant = check(request, compat, matrix.repository)
    entry = by_name.get(variant.name)
    if entry is None:
        return (variant,)
    _refuse_other_image(request, variant, entry, matrix)
    return (entry,)


def _refuse_other_image(
    request: VariantRequest, variant: Variant, entry: Variant, matrix: Matrix
) -> None:
    """The matrix entry of the same name stands in for a request only where it is what the
    user asked: tags do not carry Python, OS or route, so an entry on another Python would
    silently replace the asked one (and its committed Dockerfile would install that)."""
    asked = {k: getattr(request, k) for k in ("python", "os", "python_source", "base")}
    differs = [
        f"{k} {getattr(entry, k)} there, {getattr(variant, k)} asked"
        for k, v in asked.items()
        if v and getattr(entry, k) != getattr(variant, k)
    ]
    if differs:
        raise UserInputError(
            f"{variant.name} in {matrix.path} is another image than the one asked for "
            f"({'; '.join(differs)}), and both would get the tag {variant.tag}: tags do not "
            f"carry Python, OS or route. Change that entry in {matrix.path}, or build from a "
            "matrix of its own in a folder of its own (`invoke render --matrix FILE` writes "
            "./dockerfiles, which `invoke build --matrix FILE --all` builds)."
        )


@dataclass(frozen=True)
class Selection:
    """The variants a task was asked for, as its options said it."""

    axes: Mapping[str, str | None] = field(default_factory=dict)  # axis -> value or None
    names: tuple[str, ...] = ()  # --variant NAME (repeatable)
    all: bool = False
    matrix: Path = MATRIX
    everything_by_default: bool = False  # doctor: no choice means the whole matrix

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], *, everything_by_default: bool = False
    ) -> Selection:
        """From a task's keyword options: the axes, `variant`, `all` and `matrix`."""
        variant = options.get("variant")
        names = tuple(variant) if isinstance(variant, (list, tuple)) else (variant,) * bool(variant)
        for name in names:
            check_tag(name, "--variant")
        return cls(
            axes={
                a: (None if options.get(a) is None else check_axis_value(f"--{a}", options[a]))
                for a in AXES
            },
            names=names,
            all=bool(options.get("all")),
            matrix=Path(options.get("matrix") or MATRIX),
            everything_by_default=everything_by_default,
        )

    @property
    def chosen(self) -> bool:
        """Whether any variant was named or any axis given."""
        return bool(self.names) or any(self.axes.values())

    def request(self, compat: Compat | None = None) -> VariantRequest | None:
        """The axes as a VariantRequest; None when no axis was given at all."""
        given = {a: v for a, v in self.axes.items() if v}
        if not given:
            return None
        for required in ("torch", "cuda"):
            if required not in given:
                raise UserInputError(
                    f"--{required} is required with the other variant options (e.g. --torch "
                    "1.12.0 --cuda 11.3, or --cuda cpu)." + _builds_hint(given, compat)
                )
        return VariantRequest(**given)

    def load(self, compat: Compat | None = None) -> Matrix:
        return load_matrix(self.matrix, compat)

    def variants(self, compat: Compat | None = None) -> tuple[Matrix, tuple[Variant, ...]]:
        """The matrix and the variants chosen from it (see `select`)."""
        compat = compat or load_compat()
        matrix = self.load(compat)
        everything = self.all or (self.everything_by_default and not self.chosen)
        request = self.request(compat)
        return matrix, select(
            matrix, compat, all_variants=everything, names=self.names, request=request
        )

    def checked(self, compat: Compat | None = None) -> Variant:
        """`invoke check`: any combination the data knows, the matrix's repository if any."""
        compat = compat or load_compat()
        request = self.request(compat)
        if request is None:
            raise UserInputError("give at least --torch and --cuda (see `invoke --help check`).")
        exists = self.matrix.exists()
        repository = self.load(compat).repository if exists else DEFAULT_REPOSITORY
        return check(request, compat, repository)


def _builds_hint(given: Mapping[str, str | None], compat: Compat | None) -> str:
    """For --torch without --cuda: the release's builds, and which ship an asked Python."""
    release = compat.torch.get(str(given.get("torch"))) if compat and "torch" in given else None
    if release is None:
        return ""
    torch = release.version
    python = normalize_python(str(given["python"])) if given.get("python") else None
    if not python:
        return f" torch {torch} has builds for: {', '.join(release.builds())}."
    with_it = [b for b in release.builds() if python in release.pythons(b)]
    if with_it:
        return f" torch {torch} has Python {python} wheels for --cuda {', '.join(with_it)}."
    shipped = sorted({p for b in release.builds() for p in release.pythons(b)}, key=Version)
    return (
        f" And torch {torch} never shipped a wheel for Python {python} in any build: its "
        f"wheels are for Python {', '.join(shipped)}."
    )
