"""Smoke check `flavor`: runtime images carry no compiler; devel images build extensions.

    python3 check_flavor.py --flavor runtime|devel [--expect-cuda M.m|cpu]

runtime: no gcc/g++/cc/c++/nvcc on PATH nor /usr/local/cuda/bin/nvcc.
devel: torch.utils.cpp_extension.load_inline builds, loads and runs a tiny C++ op; for CUDA,
nvcc must match torch's CUDA, a tiny __global__ kernel compiles for the variant's archs
(its SASS listed per arch) and runs where a GPU is visible.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import smokelib

NAME = "flavor"
COMPILERS = ("gcc", "g++", "cc", "c++", "nvcc")
EXTRA_COMPILER_PATHS = ("/usr/local/cuda/bin/nvcc",)

CPP_SOURCE = """
torch::Tensor smoke_axpy(torch::Tensor x, double a) {
  return x * a + 1;
}
"""

# The CUDA extension is one module: the C++ op above, and a __global__ kernel in a .cu
# file of its own that includes no torch header. load_inline would prepend
# <torch/types.h> to CUDA sources, which cicc then compiles once per arch (over three
# minutes for six archs on two cores); cpp_extension.load takes the same JIT path
# (ninja, torch's flags, TORCH_CUDA_ARCH_LIST) on files written here.
CUDA_MAIN = """
#include <torch/extension.h>

void smoke_add_one_launch(const float* x, float* y, int64_t n);

torch::Tensor smoke_axpy(torch::Tensor x, double a) {
  return x * a + 1;
}

torch::Tensor smoke_add_one(torch::Tensor x) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == torch::kFloat, "a float CUDA tensor");
  auto y = torch::empty_like(x);
  smoke_add_one_launch(x.data_ptr<float>(), y.data_ptr<float>(), x.numel());
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("smoke_axpy", &smoke_axpy);
  m.def("smoke_add_one", &smoke_add_one);
}
"""
CUDA_KERNEL = """
#include <cstdint>

__global__ void smoke_add_one_kernel(const float* x, float* y, int64_t n) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] + 1.0f;
}

void smoke_add_one_launch(const float* x, float* y, int64_t n) {
  int threads = 128;
  int blocks = (int)((n + threads - 1) / threads);
  smoke_add_one_kernel<<<blocks, threads>>>(x, y, n);
}
"""


def find_compilers(which=shutil.which, exists=os.path.exists):
    """{compiler: path} for every compiler found."""
    found = {}
    for name in COMPILERS:
        path = which(name)
        if path:
            found[name] = path
    for path in EXTRA_COMPILER_PATHS:
        name = os.path.basename(path)
        if name not in found and exists(path):
            found[name] = path
    return found


def check_runtime():
    found = find_compilers()
    figures = {"flavor": "runtime", "compilers": found}
    if found:
        return (
            "failed",
            "runtime image has a compiler: %s"
            % ", ".join("%s (%s)" % (name, path) for name, path in sorted(found.items())),
            figures,
        )
    return "passed", "no C/C++/CUDA compiler present (%s)" % ", ".join(COMPILERS), figures


def nvcc_path():
    path = shutil.which("nvcc")
    if path:
        return path
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = os.path.join(cuda_home, "bin", "nvcc")
    return candidate if os.path.exists(candidate) else None


def nvcc_release(nvcc, runner=subprocess.run):
    """'13.0' from `nvcc --version` ("Cuda compilation tools, release 13.0, V13.0.88")."""
    out = runner(
        [nvcc, "--version"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
        timeout=60,
    ).stdout
    match = re.search(r"release (\d+\.\d+)", out or "")
    return match.group(1) if match else None


def nvcc_links(nvcc, build_root, runner=subprocess.run):
    """'ok' when nvcc compiles and links a program (its static cudart and cudadevrt found);
    else the linker's last lines. cpp_extension passes -L itself, so it cannot tell."""
    source = os.path.join(build_root, "link_check.cu")
    with open(source, "w") as fh:
        fh.write("__global__ void k() {}\nint main() { k<<<1, 1>>>(); return 0; }\n")
    proc = runner(
        [nvcc, source, "-o", os.path.join(build_root, "link_check")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
        timeout=300,
    )
    return "ok" if proc.returncode == 0 else smokelib.tail(proc.stdout or "", 3)


def cuda_extension(torch, cpp_extension, nvcc, archs, build_root, figures, problems):
    """nvcc matches torch's CUDA; a __global__ kernel compiles to SASS for the archs; it runs
    where a GPU is visible. The JIT never compares nvcc with torch.version.cuda and links
    whatever libcudart it finds, so the comparison is made here first. Returns the built
    module (its C++ op is checked by the caller), or None."""
    release = nvcc_release(nvcc)
    figures["nvcc_release"] = release
    if smokelib.major_minor(release) != smokelib.major_minor(torch.version.cuda):
        problems.append(
            "nvcc is CUDA %s but torch was built with CUDA %s" % (release, torch.version.cuda)
        )
        figures["cuda_extension"] = "skipped: nvcc does not match torch"
        return None
    linked = nvcc_links(nvcc, build_root)
    figures["nvcc_links_program"] = linked
    if linked != "ok":
        problems.append("nvcc cannot link a CUDA program: %s" % linked)
    if archs and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        # cpp_extension asks the GPU for its arch without this (IndexError with no GPU).
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(
            "%s.%s" % (a[3:-1], a[-1]) for a in archs if a.startswith("sm_")
        )
    figures["torch_cuda_arch_list"] = os.environ.get("TORCH_CUDA_ARCH_LIST")
    # The image's TORCH_CUDA_ARCH_LIST (a matrix entry's extension_archs) is what users'
    # extensions get; it is what the kernel must carry SASS for.
    archs = smokelib.normalize_archs(figures["torch_cuda_arch_list"]) or list(archs)
    build_dir = os.path.join(build_root, "cuda")
    os.makedirs(build_dir)
    sources = []
    for name, text in (("main.cpp", CUDA_MAIN), ("kernel.cu", CUDA_KERNEL)):
        path = os.path.join(build_dir, name)
        with open(path, "w") as fh:
            fh.write(text)
        sources.append(path)
    start = time.time()
    try:
        module = cpp_extension.load(
            name="gpuimages_smoke_cuda",
            sources=sources,
            build_directory=build_dir,
            extra_cflags=["-O0"],
            verbose=True,
        )
    except Exception as exc:
        figures["cuda_extension"] = "error"
        problems.append("CUDA extension build/load failed: %s: %s" % (type(exc).__name__, exc))
        return None
    finally:
        figures["cuda_build_s"] = round(time.time() - start, 2)
    built = os.path.join(build_dir, "gpuimages_smoke_cuda.so")
    sass, how = list_sass(built)
    figures["sass"] = sass
    figures["sass_listed_by"] = how
    wanted = sorted(a for a in archs if a.startswith("sm_"))
    missing = [a for a in wanted if a not in sass]
    if missing:
        problems.append(
            "the kernel has no SASS for %s (found %s)"
            % (",".join(missing), ",".join(sass) or "none")
        )
    if not torch.cuda.is_available():
        figures["cuda_extension"] = "built (SASS %s); not run: no GPU visible" % ",".join(sass)
        return module
    x = torch.arange(1000, dtype=torch.float32, device="cuda")
    got = module.smoke_add_one(x)
    torch.cuda.synchronize()
    ok = torch.equal(got.cpu(), x.cpu() + 1)
    figures["cuda_extension"] = "ok" if ok else "wrong result"
    if not ok:
        problems.append("CUDA kernel returned a wrong result")
    return module


FATBIN_MAGIC = 0xBA55ED50


def fatbin_archs(data):
    """SASS archs in an ELF's .nv_fatbin section(s), read from the fatbin headers.

    A fatbin is a header (magic 0xBA55ED50, u16 version, u16 header size, u64 body size)
    followed by entries (u16 kind: 1 PTX, 2 ELF; u16 version; u32 header size; u64 padded
    payload size; ...; u32 sm arch at offset 28). The layout is what cuobjdump reads; it is
    used only when cuobjdump is absent (PyPI's CUDA 13 nvcc ships none).
    """
    found = []
    offset = 0
    while True:
        offset = data.find(struct.pack("<I", FATBIN_MAGIC), offset)
        if offset < 0 or offset + 16 > len(data):
            break
        _magic, _version, header_size, body_size = struct.unpack_from("<IHHQ", data, offset)
        entry = offset + header_size
        end = min(entry + body_size, len(data))
        while entry + 32 <= end:
            kind, _ver, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            if entry_header == 0:
                break
            name = ("sm_%d" if kind == 2 else "compute_%d") % arch
            if kind == 2 and name not in found:
                found.append(name)
            entry += entry_header + payload
        offset = max(end, offset + 4)
    return sorted(found, key=lambda a: int(a.split("_")[1]))


def list_sass(path, which=shutil.which, runner=subprocess.run):
    """(['sm_75', ...], how): cuobjdump --list-elf where present, else the fatbin headers."""
    cuobjdump = which("cuobjdump")
    if cuobjdump:
        out = runner(
            [cuobjdump, "--list-elf", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            universal_newlines=True,
            timeout=120,
        ).stdout
        archs = sorted(
            set(re.findall(r"\.(sm_\d+[af]?)\.cubin", out or "")),
            key=lambda a: int(re.sub(r"\D", "", a)),
        )
        return archs, "cuobjdump --list-elf"
    with open(path, "rb") as fh:
        return fatbin_archs(fh.read()), "fatbin headers"


def check_devel(cpu_variant, archs=()):
    figures = {"flavor": "devel", "compilers": find_compilers()}
    try:
        import torch
        from torch.utils import cpp_extension
    except Exception as exc:
        return "failed", "import torch failed: %s" % exc, figures
    if shutil.which("ninja") is None:
        # pip's ninja lands next to the interpreter, which may not be on PATH
        beside = os.path.join(os.path.dirname(sys.executable), "ninja")
        if not os.access(beside, os.X_OK):
            return (
                "failed",
                "ninja not found: torch.utils.cpp_extension.load_inline needs it "
                "(pip install ninja)",
                figures,
            )
        os.environ["PATH"] = os.path.dirname(beside) + os.pathsep + os.environ.get("PATH", "")
    figures["ninja"] = shutil.which("ninja")
    build_root = tempfile.mkdtemp(prefix="gpuimages-smoke-ext-")
    problems = []
    try:
        module = None
        nvcc = nvcc_path()
        figures["nvcc"] = nvcc
        start = time.time()
        if cpu_variant or torch.version.cuda is None:
            figures["cuda_extension"] = "skipped: CPU variant"
        elif nvcc is None:
            figures["cuda_extension"] = "skipped: nvcc not found"
            problems.append("devel image for CUDA %s has no nvcc" % torch.version.cuda)
        else:
            module = cuda_extension(
                torch, cpp_extension, nvcc, archs, build_root, figures, problems
            )
        if module is None and not problems:
            build_dir = os.path.join(build_root, "cpp")
            os.makedirs(build_dir)
            try:
                module = cpp_extension.load_inline(
                    name="gpuimages_smoke_cpp",
                    cpp_sources=[CPP_SOURCE],
                    functions=["smoke_axpy"],
                    build_directory=build_dir,
                    extra_cflags=["-O0"],
                    verbose=True,
                )
            except Exception as exc:
                figures["cpp_extension"] = "error"
                problems.append(
                    "C++ extension build/load failed: %s: %s" % (type(exc).__name__, exc)
                )
        figures["cpp_build_s"] = round(time.time() - start, 2)
        if module is not None:
            x = torch.arange(6, dtype=torch.float32)
            got = module.smoke_axpy(x, 2.0)
            figures["cpp_extension"] = "ok" if torch.equal(got, x * 2 + 1) else "wrong result"
            if figures["cpp_extension"] != "ok":
                problems.append("C++ extension returned %s" % got.tolist())
    finally:
        shutil.rmtree(build_root, ignore_errors=True)
    if problems:
        return "failed", "; ".join(problems), figures
    parts = ["C++ extension built and ran (%.1f s)" % figures["cpp_build_s"]]
    if figures.get("cuda_extension") == "ok":
        parts.append("CUDA kernel built and ran (%.1f s)" % figures["cuda_build_s"])
    elif figures.get("sass"):
        parts.append(
            "nvcc %s matches torch; CUDA kernel built (%.1f s), SASS %s; %s"
            % (
                figures.get("nvcc_release"),
                figures["cuda_build_s"],
                ",".join(figures["sass"]),
                figures["cuda_extension"].split("; ", 1)[-1],
            )
        )
    else:
        parts.append("CUDA extension %s" % figures.get("cuda_extension"))
    return "passed", "; ".join(parts), figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    smokelib.add_expectation_args(parser, ["flavor", "expect-cuda", "archs"])
    args = parser.parse_args(argv)
    smokelib.maybe_hang(NAME)
    if args.flavor is None:
        return smokelib.emit_result(
            NAME, "skipped", "no flavor given (--flavor or GPUIMAGES_FLAVOR)"
        )
    if args.flavor == "runtime":
        status, reason, figures = check_runtime()
    else:
        archs = smokelib.normalize_archs(args.archs) if args.archs else []
        status, reason, figures = check_devel(smokelib.is_cpu_variant(args.expect_cuda), archs)
    return smokelib.emit_result(NAME, status, reason, figures)


if __name__ == "__main__":
    sys.exit(main())
