"""Shared by the unit and integration tests: running the CLI as users do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """`invoke ARGS` in the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
