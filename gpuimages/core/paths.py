"""The repository and the default places commands read and write: one module, one ROOT.

Relative defaults are relative to the working directory, as the CLI runs in the
repository root (`invoke`, `nox`); ROOT-based paths are what the package itself ships.
"""

from __future__ import annotations

from pathlib import Path

from gpuimages.core.errors import GpuImagesError
from gpuimages.core.runner import capture

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
TEMPLATES = ROOT / "templates"

MATRIX = Path("matrix.yaml")
DOCKERFILES = Path("dockerfiles")
WORK_DIR = Path("build")  # build contexts, logs, image id files
BUILD_REPORT = WORK_DIR / "reports" / "build-report.json"
SMOKE_REPORTS = Path("reports/smoke")  # `invoke smoke` writes here, `invoke publish` reads
RELEASE_DIR = Path("reports/release")
WHEELHOUSE = Path("wheelhouse")


def git_revision(root: Path = ROOT) -> str | None:
    """The commit the repository is at (labels, release manifest); None outside git."""
    try:
        return capture(["git", "-C", str(root), "rev-parse", "HEAD"], timeout=10).strip()
    except GpuImagesError:
        return None
