"""Move gpuimages' flat modules into stage packages and rewrite every reference to them.

The one table below (old module -> new module) is the whole move. Run it on a tree that
still has flat modules (or new files written against the flat names) and it `git mv`s
what is left to move and rewrites imports, mock.patch strings and `gpuimages/X.py` paths
in the tracked and new .py/.md/.toml/.yml/.yaml/.txt/.sh files. A second run changes
nothing: names already in the new layout are left alone.

    python tools/relayer.py            # move + rewrite the working tree
    python tools/relayer.py --check    # exit 1 and list the files that still need it
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The layers, lowest first: a module imports only from its own layer or one below.
# `cli` and `console` stay at the package root: the top layer, used by tasks.py and nox.
STAGES: dict[str, tuple[str, ...]] = {
    "core": ("errors", "paths", "runner", "yamlio", "reference", "progress", "options"),
    "facts": ("compat", "compatsync", "variant", "sources", "matrix", "select"),
    "build": (
        "render",
        "startup",
        "wheelhouse",
        "wheelcheck",
        "engine",
        "build",
        "buildcache",
        "tagging",
    ),
    "vet": ("container", "smoke", "smoke_report", "evidence"),
    "release": (
        "registry",
        "publish",
        "promote",
        "imagecopy",
        "manifest",
        "sbom",
        "catalog",
        "release",
    ),
    "host": ("doctor", "launch", "resolve"),
}
# A module named like its stage package gets a name of its own inside it.
RENAMED = {"build": "image", "release": "cut"}

MOVES: dict[str, str] = {
    f"gpuimages.{old}": f"gpuimages.{stage}.{RENAMED.get(old, old)}"
    for stage, olds in STAGES.items()
    for old in olds
}
# Modules born in the new layout (split out of moved ones): never read as old names.
ADDED = (
    "gpuimages.facts.registry_address",
    "gpuimages.facts.support",
    "gpuimages.vet.contents",
    "gpuimages.release.markdown",
)
NEW = set(MOVES.values()) | set(ADDED)
PACKAGES = {f"gpuimages.{stage}" for stage in STAGES}

# Names that left their module after the move (old home -> new home), for import lines.
SYMBOLS: dict[tuple[str, str], str] = {
    **{
        ("gpuimages.release.registry", name): "gpuimages.facts.registry_address"
        for name in ("Registry", "is_loopback", "split_ref", "repository_path", "LOOPBACK_HOSTS")
    },
    **{
        ("gpuimages.release.manifest", name): "gpuimages.vet.contents"
        for name in (
            "ABSENT",
            "VERSION_KEYS",
            "KEY_PACKAGES",
            "CAPTURE_TIMEOUT_S",
            "SECTION",
            "CAPTURE_SCRIPT",
            "ImageContents",
            "sections",
            "parse_capture",
            "capture_contents",
            "image_created",
        )
    },
    ("gpuimages.release.manifest", "human_size"): "gpuimages.release.markdown",
    **{
        ("gpuimages.host.doctor", name): "gpuimages.facts.support"
        for name in (
            "ARCH_COMPATIBLE",
            "ARCH_NATIVE",
            "ARCH_UNKNOWN",
            "ARCH_UNSUPPORTED",
            "ArchStatus",
            "ArchVerdict",
            "DriverVerdict",
            "MINOR_COMPAT",
            "MIN_SHM_BYTES",
            "NO_DRIVER",
            "NO_GPU_NEEDED",
            "REFUSED",
            "SUPPORTED",
            "UNSUPPORTED",
            "Verdict",
            "Verdicts",
            "arch_verdict",
            "branch",
            "driver_verdict",
            "newest_branch",
            "normalize_arch",
            "normalize_driver",
            "verdict_for",
        )
    },
}

SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".sh"}
SKIP = {"tools/relayer.py", "tests/unit/test_relayer.py"}

_DOTTED = re.compile(r"(?<![\w.])gpuimages(?:\.\w+)+")
_FROM_ROOT = re.compile(
    r"^(?P<indent>[ \t]*)from gpuimages import (?P<names>\([^)]*\)|[^\n#]+?)[ \t]*$", re.M
)
_FROM_MODULE = re.compile(
    r"^(?P<indent>[ \t]*)from (?P<module>gpuimages(?:\.\w+)+) import "
    r"(?P<names>\([^)]*\)|[^\n#]+?)[ \t]*$",
    re.M,
)
_PATH = re.compile(r"(?<![\w.-])gpuimages/(\w+)\.py\b")


def _longest(parts: list[str], names: set[str]) -> int:
    """How many leading parts of a dotted name form one of `names` (0 when none)."""
    return max((n for n in range(2, len(parts) + 1) if ".".join(parts[:n]) in names), default=0)


def rename_dotted(dotted: str) -> str:
    """'gpuimages.build.BuildResult' -> 'gpuimages.build.image.BuildResult'; new names stay."""
    parts = dotted.split(".")
    old = _longest(parts, set(MOVES))
    if old == 0 or _longest(parts, NEW) >= old:
        return dotted
    return ".".join([MOVES[".".join(parts[:old])], *parts[old:]])


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.strip("()").replace("\n", " ").split(",") if n.strip()]


def _from_root(match: re.Match[str]) -> str:
    """`from gpuimages import doctor, x` -> one line per new home."""
    indent, kept, lines = match["indent"], [], []
    for name in _names(match["names"]):
        module, _, alias = (p.strip() for p in name.partition(" as "))
        new = MOVES.get(f"gpuimages.{module}")
        if new is None:
            kept.append(name)
            continue
        package, _, leaf = new.rpartition(".")
        alias = alias or module
        lines.append(
            f"{indent}from {package} import {leaf}" + (f" as {alias}" if alias != leaf else "")
        )
    if kept:
        lines.insert(0, f"{indent}from gpuimages import {', '.join(kept)}")
    return "\n".join(lines)


def _from_module(match: re.Match[str]) -> str:
    """`from gpuimages.X import a, b` with X renamed and moved names sent to their new home."""
    indent, module = match["indent"], match["module"]
    leaves, renamed = _leaves(module), rename_dotted(module)
    groups: dict[str, list[str]] = {}
    for name in _names(match["names"]):
        base = name.partition(" as ")[0].strip()
        # `from gpuimages.build import image`: a stage's module, already the new layout
        home = module if base in leaves else SYMBOLS.get((renamed, base), renamed)
        groups.setdefault(home, []).append(name)
    if list(groups) == [module]:
        return match[0]
    return "\n".join(
        f"{indent}from {home} import {', '.join(names)}" for home, names in groups.items()
    )


def _path(match: re.Match[str]) -> str:
    new = MOVES.get(f"gpuimages.{match[1]}")
    return new.replace(".", "/") + ".py" if new else match[0]


def rewrite(text: str) -> str:
    """Every reference to a flat module in `text`, pointed at its stage package."""
    text = _FROM_ROOT.sub(_from_root, text)
    text = _FROM_MODULE.sub(_from_module, text)
    text = _DOTTED.sub(lambda m: m[0] if _is_package_import(text, m) else rename_dotted(m[0]), text)
    return _PATH.sub(_path, text)


def _leaves(module: str) -> set[str]:
    """The modules of a stage package (none for anything else)."""
    return {new.rpartition(".")[2] for new in NEW if new.rpartition(".")[0] == module}


def _submodules_of(module: str, names: list[str]) -> bool:
    """`from gpuimages.build import image as build`: the stage's modules, not old build.py's."""
    leaves = _leaves(module)
    return bool(leaves) and all(n.partition(" as ")[0].strip() in leaves for n in names)


def _is_package_import(text: str, match: re.Match[str]) -> bool:
    """The dotted name of a `from STAGE import MODULE` line already in the new layout."""
    line = re.match(r"\s+import\s+(\([^)]*\)|[^\n#]+)", text[match.end() :])
    return line is not None and _submodules_of(match[0], _names(line[1]))


def files(root: Path) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return sorted(
        root / name
        for name in set(listed)
        if Path(name).suffix in SUFFIXES and name not in SKIP and (root / name).is_file()
    )


def move(root: Path) -> list[str]:
    """`git mv` each flat module still in place; stage packages get an __init__.py."""
    done = []
    for old, new in MOVES.items():
        src = root / (old.replace(".", "/") + ".py")
        dest = root / (new.replace(".", "/") + ".py")
        if not src.exists() or dest.exists():
            continue
        dest.parent.mkdir(exist_ok=True)
        init = dest.parent / "__init__.py"
        if not init.exists():
            init.write_text(
                f'"""The {dest.parent.name} stage of the flow (docs/architecture.md)."""\n'
            )
            subprocess.run(["git", "add", str(init)], cwd=root, check=True)
        subprocess.run(["git", "mv", str(src), str(dest)], cwd=root, check=True)
        done.append(f"{old} -> {new}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; list what would")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    if not args.check:
        for line in move(args.root):
            print("moved", line)
    pending = []
    for path in files(args.root):
        text = path.read_text()
        new = rewrite(text)
        if new != text:
            pending.append(path.relative_to(args.root))
            if not args.check:
                path.write_text(new)
    for name in pending:
        print(("needs rewrite " if args.check else "rewrote ") + str(name))
    return 1 if args.check and pending else 0


if __name__ == "__main__":
    sys.exit(main())
