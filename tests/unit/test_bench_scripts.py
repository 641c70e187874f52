"""The benchmark scripts stay importable: a refactor that moves a name breaks them silently
(they run by hand, not in CI), so each is loaded here without running its main()."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.helpers import ROOT

BENCH = ROOT / "bench"


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_bench_script_imports(path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # they import each other as scripts do
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
    sys.modules.pop(f"bench_{path.stem}", None)
