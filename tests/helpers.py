"""Shared by the unit and integration tests: running the CLI as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def invoke(
    *args: str, timeout: int = 300, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """`invoke ARGS` in the repository root or CWD (this tasks.py either way, through
    --search-root), ENV added to the environment, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
