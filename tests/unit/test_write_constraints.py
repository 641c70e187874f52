"""scripts/image/write-constraints.py: the pins behind PIP_CONSTRAINT."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image" / "write-constraints.py"
spec = importlib.util.spec_from_file_location("write_constraints", SCRIPT)
wc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wc)


def dist(name: str, version: str):
    return SimpleNamespace(metadata={"Name": name}, version=version)


def test_protected_names_pinned_to_what_is_installed():
    dists = [
        dist("torch", "2.5.1+cu124"),
        dist("nvidia_cublas_cu12", "12.4.5.8"),
        dist("nvidia-nccl-cu12", "2.21.5"),
        dist("NumPy", "2.1.3"),
        dist("requests", "2.32.3"),
        dist("cuda-toolkit", "13.0.3"),
        dist("torchmetrics", "1.4.0"),
    ]
    patterns = [wc.normalize(p) for p in ("torch", "numpy", "nvidia-*", "cuda-*")]
    assert wc.pins(patterns, dists) == [
        "cuda-toolkit==13.0.3",
        "numpy==2.1.3",
        "nvidia-cublas-cu12==12.4.5.8",
        "nvidia-nccl-cu12==2.21.5",
        "torch==2.5.1+cu124",
    ]


def test_refuses_an_environment_without_torch(tmp_path):
    out = tmp_path / "constraints.txt"
    r = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(out), "torch-not-installed-here"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "torch is not installed" in r.stderr
    assert not out.exists()
