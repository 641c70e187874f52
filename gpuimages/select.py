"""Which variants a command acts on: one rule set shared by check, build, smoke, publish."""

from __future__ import annotations

import logging

from gpuimages.compat import Compat
from gpuimages.errors import UserInputError, did_you_mean
from gpuimages.matrix import Matrix
from gpuimages.variant import Variant, VariantRequest, resolve

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
    if variant.name in by_name:
        return (by_name[variant.name],)
    return (variant,)
