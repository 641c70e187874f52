"""Smoke check `cuda`: the CUDA stack inside torch's reach, proven without a GPU.

python3 check_cuda.py [--expect-cuda M.m|cpu] [--expect-cudnn N] [--expect-cudnn-version X.Y.Z]
    [--expect-nccl X.Y.Z] [--archs sm_75,...] [--base os|nvidia]

- torch.version.cuda equals the variant's CUDA (major.minor);
- cuDNN's version (major, and the full version where the data has it) and NCCL's;
- the archs torch was compiled for (torch._C._cuda_getArchFlags(): unlike
  torch.cuda.get_arch_list() it needs no GPU) equal the variant's `archs` label;
- every CUDA library beside torch (its lib/ and the nvidia-* wheels) loads, with its path;
  one that fails only for want of libcuda.so.1 needs the driver the container toolkit
  injects at run time, and is reported as such;
- no CUDA library is present twice (same soname in two files): on the `os` route that is a
  failure; on the `nvidia` route the duplicated bytes are reported (the known cost of a pip
  torch on nvidia/cuda, see the README).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import smokelib

NAME = "cuda"
OPTIONS = [
    "expect-cuda",
    "expect-cudnn",
    "expect-cudnn-version",
    "expect-nccl",
    "archs",
    "base",
]

# CUDA libraries that torch or its wheels bring (driver libraries are not among them:
# libcuda and libnvidia-* come from the host through the container toolkit).
CUDA_LIBRARY = re.compile(
    r"^lib(cudart|cublas|cublasLt|cudnn\w*|nccl|cufft|cufftw|curand|cusolver\w*|cusparse\w*"
    r"|nvrtc[\w-]*|nvJitLink|cupti|nvToolsExt|nvshmem\w*|cufile\w*|nvperf\w*|nvblas|npp\w*"
    r"|nvjpeg|nvfatbin|nvptxcompiler_static)"
)
# libcudart-9335f6a2.so.11.0 (torch 1.x bundles with a hash) -> libcudart.so.11
SONAME = re.compile(r"^(lib[\w+-]+?)(?:-[0-9a-f]{8})?\.so(?:\.(\d+))?")
SYSTEM_LIB_DIRS = (
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/x86_64-linux/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/local/lib",
)
NEEDS_DRIVER = "libcuda.so"
# Libraries whose failure to load is expected where an optional system stack is absent.
OPTIONAL = {
    "libcufile_rdma.so": "GPUDirect Storage over RDMA: needs the host's RDMA libraries",
}


def soname_key(filename):
    """The soname a file provides, hash and minor parts dropped; None if not a CUDA lib."""
    if not CUDA_LIBRARY.match(filename):
        return None
    match = SONAME.match(filename)
    if not match:
        return None
    base, major = match.group(1), match.group(2)
    return "%s.so%s" % (base, "." + major if major else "")


def library_dirs(torch_dir, site_dirs):
    """Where torch finds its CUDA: torch/lib and every nvidia/*/lib of the site dirs."""
    dirs = [os.path.join(torch_dir, "lib")]
    for site in site_dirs:
        nvidia = os.path.join(site, "nvidia")
        if not os.path.isdir(nvidia):
            continue
        for root, subdirs, _files in os.walk(nvidia):
            if os.path.basename(root) in ("lib", "lib64"):
                dirs.append(root)
                subdirs[:] = []
    return dirs


def scan(dirs):
    """{soname key: [real paths]} for the CUDA libraries under dirs (symlinks collapse)."""
    found = {}
    seen = set()
    for directory in dirs:
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            key = soname_key(name)
            if key is None:
                continue
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                continue
            real = os.path.realpath(path)
            stat = os.stat(real)
            ident = (stat.st_dev, stat.st_ino)
            if ident in seen:
                continue
            seen.add(ident)
            found.setdefault(key, []).append(real)
    return found


def duplicates(found):
    """{soname: paths} for sonames present in more than one file, and the extra bytes."""
    dups = {key: paths for key, paths in found.items() if len(paths) > 1}
    extra = 0
    for paths in dups.values():
        sizes = sorted(os.path.getsize(p) for p in paths)
        extra += sum(sizes[:-1])
    return dups, extra


def load_all(paths, loader=None):
    """Load each library (dependencies first, by retrying); {path: 'ok'|'needs driver'|error}."""
    loader = loader or (lambda p: ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL))
    results = {}
    pending = list(paths)
    for _round in range(4):
        failed = []
        for path in pending:
            try:
                loader(path)
                results[path] = "ok"
            except OSError as exc:
                results[path] = str(exc)
                failed.append(path)
        if not failed or len(failed) == len(pending):
            break
        pending = failed
    for path, outcome in results.items():
        if outcome == "ok":
            continue
        if NEEDS_DRIVER in outcome:
            results[path] = "needs driver (%s)" % outcome.split(":")[-1].strip()
        optional = OPTIONAL.get((soname_key(os.path.basename(path)) or "").rsplit(".", 1)[0])
        if optional:
            results[path] = "optional: %s (%s)" % (optional, outcome)
    return results


def loaded_cuda_libraries(maps_path="/proc/self/maps"):
    """The CUDA libraries this process has mapped, with their paths."""
    out = {}
    try:
        with open(maps_path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 6 or not parts[5].startswith("/"):
                    continue
                key = soname_key(os.path.basename(parts[5]))
                if key:
                    out[key] = parts[5]
    except OSError:
        pass
    return out


def compiled_archs(torch):
    flags = getattr(torch._C, "_cuda_getArchFlags", None)
    if flags is None:
        return None
    return [a for a in str(flags()).split() if a]


def run(torch, args, site_dirs):
    figures = {"torch_cuda": torch.version.cuda}
    problems = []
    notes = []

    expected_cuda = args.expect_cuda
    if expected_cuda and smokelib.major_minor(expected_cuda) != smokelib.major_minor(
        torch.version.cuda
    ):
        problems.append(
            "torch.version.cuda is %s, expected %s" % (torch.version.cuda, expected_cuda)
        )

    raw = torch.backends.cudnn.version()
    cudnn = smokelib.cudnn_version_str(raw)
    figures["cudnn"] = cudnn
    if cudnn is None:
        problems.append("cuDNN does not load (torch.backends.cudnn.version() is None)")
    else:
        if (
            args.expect_cudnn
            and smokelib.release_tuple(cudnn)[:1] != smokelib.release_tuple(args.expect_cudnn)[:1]
        ):
            problems.append("cuDNN is %s, expected major %s" % (cudnn, args.expect_cudnn))
        want = args.expect_cudnn_version
        if (
            want
            and not smokelib.is_none_value(want)
            and smokelib.release_tuple(cudnn)[:3] != smokelib.release_tuple(want)[:3]
        ):
            problems.append("cuDNN is %s, expected %s" % (cudnn, args.expect_cudnn_version))

    try:
        nccl = smokelib.nccl_version_str(torch.cuda.nccl.version())
    except Exception as exc:
        nccl = None
        problems.append("NCCL version unavailable: %s: %s" % (type(exc).__name__, exc))
    figures["nccl"] = nccl
    want = args.expect_nccl
    if (
        nccl
        and want
        and not smokelib.is_none_value(want)
        and smokelib.release_tuple(nccl)[:3] != smokelib.release_tuple(want)[:3]
    ):
        problems.append("NCCL is %s, expected %s" % (nccl, want))

    archs = compiled_archs(torch)
    figures["compiled_archs"] = archs
    if archs is None:
        notes.append("this torch has no _cuda_getArchFlags: archs not checked")
    elif args.archs:
        declared = smokelib.normalize_archs(args.archs)
        sass = sorted(a for a in archs if a.startswith("sm_"))
        if sorted(a for a in declared if a.startswith("sm_")) != sass:
            problems.append(
                "torch was compiled for %s, the variant declares %s"
                % (",".join(archs), ",".join(declared))
            )

    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    ours = scan(library_dirs(torch_dir, site_dirs))
    loads = load_all(sorted(p for paths in ours.values() for p in paths))
    figures["libraries"] = loads
    broken = {
        p: r for p, r in loads.items() if r != "ok" and not r.startswith(("needs", "optional"))
    }
    for path, reason in sorted(broken.items()):
        problems.append("%s does not load: %s" % (path, reason))
    figures["loaded_by_torch"] = loaded_cuda_libraries()

    everywhere = scan(library_dirs(torch_dir, site_dirs) + list(SYSTEM_LIB_DIRS))
    dups, extra = duplicates(everywhere)
    figures["duplicates"] = dups
    figures["duplicate_bytes"] = extra
    if dups:
        what = "%d CUDA libraries present twice (%.0f MB): %s" % (
            len(dups),
            extra / 1e6,
            ", ".join(sorted(dups)),
        )
        if (args.base or "os") == "os":
            problems.append(what)
        else:
            notes.append(what + " (nvidia route: the base image's copies are not loaded)")

    figures["notes"] = notes
    if problems:
        return "failed", "; ".join(problems), figures
    parts = [
        "CUDA %s" % torch.version.cuda,
        "cuDNN %s" % cudnn,
        "NCCL %s" % nccl,
        "archs %s" % " ".join(archs or []),
        "%d libraries load" % sum(1 for r in loads.values() if r == "ok"),
    ]
    needs_driver = sum(1 for r in loads.values() if r.startswith("needs driver"))
    if needs_driver:
        parts.append("%d need the driver" % needs_driver)
    parts.append("no duplicates" if not dups else "duplicates reported")
    return "passed", "; ".join(parts + notes), figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    smokelib.add_expectation_args(parser, OPTIONS)
    args = parser.parse_args(argv)
    smokelib.maybe_hang(NAME)
    if smokelib.is_cpu_variant(args.expect_cuda):
        return smokelib.emit_result(NAME, "skipped", "CPU variant: no CUDA stack")
    try:
        import torch
    except Exception as exc:
        return smokelib.emit_result(
            NAME, "failed", "import torch failed: %s: %s" % (type(exc).__name__, exc)
        )
    if not torch.version.cuda:
        if args.expect_cuda:
            return smokelib.emit_result(
                NAME,
                "failed",
                "torch %s is a CPU build, expected CUDA %s" % (torch.__version__, args.expect_cuda),
            )
        return smokelib.emit_result(NAME, "skipped", "torch built without CUDA")
    import site

    torch_site = os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))
    site_dirs = list(dict.fromkeys([*site.getsitepackages(), torch_site]))
    status, reason, figures = run(torch, args, site_dirs)
    return smokelib.emit_result(NAME, status, reason, figures)


if __name__ == "__main__":
    sys.exit(main())
