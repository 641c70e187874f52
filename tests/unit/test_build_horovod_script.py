"""scripts/image/build-horovod.sh outside an image: fixes and the compiler-error report.

The script runs for real against a throwaway venv and a stand-in sdist whose build fails
the way a C++ compile does, so the lines a user needs are shown, not only the tail.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image" / "build-horovod.sh"

SETUP_PY = textwrap.dedent(
    """
    import sys
    for i in range(80):
        print(f"[ {i}%] Building CXX object horovod/common/ops/op_{i}.cc.o")
    print("/src/horovod/torch/mpi_ops_v2.cc:42:10: error: 'optional' in namespace 'std' "
          "does not name a template type")
    print("make[2]: *** [horovod/torch/CMakeFiles/pytorch.dir/build.make:76] Error 1")
    for i in range(80):
        print(f"noise line {i}")
    sys.exit(1)
    """
)


def sdist(dest: Path, version: str) -> None:
    """horovod-VERSION.tar.gz with both CMakeLists the cxx17 fix edits, and a failing build."""
    files = {
        "setup.py": SETUP_PY,
        "CMakeLists.txt": "set(CMAKE_CXX_STANDARD 14)\n",
        "horovod/torch/CMakeLists.txt": "set(CMAKE_CXX_STANDARD 14)\n",
    }
    with tarfile.open(dest / f"horovod-{version}.tar.gz", "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"horovod-{version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True)
    return path


def run_script(venv: Path, wheelhouse: Path, *fixes: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GPUIMAGES_VENV": str(venv),
        "GPUIMAGES_WHEELHOUSE": str(wheelhouse),
        "GPUIMAGES_OFFLINE": "1",
    }
    return subprocess.run(
        ["bash", str(SCRIPT), "9.9.9", *fixes], env=env, capture_output=True, text=True, timeout=300
    )


def test_compiler_error_lines_are_shown(venv, tmp_path):
    sdist(tmp_path, "9.9.9")
    r = run_script(venv, tmp_path, "cxx17")
    assert r.returncode == 1
    assert "applied fix cxx17" in r.stdout
    report = r.stderr.split("==== build-horovod: compiler errors ====", 1)[1]
    assert "mpi_ops_v2.cc:42:10: error: 'optional'" in report
    assert "Error 1" in report
    assert "noise line" not in report


def test_cxx20_raises_the_standard_for_torch_2_14(venv, tmp_path):
    sdist(tmp_path, "9.9.9")
    r = run_script(venv, tmp_path, "cxx20")
    assert "applied fix cxx20 (CMAKE_CXX_STANDARD 14 -> 20)" in r.stdout


def test_unknown_fix_is_refused(venv, tmp_path):
    sdist(tmp_path, "9.9.9")
    r = run_script(venv, tmp_path, "cxx23")
    assert r.returncode == 2 and "unknown fix 'cxx23'" in r.stderr
