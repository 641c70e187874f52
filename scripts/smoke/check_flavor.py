"""Smoke check `flavor`: runtime images carry no compiler; devel images build extensions.

    python3 check_flavor.py --flavor runtime|devel [--expect-cuda M.m|cpu]

runtime: no gcc/g++/cc/c++/nvcc on PATH nor /usr/local/cuda/bin/nvcc.
devel: torch.utils.cpp_extension.load_inline builds, loads and runs a tiny C++ op (and a
tiny CUDA kernel when nvcc and a GPU are there), in a temporary build directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
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

CUDA_SOURCE = """
#include <torch/extension.h>

__global__ void smoke_add_one_kernel(const float* x, float* y, int64_t n) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] + 1.0f;
}

torch::Tensor smoke_add_one(torch::Tensor x) {
  auto y = torch::empty_like(x);
  int64_t n = x.numel();
  int threads = 128;
  int blocks = (int)((n + threads - 1) / threads);
  smoke_add_one_kernel<<<blocks, threads>>>(x.data_ptr<float>(), y.data_ptr<float>(), n);
  return y;
}
"""
CUDA_DECL = "torch::Tensor smoke_add_one(torch::Tensor x);"


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


def check_devel(cpu_variant):
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
        build_dir = os.path.join(build_root, "cpp")
        os.makedirs(build_dir)
        start = time.time()
        try:
            module = cpp_extension.load_inline(
                name="gpuimages_smoke_cpp",
                cpp_sources=[CPP_SOURCE],
                functions=["smoke_axpy"],
                build_directory=build_dir,
                extra_cflags=["-O0"],
                verbose=True,
            )
            x = torch.arange(6, dtype=torch.float32)
            got = module.smoke_axpy(x, 2.0)
            figures["cpp_extension"] = "ok" if torch.equal(got, x * 2 + 1) else "wrong result"
            if figures["cpp_extension"] != "ok":
                problems.append("C++ extension returned %s" % got.tolist())
        except Exception as exc:
            figures["cpp_extension"] = "error"
            problems.append("C++ extension build/load failed: %s: %s" % (type(exc).__name__, exc))
        figures["cpp_build_s"] = round(time.time() - start, 2)

        nvcc = nvcc_path()
        figures["nvcc"] = nvcc
        if cpu_variant or torch.version.cuda is None:
            figures["cuda_extension"] = "skipped: CPU variant"
        elif nvcc is None:
            figures["cuda_extension"] = "skipped: nvcc not found"
            problems.append("devel image for CUDA %s has no nvcc" % torch.version.cuda)
        elif not torch.cuda.is_available():
            figures["cuda_extension"] = "skipped: no GPU visible"
        else:
            build_dir = os.path.join(build_root, "cuda")
            os.makedirs(build_dir)
            start = time.time()
            try:
                module = cpp_extension.load_inline(
                    name="gpuimages_smoke_cuda",
                    cpp_sources=[CUDA_DECL],
                    cuda_sources=[CUDA_SOURCE],
                    functions=["smoke_add_one"],
                    build_directory=build_dir,
                    verbose=True,
                )
                x = torch.arange(1000, dtype=torch.float32, device="cuda")
                got = module.smoke_add_one(x)
                torch.cuda.synchronize()
                ok = torch.equal(got.cpu(), x.cpu() + 1)
                figures["cuda_extension"] = "ok" if ok else "wrong result"
                if not ok:
                    problems.append("CUDA kernel returned a wrong result")
            except Exception as exc:
                figures["cuda_extension"] = "error"
                problems.append(
                    "CUDA extension build/load failed: %s: %s" % (type(exc).__name__, exc)
                )
            figures["cuda_build_s"] = round(time.time() - start, 2)
    finally:
        shutil.rmtree(build_root, ignore_errors=True)
    if problems:
        return "failed", "; ".join(problems), figures
    parts = ["C++ extension built and ran (%.1f s)" % figures["cpp_build_s"]]
    if figures.get("cuda_extension") == "ok":
        parts.append("CUDA kernel built and ran (%.1f s)" % figures["cuda_build_s"])
    else:
        parts.append("CUDA extension %s" % figures.get("cuda_extension"))
    return "passed", "; ".join(parts), figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    smokelib.add_expectation_args(parser, ["flavor", "expect-cuda"])
    args = parser.parse_args(argv)
    smokelib.maybe_hang(NAME)
    if args.flavor is None:
        return smokelib.emit_result(
            NAME, "skipped", "no flavor given (--flavor or GPUIMAGES_FLAVOR)"
        )
    if args.flavor == "runtime":
        status, reason, figures = check_runtime()
    else:
        status, reason, figures = check_devel(smokelib.is_cpu_variant(args.expect_cuda))
    return smokelib.emit_result(NAME, status, reason, figures)


if __name__ == "__main__":
    sys.exit(main())
