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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuimages.core.errors import UserInputError, did_you_mean, one_of
from gpuimages.core.options import AXES as AXIS_HELP
from gpuimages.core.paths import MATRIX
from gpuimages.core.reference import check_axis_value, check_repository, shown
from gpuimages.core.yamlio import load_yaml
from gpuimages.facts.compat import Compat, load_compat
from gpuimages.facts.registry_address import Registry
from gpuimages.facts.sources import SOURCE_KEYS, PackageSources
from gpuimages.facts.variant import Variant, VariantRequest, normalize_cuda, resolve

log = logging.getLogger(__name__)

TOP_KEYS = ("repository", "registry", "defaults", "axes", "include", "exclude", "sources")
AXES = tuple(AXIS_HELP)
SETTINGS = ("torchvision", "size_budget_mb", "extension_archs")  # per entry, never crossed
ENTRY_KEYS = AXES + SETTINGS
DEFAULT_REPOSITORY = "gpuimages/pytorch"
MAX_VARIANTS = 1000  # expanded entries a matrix may hold: refused above, before expanding


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
        raise UserInputError(
            f"{where}: expected a mapping of keys to values, got {shown(mapping)}."
        )
    for key in mapping:
        if key not in allowed:
            raise UserInputError(
                f"{where}: unknown key {shown(key)}{did_you_mean(str(key)[:100], allowed)}. "
                f"Valid keys: {one_of(allowed)}."
            )
    return mapping


def _check_values(where: str, entry: dict[str, Any], *, lists: bool) -> None:
    """Every value of an entry checked on its own, before anything is crossed or echoed."""
    for key, value in entry.items():
        if key in SETTINGS:
            if isinstance(value, list):
                raise UserInputError(f"{where}: '{key}' is a setting, not an axis: give one value.")
            if value is not None:
                check_axis_value(key, value, where)
            continue
        if isinstance(value, list):
            if not lists:
                raise UserInputError(f"{where}: include entries take single values, not lists.")
            if not value:
                raise UserInputError(f"{where}: axis '{key}' is an empty list.")
            if len(value) > MAX_VARIANTS:
                raise UserInputError(
                    f"{where}: axis '{key}' lists {len(value)} values (at most {MAX_VARIANTS})."
                )
            items = value
        else:
            items = [value]
        for item in items:
            if item is not None:
                check_axis_value(key, item, where)


def _expand(where: str, group: dict[str, Any]) -> list[dict[str, Any]]:
    """Cross product of the list-valued axes of one group; settings stay scalar."""
    _check_values(where, group, lists=True)
    axes: list[tuple[str, list[Any]]] = []
    for key, value in group.items():
        if key in SETTINGS:
            continue
        axes.append((key, value if isinstance(value, list) else [value]))
    size = math.prod(len(values) for _, values in axes)
    if size > MAX_VARIANTS:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in axes if len(v) > 1)
        raise UserInputError(
            f"{where} expands to {size} combinations ({sizes}), more than the {MAX_VARIANTS} "
            "a matrix may hold: split it into smaller axes groups, or list single entries "
            "under include."
        )
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


class _Excluder:
    """The exclude rules, grouped by the keys they name: an entry is looked up once per
    group (a set lookup), not compared with every rule."""

    def __init__(self, rules: list[dict[str, Any]]) -> None:
        self.groups: dict[tuple[str, ...], dict[tuple[str | None, ...], list[int]]] = {}
        for i, rule in enumerate(rules):
            keys = tuple(sorted(rule))
            values = tuple(_norm(k, rule[k]) for k in keys)
            self.groups.setdefault(keys, {}).setdefault(values, []).append(i)
        self.used: set[int] = set()

    def excludes(self, entry: dict[str, Any]) -> bool:
        hit = False
        for keys, table in self.groups.items():
            found = table.get(tuple(_norm(k, entry.get(k)) for k in keys))
            if found:
                self.used.update(found)
                hit = True
        return hit


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
    repository = check_repository(
        top.get("repository") or DEFAULT_REPOSITORY, f"{path}: repository"
    )
    defaults = _check_keys(f"{path}: defaults", top.get("defaults") or {}, ENTRY_KEYS)
    sources = _check_keys(f"{path}: sources", top.get("sources") or {}, SOURCE_KEYS)

    entries: list[tuple[str, dict[str, Any]]] = []
    for key in ("axes", "include", "exclude"):
        if not isinstance(top.get(key) or [], list):
            raise UserInputError(f"{path}: '{key}' must be a list of mappings.")
    _check_values(f"{path}: defaults", defaults, lists=False)
    for i, group in enumerate(top.get("axes") or []):
        where = f"{path}: axes[{i}]"
        _check_keys(where, group, ENTRY_KEYS)
        entries += [(where, e) for e in _expand(where, group)]
        if len(entries) > MAX_VARIANTS:
            raise UserInputError(
                f"{path}: the axes groups expand to more than the {MAX_VARIANTS} entries a "
                "matrix may hold."
            )

    rules = []
    for i, rule in enumerate(top.get("exclude") or []):
        _check_keys(f"{path}: exclude[{i}]", rule, ENTRY_KEYS)
        _check_values(f"{path}: exclude[{i}]", rule, lists=False)
        rules.append(rule)
    excluder = _Excluder(rules)
    kept = [(w, e) for w, e in entries if not excluder.excludes({**defaults, **e})]
    for i, rule in enumerate(rules):
        if i not in excluder.used:
            log.warning("%s: exclude[%d] %s matches no entry", path, i, rule)

    for i, extra in enumerate(top.get("include") or []):
        where = f"{path}: include[{i}]"
        _check_keys(where, extra, ENTRY_KEYS)
        _check_values(where, extra, lists=False)
        kept.append((where, extra))
    if len(kept) > MAX_VARIANTS:
        raise UserInputError(
            f"{path} holds {len(kept)} entries, more than the {MAX_VARIANTS} a matrix may hold."
        )

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

    if not variants:
        removed = len(entries)
        raise UserInputError(
            f"{path} gives no variant to build: its {len(top.get('axes') or [])} axes group(s) "
            f"expand to {removed} entr{'y' if removed == 1 else 'ies'}"
            + (", all removed by exclude," if removed else ",")
            + " and include adds none. Add an axes group or an include entry, for example "
            "`include: [{torch: 2.13.0, cuda: cpu}]` (`invoke check --torch T --cuda C` says "
            "which combinations exist)."
        )

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
