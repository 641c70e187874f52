"""CUDA images without a GPU: base routes, the devel toolchain, and the CUDA-stack check.

The check's file logic runs here on stand-in library trees (empty files named as the
wheels name them); what real images report is asserted by tests/integration/test_cuda.py.
"""

from __future__ import annotations

import os
import struct
from types import SimpleNamespace

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.variant import VariantRequest, resolve
from tests.unit.test_smoke_scripts import _load

check_cuda = _load("check_cuda")
check_flavor = _load("check_flavor")


# --- routes ----------------------------------------------------------------------------

ROUTES = [
    # (request, base, base image) - each row says why
    # torch 1.12.0+cu113 bundles cudart/cuBLAS/cuDNN/NCCL: a plain Ubuntu is enough.
    ({"torch": "1.12.0", "cuda": "11.3"}, "os", "ubuntu:20.04"),
    # devel needs nvcc 11.3; PyPI has none for 11.x/12.x: nvidia/cuda devel by default.
    (
        {"torch": "1.12.0", "cuda": "11.3", "flavor": "devel"},
        "nvidia",
        "nvidia/cuda:11.3.1-cudnn8-devel-ubuntu20.04",
    ),
    # CUDA 13.0: cuda-toolkit[nvcc] on PyPI, so devel stays on the os route.
    ({"torch": "2.14.1", "cuda": "13.0", "flavor": "devel"}, "os", "ubuntu:24.04"),
    ({"torch": "2.14.1", "cuda": "13.0", "os": "debian12"}, "os", "debian:bookworm-slim"),
    # opt-in nvidia route for runtime
    (
        {"torch": "2.5.1", "cuda": "12.4", "base": "nvidia"},
        "nvidia",
        "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
    ),
    ({"torch": "2.13.0", "cuda": "cpu"}, "os", "debian:bookworm-slim"),
]


@pytest.mark.parametrize(("kwargs", "base", "image"), ROUTES)
def test_routes(compat, kwargs, base, image):
    v = resolve(VariantRequest(**kwargs), compat)
    assert (v.base, v.base_image) == (base, image)


REFUSED = [
    # devel on the os route where PyPI has no nvcc: the alternatives are named
    (
        {"torch": "2.5.1", "cuda": "12.4", "flavor": "devel", "base": "os"},
        ["--base nvidia", "13.0"],
    ),
    # Horovod's NCCL build needs nvcc too
    (
        {"torch": "2.1.2", "cuda": "11.8", "horovod": "0.28.1", "base": "os"},
        ["Horovod 0.28.1", "--base nvidia"],
    ),
    # NVIDIA deleted every 10.2 tag: refused, not warned
    ({"torch": "1.12.0", "cuda": "10.2", "base": "nvidia"}, ["deleted", "--base os"]),
    ({"torch": "1.12.0", "cuda": "10.2", "flavor": "devel"}, ["deleted", "newer CUDA"]),
    ({"torch": "2.13.0", "cuda": "cpu", "base": "nvidia"}, ["CPU variant"]),
    ({"torch": "2.14.1", "cuda": "13.0", "base": "docker"}, ["valid bases: os, nvidia"]),
    # nvidia/cuda publishes no Debian images
    ({"torch": "2.14.1", "cuda": "13.0", "os": "debian12", "base": "nvidia"}, ["--base os puts"]),
]


@pytest.mark.parametrize(("kwargs", "words"), REFUSED)
def test_routes_refused_with_alternatives(compat, kwargs, words):
    with pytest.raises(UserInputError) as err:
        resolve(VariantRequest(**kwargs), compat)
    for word in words:
        assert word in str(err.value)


def test_devel_toolchain_matches_the_wheel(compat):
    v = resolve(VariantRequest("2.14.1", "13.0", flavor="devel", os="debian12"), compat)
    assert v.toolchain_requirements == ("cuda-toolkit[nvcc,cccl]==13.0.3",)
    assert v.requirements[-1] == "cuda-toolkit[nvcc,cccl]==13.0.3"  # in the wheelhouse too
    assert v.cuda_home == "/opt/venv/lib/python3.11/site-packages/nvidia/cu13"
    assert v.torch_cuda_arch_list == "7.5;8.0;8.6;9.0;10.0;12.0"
    assert (v.cudnn_version, v.nccl) == ("9.24.0", "2.30.7")
    runtime = resolve(VariantRequest("2.14.1", "13.0", os="debian12"), compat)
    assert runtime.toolchain_requirements == ()
    assert runtime.pip_pins[0] == "torch==2.14.1"  # PyPI's own build is cu130


# --- the CUDA-stack check --------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "key"),
    [
        ("libcudart.so.13", "libcudart.so.13"),
        ("libcudart-9335f6a2.so.11.0", "libcudart.so.11"),  # torch 1.x bundles with a hash
        ("libcublasLt.so.12.4.5.8", "libcublasLt.so.12"),
        ("libcudnn_ops.so.9", "libcudnn_ops.so.9"),
        ("libnvrtc-builtins.so.13.0", "libnvrtc-builtins.so.13"),
        ("libnvperf_host.so", "libnvperf_host.so"),
        ("libcuda.so.1", None),  # the driver: injected by the container toolkit
        ("libtorch_cuda.so", None),
        ("libgomp-a34b3233.so.1", None),
    ],
)
def test_soname_key(filename, key):
    assert check_cuda.soname_key(filename) == key


def _lib(path, size=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


def test_duplicates_found_across_venv_and_system(tmp_path):
    venv = tmp_path / "site" / "nvidia" / "cublas" / "lib"
    system = tmp_path / "usr" / "local" / "cuda" / "lib64"
    _lib(venv / "libcublas.so.12", 300)
    _lib(system / "libcublas.so.12.4.5.8", 200)
    os.symlink("libcublas.so.12.4.5.8", system / "libcublas.so.12")  # same file, not a dup
    _lib(venv / "libcudnn.so.9")
    found = check_cuda.scan([str(venv), str(system)])
    dups, extra = check_cuda.duplicates(found)
    assert sorted(dups) == ["libcublas.so.12"]
    assert len(dups["libcublas.so.12"]) == 2
    assert extra == 200  # the smaller copy is the extra one


def test_library_dirs_walks_every_nvidia_lib(tmp_path):
    site = tmp_path / "site-packages"
    for sub in ("nvidia/cu13/lib", "nvidia/cudnn/lib", "nvidia/nccl/lib", "nvidia/cu13/include"):
        (site / sub).mkdir(parents=True)
    dirs = check_cuda.library_dirs(str(site / "torch"), [str(site)])
    assert dirs[0] == str(site / "torch" / "lib")
    assert sorted(os.path.relpath(d, site) for d in dirs[1:]) == [
        "nvidia/cu13/lib",
        "nvidia/cudnn/lib",
        "nvidia/nccl/lib",
    ]


def test_load_all_retries_dependencies_and_names_driver_needs():
    loaded = set()

    def loader(path):
        if path == "/x/libcudnn_ops.so.9" and "/x/libcudnn_graph.so.9" not in loaded:
            raise OSError("libcudnn_graph.so.9: cannot open shared object file")
        if path == "/x/libnvshmem_host.so.3":
            raise OSError("libcuda.so.1: cannot open shared object file: No such file")
        if path == "/x/libcufile_rdma.so.1":
            raise OSError("libmlx5.so.1: cannot open shared object file")
        if path == "/x/libnccl.so.2":
            raise OSError("/x/libnccl.so.2: undefined symbol: ncclFoo")
        loaded.add(path)

    paths = [
        "/x/libcudnn_ops.so.9",
        "/x/libcudnn_graph.so.9",
        "/x/libnvshmem_host.so.3",
        "/x/libcufile_rdma.so.1",
        "/x/libnccl.so.2",
    ]
    results = check_cuda.load_all(paths, loader)
    assert results["/x/libcudnn_ops.so.9"] == "ok"  # loaded once its dependency was
    assert results["/x/libnvshmem_host.so.3"].startswith("needs driver")
    assert results["/x/libcufile_rdma.so.1"].startswith("optional: GPUDirect Storage")
    assert "undefined symbol" in results["/x/libnccl.so.2"]


def _torch(cuda="13.0", cudnn=92400, nccl=(2, 30, 7), archs="sm_75 sm_80 sm_90"):
    return SimpleNamespace(
        __file__="/nonexistent/torch/__init__.py",
        version=SimpleNamespace(cuda=cuda),
        backends=SimpleNamespace(cudnn=SimpleNamespace(version=lambda: cudnn)),
        cuda=SimpleNamespace(nccl=SimpleNamespace(version=lambda: nccl)),
        _C=SimpleNamespace(_cuda_getArchFlags=lambda: archs),
    )


def _args(**kw):
    base = dict(
        expect_cuda="13.0",
        expect_cudnn="9",
        expect_cudnn_version="9.24.0",
        expect_nccl="2.30.7",
        archs="sm_75,sm_80,sm_90",
        base="os",
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_run_passes_when_everything_matches():
    status, reason, figures = check_cuda.run(_torch(), _args(), [])
    assert status == "passed", reason
    assert figures["compiled_archs"] == ["sm_75", "sm_80", "sm_90"]
    assert "no duplicates" in reason


@pytest.mark.parametrize(
    ("torch_kw", "args_kw", "words"),
    [
        ({"cuda": "12.8"}, {}, "torch.version.cuda is 12.8, expected 13.0"),
        ({"cudnn": 91002}, {}, "cuDNN is 9.10.2, expected 9.24.0"),
        ({"cudnn": 8907}, {}, "expected major 9"),
        ({"nccl": (2, 27, 3)}, {}, "NCCL is 2.27.3, expected 2.30.7"),
        ({"archs": "sm_80 sm_90"}, {}, "torch was compiled for sm_80,sm_90"),
        ({"cudnn": None}, {}, "cuDNN does not load"),
    ],
)
def test_run_fails_on_each_mismatch(torch_kw, args_kw, words):
    status, reason, _ = check_cuda.run(_torch(**torch_kw), _args(**args_kw), [])
    assert status == "failed"
    assert words in reason


def test_duplicates_fail_on_os_route_and_are_reported_on_nvidia(tmp_path, monkeypatch):
    venv = tmp_path / "nvidia" / "cublas" / "lib"
    system = tmp_path / "cuda" / "lib64"
    _lib(venv / "libcublas.so.12", 5_000_000)
    _lib(system / "libcublas.so.12", 5_000_000)
    monkeypatch.setattr(check_cuda, "SYSTEM_LIB_DIRS", (str(system),))
    monkeypatch.setattr(check_cuda, "load_all", lambda paths: dict.fromkeys(paths, "ok"))
    status, reason, figures = check_cuda.run(_torch(), _args(), [str(tmp_path)])
    assert status == "failed" and "1 CUDA libraries present twice (5 MB)" in reason
    assert figures["duplicate_bytes"] == 5_000_000
    status, reason, _ = check_cuda.run(_torch(), _args(base="nvidia"), [str(tmp_path)])
    assert status == "passed" and "nvidia route" in reason


def test_cpu_variant_is_skipped(capsys):
    assert check_cuda.main(["--expect-cuda", "cpu"]) == 0
    assert '"status": "skipped"' in capsys.readouterr().out


# --- devel: nvcc and SASS --------------------------------------------------------------


def test_nvcc_release_parsed():
    out = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n"

    def runner(*a, **k):
        return SimpleNamespace(stdout=out)

    assert check_flavor.nvcc_release("/x/nvcc", runner) == "13.0"


def _fatbin(entries):
    """A fatbin as nvcc lays it out: header, then (kind, arch, payload) entries."""
    body = b""
    for kind, arch, payload in entries:
        header = struct.pack("<HHIQ", kind, 0x0101, 64, len(payload))
        header += b"\0" * 12 + struct.pack("<I", arch)
        header += b"\0" * (64 - len(header))
        body += header + payload
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def test_fatbin_archs_lists_sass_not_ptx():
    blob = b"ELF..." + _fatbin([(2, 75, b"a" * 40), (2, 90, b"b" * 8), (1, 90, b"ptx")])
    assert check_flavor.fatbin_archs(blob) == ["sm_75", "sm_90"]


def test_list_sass_prefers_cuobjdump(tmp_path):
    out = "ELF file    1: gpuimages_smoke_cuda.1.sm_75.cubin\nELF file    2: x.2.sm_120.cubin\n"

    def runner(*a, **k):
        return SimpleNamespace(stdout=out)

    archs, how = check_flavor.list_sass("/x.so", which=lambda _: "/bin/cuobjdump", runner=runner)
    assert (archs, how) == (["sm_75", "sm_120"], "cuobjdump --list-elf")


def test_check_names_the_duplicated_bytes_of_the_nvidia_route(compat):
    from gpuimages.facts.select import warnings_for

    nvidia = resolve(VariantRequest("2.5.1", "12.4", base="nvidia"), compat)
    (note,) = [w for w in warnings_for(nvidia, compat) if "second copy" in w]
    assert "about 3.0 GB for CUDA 12.4" in note and "--base os" in note
    os_route = resolve(VariantRequest("2.5.1", "12.4"), compat)
    assert not [w for w in warnings_for(os_route, compat) if "second copy" in w]


def test_fatbin_archs_on_real_nvcc_output(repo_root):
    """nvcc 13.0's own fatbin: six SASS entries and one PTX entry (README beside it)."""
    blob = (repo_root / "tests" / "data" / "fatbin" / "smoke_kernel.nv_fatbin").read_bytes()
    assert check_flavor.fatbin_archs(blob) == [
        "sm_75",
        "sm_80",
        "sm_86",
        "sm_90",
        "sm_100",
        "sm_120",
    ]


def test_extension_archs_narrow_devel_to_the_wheels_archs(compat):
    v = resolve(
        VariantRequest("2.14.1", "13.0", flavor="devel", extension_archs="sm_90, 10.0"), compat
    )
    assert v.extension_archs == ("sm_90", "sm_100")
    assert v.torch_cuda_arch_list == "9.0;10.0"
    assert len(v.archs) == 6  # the label stays the wheel's own list


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        # CUDA 13 dropped Volta: an extension for sm_70 could never run with this torch
        ({"flavor": "devel", "extension_archs": "sm_70"}, ["'sm_70'", "sm_75, sm_80"]),
        ({"flavor": "runtime", "extension_archs": "sm_90"}, ["only applies to CUDA devel"]),
    ],
)
def test_extension_archs_refused(compat, kwargs, words):
    with pytest.raises(UserInputError) as err:
        resolve(VariantRequest("2.14.1", "13.0", **kwargs), compat)
    for word in words:
        assert word in str(err.value)


def test_check_says_horovod_is_patched_not_upstream(compat):
    from gpuimages.facts.select import warnings_for

    v = resolve(VariantRequest("2.14.1", "13.0", horovod="0.28.1"), compat)
    (note,) = [w for w in warnings_for(v, compat) if "Horovod" in w]
    assert "our patch (cxx20)" in note and "not upstream-supported" in note
    old = resolve(VariantRequest("1.12.0", "11.3", horovod="0.28.1"), compat)
    assert not [w for w in warnings_for(old, compat) if "Horovod" in w]


def test_nvcc_links_reports_the_linker_lines(tmp_path):
    def failing(argv, **kw):
        assert argv[1].endswith("link_check.cu")
        out = "x\n/usr/bin/ld: cannot find -lcudadevrt\ncollect2: error: ld returned 1\n"
        return SimpleNamespace(returncode=1, stdout=out)

    assert "cannot find -lcudadevrt" in check_flavor.nvcc_links("/x/nvcc", str(tmp_path), failing)
    ok = check_flavor.nvcc_links(
        "/x/nvcc", str(tmp_path), lambda argv, **kw: SimpleNamespace(returncode=0, stdout="")
    )
    assert ok == "ok"
