"""`invoke compat sync` on saved index excerpts (tests/data/wheelindex, see its README)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpuimages import compatsync
from gpuimages.compatsync import IndexUnreachable, parse_simple_page, parse_wheel_name
from gpuimages.yamlio import load_yaml

DATA = Path(__file__).resolve().parent.parent / "data" / "wheelindex"
SHIPPED = Path(compatsync.__file__).parent / "data" / "compat.yaml"


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("torch-2.5.1+cu124-cp311-cp311-linux_x86_64.whl", ("2.5.1", "12.4", "3.11")),
        ("torch-1.12.1+cu102-cp37-cp37m-linux_x86_64.whl", ("1.12.1", "10.2", "3.7")),
        ("torch-2.15.0-cp315-cp315-manylinux_2_28_x86_64.whl", ("2.15.0", None, "3.15")),
        ("torch-2.14.0-cp314-cp314t-manylinux_2_28_x86_64.whl", ("2.14.0", None, "3.14t")),
        ("torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl", ("2.13.0", "cpu", "3.11")),
    ],
)
def test_wheel_names(name, want):
    w = parse_wheel_name(name)
    assert (w.version, w.build, w.python) == want


def test_rocm_and_sdists_are_not_builds():
    assert parse_wheel_name("torch-2.15.0+rocm7.2-cp311-cp311-linux_x86_64.whl") is None
    assert parse_wheel_name("torch-1.0.0.tar.gz") is None


def test_glibc_floor_from_manylinux_tag():
    w = parse_wheel_name("torch-2.7.0-cp311-cp311-manylinux_2_28_x86_64.whl")
    assert w.glibc == "2.28"
    old = parse_wheel_name("torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl")
    assert old.glibc == "2.5"


def test_pypi_simple_excerpt_parses():
    names = parse_simple_page((DATA / "pypi-simple-torch.html").read_text())
    assert len(names) == 4 and all(n.startswith("torch-2.1") for n in names)


def copy_shipped(tmp_path: Path) -> Path:
    path = tmp_path / "compat.yaml"
    shutil.copy(SHIPPED, path)
    return path


def test_dry_run_reports_new_release_new_build_removed_build(tmp_path):
    path = copy_shipped(tmp_path)
    before = path.read_text()
    result = compatsync.sync(
        path, index=(DATA / "simple").as_uri(), pypi=(DATA / "pypi").as_uri(), write=False
    )
    lines = result.report().splitlines()
    assert "+ torch 2.16.0: new release (builds: 13.2)" in lines
    assert "+ torch 2.15.0: new build 13.0 (Python 3.11)" in lines
    assert "- torch 2.14.1: build 13.2 no longer on the index" in lines
    assert "~ torch 2.14.1: build 12.6: Python -3.10 -3.12 -3.13 -3.14" in lines
    assert path.read_text() == before, "a dry run writes nothing"
    assert not result.written


def test_write_changes_only_the_generated_block(tmp_path):
    path = copy_shipped(tmp_path)
    old_before, _, old_after = compatsync.split_generated(path.read_text())
    result = compatsync.sync(
        path,
        index=(DATA / "simple").as_uri(),
        pypi=(DATA / "pypi").as_uri(),
        write=True,
        today="2026-11-23",
    )
    assert result.written
    before, _, after = compatsync.split_generated(path.read_text())
    assert (before, after) == (old_before, old_after), "hand-written facts untouched"
    torch = load_yaml(path)["torch"]
    assert torch["2.16.0"]["builds"] == {"13.2": {"python": ["3.12"]}}
    assert torch["2.15.0"]["src"]["builds"] == "IDX 2026-11-23"
    assert torch["2.15.0"]["torchvision"] == "0.29.2", "hand facts of a release are kept"
    again = compatsync.sync(
        path, index=(DATA / "simple").as_uri(), pypi=(DATA / "pypi").as_uri(), write=False
    )
    assert again.changes == (), "a second run finds nothing new"


def test_shipped_block_round_trips():
    """The committed block is exactly what the emitter writes (so --write diffs cleanly)."""
    text = SHIPPED.read_text()
    _, block, _ = compatsync.split_generated(text)
    torch = load_yaml(SHIPPED)["torch"]
    header = compatsync._block_header(block)
    assert compatsync.emit_torch_block(torch, header=header) == block


def test_unreachable_index_is_one_paragraph(tmp_path):
    with pytest.raises(IndexUnreachable) as err:
        compatsync.sync(copy_shipped(tmp_path), index="http://127.0.0.1:9/whl", pypi=None)
    msg = str(err.value)
    assert "Nothing was compared or written" in msg and "\n" not in msg


def test_cli_unreachable_exits_nonzero_without_traceback(repo_root):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "compat",
            "sync",
            "--index",
            "http://127.0.0.1:9/whl",
            "--pypi",
            "none",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Nothing was compared or written" in proc.stderr + proc.stdout
