"""Smoke check `torch`: found versions against the variant, CUDA usable, matmul on every GPU.

python3 check_torch.py [--expect-torch V] [--expect-cuda M.m|cpu] [--expect-cudnn N]
    [--expect-python M.m] [--expect-torchvision V|none] [--archs sm_70,...] [--require-gpus N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import smokelib

NAME = "torch"
OPTIONS = [
    "expect-torch",
    "expect-cuda",
    "expect-cudnn",
    "expect-python",
    "expect-torchvision",
    "archs",
    "require-gpus",
]


def found_versions(torch) -> dict:
    found = {
        "torch": torch.__version__,
        "torchvision": None,
        "python": platform.python_version(),
        "python_prefix": sys.base_prefix,  # /usr: the OS's; /opt/python/...: standalone
        "cuda": getattr(torch.version, "cuda", None),
        "cudnn": None,
        "cudnn_raw": None,
        "nccl": None,
    }
    try:
        import torchvision

        found["torchvision"] = torchvision.__version__
    except ImportError as exc:  # not installed (ModuleNotFoundError) or a broken install
        if not isinstance(exc, ModuleNotFoundError) or exc.name not in (None, "torchvision"):
            found["torchvision_error"] = "%s: %s" % (type(exc).__name__, exc)
    except Exception as exc:  # e.g. RuntimeError about mismatched torch/torchvision
        found["torchvision_error"] = "%s: %s" % (type(exc).__name__, exc)
    try:
        raw = torch.backends.cudnn.version()
        found["cudnn_raw"] = raw
        found["cudnn"] = smokelib.cudnn_version_str(raw)
    except Exception:
        pass
    try:
        if found["cuda"]:
            found["nccl"] = smokelib.nccl_version_str(torch.cuda.nccl.version())
    except Exception:
        pass
    return found


def compare_versions(found: dict, expected: dict) -> dict:
    """{key: {"expected", "found", "status": ok|mismatch|not given}} for each expectation."""
    out = {}

    def put(key, exp, fnd, ok):
        status = smokelib.NOT_GIVEN if exp is None else "ok" if ok else "mismatch"
        out[key] = {"expected": exp, "found": fnd, "status": status}

    exp = expected.get("torch")
    put(
        "torch",
        exp,
        found["torch"],
        exp is not None and smokelib.versions_match(exp, found["torch"]),
    )

    exp = expected.get("cuda")
    if exp is not None and smokelib.is_cpu_variant(exp):
        put("cuda", exp, found["cuda"], found["cuda"] is None)
    else:
        put(
            "cuda",
            exp,
            found["cuda"],
            exp is not None and smokelib.major_minor(exp) == smokelib.major_minor(found["cuda"]),
        )

    exp = expected.get("cudnn")
    cudnn_major = smokelib.release_tuple(found["cudnn"])[:1] if found["cudnn"] else ()
    if exp is not None and smokelib.is_none_value(exp):
        put("cudnn", exp, found["cudnn"], found["cudnn"] is None)
    else:
        put(
            "cudnn",
            exp,
            found["cudnn"],
            exp is not None
            and bool(cudnn_major)
            and smokelib.release_tuple(exp)[:1] == cudnn_major,
        )

    exp = expected.get("python")
    put(
        "python",
        exp,
        found["python"],
        exp is not None and smokelib.major_minor(exp) == smokelib.major_minor(found["python"]),
    )

    exp = expected.get("torchvision")
    if exp is not None and smokelib.is_none_value(exp):
        put(
            "torchvision",
            exp,
            found["torchvision"],
            found["torchvision"] is None and "torchvision_error" not in found,
        )
    else:
        put(
            "torchvision",
            exp,
            found["torchvision"],
            exp is not None and smokelib.versions_match(exp, found["torchvision"]),
        )
    return out


def matmul_check(torch, device, size=256):
    """Compare a float32 matmul on `device` with the CPU result (TF32 off)."""
    gen = torch.Generator().manual_seed(1234)
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    expected = a @ b
    got = (a.to(device) @ b.to(device)).cpu()
    diff = float((got - expected).abs().max())
    ok = bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-3))
    return ok, diff


def gpu_section(torch, args, figures, problems):
    """The GPU half of the check; fills figures["gpu"] and appends to problems."""
    gpu = {}
    figures["gpu"] = gpu
    if smokelib.is_cpu_variant(args.expect_cuda):
        gpu["status"] = "skipped"
        gpu["reason"] = "CPU variant"
        return
    available = bool(torch.cuda.is_available())
    count = int(torch.cuda.device_count()) if available else 0
    gpu["cuda_available"] = available
    gpu["device_count"] = count
    if not available:
        smi_count = smokelib.nvidia_smi_list_count()
        gpu["nvidia_smi_gpus"] = smi_count
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
        if smi_count and not hidden:
            problems.append(
                "nvidia-smi lists %d GPU(s) but torch.cuda.is_available() is False "
                "(driver too old for CUDA %s?)" % (smi_count, torch.version.cuda)
            )
            gpu["status"] = "failed"
            return
        if args.require_gpus:
            problems.append("needs %d GPUs, found 0" % args.require_gpus)
            gpu["status"] = "failed"
            return
        gpu["status"] = "skipped"
        if not torch.version.cuda:
            gpu["reason"] = "torch built without CUDA"
        elif smi_count:
            gpu["reason"] = "CUDA_VISIBLE_DEVICES hides all GPUs"
        else:
            gpu["reason"] = "no GPU visible"
        return
    if args.require_gpus is not None and count < args.require_gpus:
        problems.append("needs %d GPUs, found %d" % (args.require_gpus, count))
    if hasattr(torch.backends.cuda, "matmul"):  # torch >= 1.7: exact float32 matmuls
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    get_arch_list = getattr(torch.cuda, "get_arch_list", None)
    arch_list = list(get_arch_list()) if get_arch_list else []
    gpu["arch_list_source"] = "torch.cuda.get_arch_list()" if get_arch_list else "unavailable"
    declared = smokelib.normalize_archs(args.archs) if args.archs else None
    gpu["arch_list"] = arch_list
    gpu["archs_expected"] = declared if declared is not None else smokelib.NOT_GIVEN
    if declared is not None:
        gpu["archs_expected_missing_from_torch"] = [a for a in declared if a not in arch_list]
    devices = []
    for index in range(count):
        cap = tuple(torch.cuda.get_device_capability(index))
        dev = {
            "index": index,
            "name": torch.cuda.get_device_name(index),
            "capability": "sm_%d%d" % cap,
        }
        ok, how = smokelib.arch_supported(cap, arch_list)
        dev["torch_arch"] = how if arch_list else "unknown (no get_arch_list in this torch)"
        if arch_list and not ok:
            problems.append(
                "GPU %d (%s) is %s, not among torch.cuda.get_arch_list(): %s"
                % (index, dev["name"], dev["capability"], ",".join(arch_list))
            )
        if declared is not None:
            ok, how = smokelib.arch_supported(cap, declared)
            dev["declared_arch"] = how
            if not ok:
                problems.append(
                    "GPU %d (%s) is %s, not among --archs %s"
                    % (index, dev["name"], dev["capability"], ",".join(declared))
                )
        try:
            ok, diff = matmul_check(torch, torch.device("cuda", index))
            dev["matmul_max_abs_diff"] = diff
            if not ok:
                problems.append(
                    "matmul on GPU %d differs from CPU (max abs diff %.3g)" % (index, diff)
                )
        except Exception as exc:
            dev["matmul_error"] = "%s: %s" % (type(exc).__name__, exc)
            problems.append("matmul on GPU %d failed: %s" % (index, dev["matmul_error"]))
        devices.append(dev)
    gpu["devices"] = devices
    gpu["status"] = "failed" if problems else "passed"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    smokelib.add_expectation_args(parser, OPTIONS)
    parser.add_argument(
        "--found-only", action="store_true", help="only report found versions (used by the suite)"
    )
    args = parser.parse_args(argv)
    smokelib.maybe_hang(NAME)
    try:
        import torch
    except Exception as exc:
        return smokelib.emit_result(
            NAME, "failed", "import torch failed: %s: %s" % (type(exc).__name__, exc)
        )
    found = found_versions(torch)
    figures = {"found": found}
    if args.found_only:
        return smokelib.emit_result(NAME, "passed", "found versions only", figures)

    expected = {
        "torch": args.expect_torch,
        "cuda": args.expect_cuda,
        "cudnn": args.expect_cudnn,
        "python": args.expect_python,
        "torchvision": args.expect_torchvision,
    }
    comparisons = compare_versions(found, expected)
    figures["expectations"] = comparisons
    problems = []
    for key, comp in comparisons.items():
        if comp["status"] == "mismatch":
            problems.append("%s: expected %s, found %s" % (key, comp["expected"], comp["found"]))
    if "torchvision_error" in found:
        problems.append("import torchvision failed: %s" % found["torchvision_error"])

    try:
        ok, _diff = matmul_check(torch, torch.device("cpu"))
        figures["cpu_matmul"] = "ok" if ok else "differs"
    except Exception as exc:
        problems.append("CPU matmul failed: %s" % exc)

    try:
        gpu_section(torch, args, figures, problems)
    except Exception as exc:
        problems.append("GPU checks raised %s: %s" % (type(exc).__name__, exc))

    not_given = sorted(k for k, c in comparisons.items() if c["status"] == smokelib.NOT_GIVEN)
    if problems:
        return smokelib.emit_result(NAME, "failed", "; ".join(problems), figures)
    gpu = figures.get("gpu", {})
    parts = [
        "torch %s" % found["torch"],
        "cuda %s" % found["cuda"],
        "cudnn %s" % found["cudnn"],
        "python %s" % found["python"],
    ]
    if found["torchvision"]:
        parts.append("torchvision %s" % found["torchvision"])
    if gpu.get("status") == "passed":
        parts.append("matmul ok on %d GPU(s)" % gpu["device_count"])
    elif gpu.get("reason"):
        parts.append("GPU part skipped: %s" % gpu["reason"])
    if not_given:
        parts.append("not checked (no expectation given): %s" % ", ".join(not_given))
    return smokelib.emit_result(NAME, "passed", "; ".join(parts), figures)


if __name__ == "__main__":
    sys.exit(main())
