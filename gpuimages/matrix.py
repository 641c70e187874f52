"""matrix.yaml -> validated, ordered `Variant` values.

Shape (see the shipped matrix.yaml for a commented example):

    repository: gpuimages/pytorch      # image repository (tag = repository:variant-name)
    registry: null                     # HOST[:PORT][/NAMESPACE] used by publish
    defaults: {flavor: runtime}        # filled into every entry that leaves a key out
    axes:                              # groups; each is a cross product of its lists
      - {torch: 1.12.0, cuda: [10.2, 11.3, 11.6], flavor: [runtime, devel]}
    exclude: [{cuda: 10.2, flavor: devel}]   # drop expanded entries matching all keys
    include: [{torch: 1.12.0, cuda: 11.3, horovod: 0.28.1}]   # add single entries
    sources: {pip_index_url: ..., wheelhouse: ..., ca_bundle: ..., apt_mirror: ...}
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuimages.compat import Compat, load_compat
from gpuimages.errors import UserInputError, did_you_mean, one_of
from gpuimages.options import AXES as AXIS_HELP
from gpuimages.paths import MATRIX
from gpuimages.registry import Registry
from gpuimages.sources import SOURCE_KEYS, PackageSources
from gpuimages.variant import Variant, VariantRequest, normalize_cuda, resolve
from gpuimages.yamlio import load_yaml

log = logging.getLogger(__name__)

TOP_KEYS = ("repository", "registry", "defaults", "axes", "include", "exclude", "sources")
AXES = tuple(AXIS_HELP)
SETTINGS = ("torchvision", "size_budget_mb", "extension_archs")  # per entry, never crossed
ENTRY_KEYS = AXES + SETTINGS
DEFAULT_REPOSITORY = "gpuimages/pytorch"


@dataclass(frozen=True)
class Matrix:
    path: Path
    repository: str
    registry: Registry | None
    variants: tuple[Variant, ...]
    sources: PackageSources = field(default_factory=PackageSources)

    def by_name(self) -> dict[str, Variant]:
        return {v.name: v for v in self.variants}


def _scalar(value: Any) -> str | None:
    return None if value is None else str(value)


def _check_keys(where: str, mapping: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise UserInputError(f"{where}: expected a mapping of keys to values, got {mapping!r}.")
    for key in mapping:
        if key not in allowed:
            raise UserInputError(
                f"{where}: unknown key '{key}'{did_you_mean(str(key), allowed)}. "
                f"Valid keys: {one_of(allowed)}."
            )
    return mapping


def _expand(where: str, group: dict[str, Any]) -> list[dict[str, Any]]:
    """Cross product of the list-valued axes of one group; settings stay scalar."""
    axes: list[tuple[str, list[Any]]] = []
    for key, value in group.items():
        if key in SETTINGS:
            if isinstance(value, list):
                raise UserInputError(f"{where}: '{key}' is a setting, not an axis: give one value.")
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            raise UserInputError(f"{where}: axis '{key}' is an empty list.")
        axes.append((key, values))
    settings = {k: v for k, v in group.items() if k in SETTINGS}
    return [
        {**dict(zip([k for k, _ in axes], combo, strict=True)), **settings}
        for combo in itertools.product(*[vals for _, vals in axes])
    ]


def _norm(key: str, value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return normalize_cuda(text) if key == "cuda" else text.lower()


def _matches(rule: dict[str, Any], entry: dict[str, Any]) -> bool:
    return all(_norm(k, entry.get(k)) == _norm(k, v) for k, v in rule.items())


def _request(where: str, entry: dict[str, Any]) -> VariantRequest:
    for required in ("torch", "cuda"):
        if entry.get(required) is None:
            raise UserInputError(f"{where}: '{required}' is missing (set it here or in defaults).")
    budget = entry.get("size_budget_mb")
    return VariantRequest(
        **{axis: _scalar(entry.get(axis)) for axis in AXES},  # type: ignore[arg-type]
        torchvision=_scalar(entry.get("torchvision")),
        size_budget_mb=budget,
        extension_archs=_scalar(entry.get("extension_archs")),
    )


def parse_matrix(raw: Any, path: Path, compat: Compat) -> Matrix:
    raw = {} if raw is None else raw
    top = _check_keys(str(path), raw, TOP_KEYS)
    repository = str(top.get("repository") or DEFAULT_REPOSITORY)
    defaults = _check_keys(f"{path}: defaults", top.get("defaults") or {}, ENTRY_KEYS)
    sources = _check_keys(f"{path}: sources", top.get("sources") or {}, SOURCE_KEYS)

    entries: list[tuple[str, dict[str, Any]]] = []
    for key in ("axes", "include", "exclude"):
        if not isinstance(top.get(key) or [], list):
            raise UserInputError(f"{path}: '{key}' must be a list of mappings.")
    for i, group in enumerate(top.get("axes") or []):
        where = f"{path}: axes[{i}]"
        _check_keys(where, group, ENTRY_KEYS)
        entries += [(where, e) for e in _expand(where, group)]

    rules = [
        _check_keys(f"{path}: exclude[{i}]", r, ENTRY_KEYS)
        for i, r in enumerate(top.get("exclude") or [])
    ]
    kept = [(w, e) for w, e in entries if not any(_matches(r, {**defaults, **e}) for r in rules)]
    for i, rule in enumerate(rules):
        if not any(_matches(rule, {**defaults, **e}) for _, e in entries):
            log.warning("%s: exclude[%d] %s matches no entry", path, i, rule)

    for i, extra in enumerate(top.get("include") or []):
        where = f"{path}: include[{i}]"
        _check_keys(where, extra, ENTRY_KEYS)
        if any(isinstance(v, list) for v in extra.values()):
            raise UserInputError(f"{where}: include entries take single values, not lists.")
        kept.append((where, extra))

    variants: list[Variant] = []
    seen: dict[str, str] = {}
    for where, entry in kept:
        try:
            variant = resolve(_request(where, {**defaults, **entry}), compat, repository)
        except UserInputError as exc:
            if str(exc).startswith(where):
                raise
            raise UserInputError(f"{where}: {exc}") from None
        if variant.name in seen:
            raise UserInputError(
                f"{where}: duplicate variant {variant.name}: {seen[variant.name]} already "
                "defines it. Each variant must appear once (tags would collide); remove one "
                "or tell them apart by flavor, CUDA or Horovod."
            )
        seen[variant.name] = where
        variants.append(variant)

    registry = top.get("registry")
    try:
        parsed = None if registry is None else Registry.parse(str(registry))
    except UserInputError as exc:
        raise UserInputError(f"{path}: registry: {exc}") from None
    return Matrix(
        path=path,
        repository=repository,
        registry=parsed,
        variants=tuple(variants),
        sources=PackageSources.parse(sources, f"{path}: sources"),
    )


def load_matrix(path: Path | str = MATRIX, compat: Compat | None = None) -> Matrix:
    path = Path(path)
    return parse_matrix(load_yaml(path), path, compat or load_compat())
