from __future__ import annotations

from pathlib import Path

import pytest

from gpuimages.facts.compat import Compat, load_compat

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def compat() -> Compat:
    return load_compat()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
