"""`invoke compat sync` on index excerpts: PyPI's recorded, the PyTorch index's constructed
(tests/data/wheelindex, see its README)."""

from __future__ import annotations

import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from importlib import resources
from pathlib import Path
from typing import ClassVar

import pytest

from gpuimages.core.yamlio import load_yaml
from gpuimages.facts import compatsync
from gpuimages.facts.compatsync import IndexUnreachable, parse_simple_page, parse_wheel_name

DATA = Path(__file__).resolve().parent.parent / "data" / "wheelindex"
SHIPPED = Path(str(resources.files("gpuimages") / "data" / "compat.yaml"))


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
    index_url = (DATA / "simple").as_uri()
    assert torch["2.16.0"]["builds"] == {
        "13.2": {"python": ["3.12"], "src": f"IDX 2026-11-23 {index_url}"}
    }, "a build learnt from the index names it as its source"
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


def recorded_metadata(url: str) -> str:
    """What fetch_wheel_metadata reads for a PyPI wheel URL: its recording, by file name."""
    return (DATA / "metadata" / (url.rsplit("/", 1)[-1] + ".metadata")).read_text()


@pytest.mark.parametrize(
    ("wheel", "cuda"),
    [
        ("torch-1.13.1-cp311-cp311-manylinux1_x86_64.whl", "11.7"),
        ("torch-2.5.1-cp313-cp313-manylinux1_x86_64.whl", "12.4"),
        ("torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl", "13.2"),
    ],
)
def test_cuda_build_of_a_recorded_wheel_metadata(wheel, cuda):
    assert compatsync.cuda_of_metadata(recorded_metadata(wheel)) == cuda


def test_metadata_without_cuda_wheels_names_no_build():
    text = recorded_metadata("torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl")
    cpu_like = "\n".join(
        line for line in text.splitlines() if "cuda" not in line and "nvidia" not in line
    )
    assert compatsync.cuda_of_metadata(cpu_like) is None


def without(path: Path, version: str, build: str | None = None) -> None:
    """Rewrite the generated block of the copy at path as if it predated a release/build."""
    before, block, after = compatsync.split_generated(path.read_text())
    torch = {str(k): v for k, v in load_yaml(path)["torch"].items()}
    if build is None:
        del torch[version]
    else:
        del torch[version]["builds"][build]
    header = compatsync._block_header(block)
    path.write_text(before + compatsync.emit_torch_block(torch, header=header) + after)


def test_sync_learns_a_new_release_from_pypi_alone(tmp_path):
    """The data before 2.15.0 came out, against PyPI's recorded answer: the release and the
    build its wheels are (their METADATA) are reported, written, and then resolve."""
    from gpuimages.facts.compat import load_compat
    from gpuimages.facts.variant import VariantRequest, resolve

    path = copy_shipped(tmp_path)
    without(path, "2.15.0")
    pypi = (DATA / "pypi").as_uri()
    kwargs = {"index": None, "pypi": pypi, "metadata": recorded_metadata}
    result = compatsync.sync(path, write=False, **kwargs)
    assert [c.line() for c in result.changes] == [
        "+ torch 2.15.0: new release on PyPI only (its wheels: the CUDA 13.2 build, "
        "Python 3.11, 3.12, 3.13, 3.14, 3.15)"
    ]
    compatsync.sync(path, write=True, today="2026-12-06", **kwargs)
    rel = load_yaml(path)["torch"]["2.15.0"]
    assert rel["builds"] == {"13.2": {"python": ["3.11", "3.12", "3.13", "3.14", "3.15"]}}
    assert (rel["pypi_default"], rel["python"], rel["glibc"]) == ("13.2", ">=3.11", "2.28")
    assert rel["src"]["builds"].startswith(f"PYPI 2026-12-06 {pypi}")
    assert rel["src"]["pypi_default"].endswith("torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl")
    assert compatsync.sync(path, write=False, **kwargs).changes == ()
    variant = resolve(VariantRequest(torch="2.15.0", cuda="13.2"), load_compat(path))
    assert (variant.torch, variant.cuda, variant.pypi_build) == ("2.15.0", "13.2", True)


def test_sync_learns_a_new_build_of_a_known_release(tmp_path):
    """The data without 1.11.0's cu115 build, against an index page that lists it: only
    that build is new; the write adds it with the index as its source, the rest unchanged."""
    path = copy_shipped(tmp_path)
    without(path, "1.11.0", "11.5")
    known = load_yaml(path)["torch"]["1.11.0"]["builds"]
    index = (DATA / "simple-1.11").as_uri()
    result = compatsync.sync(path, index=index, pypi=None, write=True, today="2026-12-06")
    assert [c.line() for c in result.changes] == [
        "+ torch 1.11.0: new build 11.5 (Python 3.7, 3.8, 3.9, 3.10)"
    ]
    builds = load_yaml(path)["torch"]["1.11.0"]["builds"]
    assert builds["11.5"] == {
        "python": ["3.7", "3.8", "3.9", "3.10"],
        "src": f"IDX 2026-12-06 {index}",
    }
    assert {b: builds[b] for b in known} == known, "builds the index confirms are kept as they were"


def test_cli_refuses_to_compare_against_nothing(repo_root):
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "compat", "sync", "--index", "none", "--pypi", "none"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "leave nothing to compare against" in out


class _WheelHost(http.server.BaseHTTPRequestHandler):
    """A file host on 127.0.0.1 that answers HEAD, GET and single-range GET, as
    files.pythonhosted.org does; it counts the bytes it sends."""

    files: ClassVar[dict[str, bytes]] = {}
    sent = 0

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool):
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, end = 0, len(data) - 1
        asked = self.headers.get("Range")
        if asked:
            first, last = asked.removeprefix("bytes=").split("-")
            start, end = int(first), min(int(last), len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if body:
            self.wfile.write(data[start : end + 1])
            type(self).sent += end - start + 1


@pytest.fixture
def wheel_host():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WheelHost)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _WheelHost.files, _WheelHost.sent = {}, 0
    yield f"http://127.0.0.1:{server.server_address[1]}", _WheelHost
    server.shutdown()
    server.server_close()


def _wheel_with(metadata: str, padding: int) -> bytes:
    """A wheel-shaped zip (constructed: only its layout matters here) holding the recorded
    METADATA after `padding` bytes of incompressible payload, as torch's .so files are."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as whl:
        whl.writestr("torch/lib/libtorch_cuda.so", os.urandom(padding))
        whl.writestr("torch-2.15.0.dist-info/METADATA", metadata, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def test_wheel_metadata_by_range_requests_reads_a_sliver(wheel_host):
    base, host = wheel_host
    name = "torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    metadata = recorded_metadata(name)
    host.files[f"/{name}"] = _wheel_with(metadata, padding=8 << 20)
    assert compatsync.fetch_wheel_metadata(f"{base}/{name}") == metadata
    assert 0 < host.sent < 64 << 10, f"read {host.sent} bytes of an 8 MB wheel"


def test_wheel_metadata_prefers_pep658_file(wheel_host):
    base, host = wheel_host
    name = "torch-2.5.1-cp313-cp313-manylinux1_x86_64.whl"
    host.files[f"/{name}.metadata"] = recorded_metadata(name).encode()
    assert compatsync.cuda_of_metadata(compatsync.fetch_wheel_metadata(f"{base}/{name}")) == "12.4"


def test_wheel_metadata_unreachable_is_one_paragraph(wheel_host):
    base, _ = wheel_host
    with pytest.raises(IndexUnreachable) as err:
        compatsync.fetch_wheel_metadata(f"{base}/torch-9.9.9-cp311-cp311-linux_x86_64.whl")
    assert "Nothing was compared or written" in str(err.value) and "\n" not in str(err.value)
