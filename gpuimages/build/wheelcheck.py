"""Before a build: does every pinned wheel of a variant exist on the index or wheelhouse?

Pure logic over file names (PEP 503 page or a directory listing); `missing_wheels` is the
hook a build calls, `refuse_missing` turns its answer into the user-facing refusal.
"""

from __future__ import annotations

from pathlib import Path

from gpuimages.core.errors import UserInputError
from gpuimages.facts.compatsync import fetch_text, parse_simple_page, parse_wheel_name
from gpuimages.facts.variant import Variant


def _pinned(variant: Variant) -> list[tuple[str, str]]:
    """(project, version with local tag) of the torch family the variant pins."""
    out = []
    for line in variant.pip_pins:
        project, _, version = line.partition("==")
        if project in ("torch", "torchvision", "torchaudio"):
            out.append((project, version))
    return out


def _names(source: str, project: str) -> list[str]:
    path = (
        Path(source.removeprefix("file://"))
        if "://" not in source or source.startswith("file://")
        else None
    )
    if path is not None and path.is_dir() and not (path / project).is_dir():
        return [p.name for p in path.iterdir()]  # a flat wheelhouse
    return parse_simple_page(fetch_text(f"{source.rstrip('/')}/{project}/"))


def missing_wheels(variant: Variant, source: str) -> list[str]:
    """The pinned wheels (torch, torchvision, torchaudio) with no file for the variant's
    Python on linux x86_64 in `source` (an index URL, file:// URL or wheelhouse dir)."""
    missing = []
    # The build is the variant's, whether the pin names it (+cu124) or not (PyPI's own
    # wheel of that build carries no local tag): a wheel without one is accepted too.
    build = variant.cuda
    what = "CPU" if variant.is_cpu else f"CUDA {variant.cuda}"
    for project, version in _pinned(variant):
        want = version.partition("+")[0]
        found = False
        for name in _names(source, project):
            w = parse_wheel_name(name)
            if w is None or w.project != project or "x86_64" not in w.platform:
                continue
            if w.version == want and w.python == variant.python and w.build in (build, None):
                found = True
                break
        if not found:
            missing.append(
                f"{project}=={version} ({what} build, Python {variant.python}, linux x86_64)"
            )
    return missing


def missing_standalone(variant: Variant, wheelhouse: Path) -> list[str]:
    """What an offline build of a standalone-Python variant needs besides the wheels: the
    pinned uv's wheel and a python-build-standalone archive of the variant's Python."""
    if variant.python_source != "standalone":
        return []
    names = [p.name for p in wheelhouse.iterdir()] if wheelhouse.is_dir() else []
    missing = []
    if not any(n.startswith(f"uv-{variant.uv}-") and n.endswith(".whl") for n in names):
        missing.append(f"uv=={variant.uv} (`invoke wheelhouse` downloads it)")
    archive = f"cpython-{variant.python}."
    if not any(
        n.startswith(archive) and "x86_64-unknown-linux-gnu-install_only" in n for n in names
    ):
        missing.append(
            f"a python-build-standalone archive {archive}*-x86_64-unknown-linux-gnu-"
            "install_only*.tar.gz (copy it from your mirror of its releases, see docs/python.md)"
        )
    return missing


def refuse_missing(variant: Variant, source: str) -> None:
    missing = missing_wheels(variant, source)
    if "://" not in source:
        missing += missing_standalone(variant, Path(source))
    if missing:
        raise UserInputError(
            f"{variant.name}: {source} has no wheel for {', '.join(missing)}; nothing was "
            "built. Add the wheels to the wheelhouse (pip download) or point at an index "
            "that has them."
        )
