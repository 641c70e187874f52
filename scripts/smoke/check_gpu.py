"""Smoke check `gpu`: what nvidia-smi reports, and the driver against the minimum.

python3 check_gpu.py [--min-driver 450.80.02] [--expect-cuda 11.3|cpu] [--require-gpus N]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import smokelib

NAME = "gpu"


def evaluate(gpus, info, min_driver=None, require_gpus=None):
    """(status, reason, figures) for parsed nvidia-smi rows."""
    figures = dict(info)
    figures["gpus"] = gpus
    figures["count"] = len(gpus)
    drivers = sorted(set(g["driver"] for g in gpus if g.get("driver")))
    figures["driver"] = drivers[0] if len(drivers) == 1 else (drivers or None)
    figures["min_driver"] = min_driver if min_driver else smokelib.NOT_GIVEN
    problems = []
    if not gpus:
        problems.append("nvidia-smi lists no GPU")
    if require_gpus is not None and len(gpus) < require_gpus:
        problems.append("needs %d GPUs, found %d" % (require_gpus, len(gpus)))
    if len(drivers) > 1:
        problems.append("GPUs report different drivers: %s" % ", ".join(drivers))
    if min_driver:
        for driver in drivers:
            if not smokelib.version_ge(driver, min_driver):
                problems.append("driver %s is older than the minimum %s" % (driver, min_driver))
    if problems:
        return "failed", "; ".join(problems), figures
    summary = ", ".join(
        "%s (%s MiB%s)"
        % (g["name"], g["memory_mib"], ", cc %s" % g["compute_cap"] if g.get("compute_cap") else "")
        for g in gpus
    )
    reason = "%d GPU(s), driver %s: %s" % (len(gpus), figures["driver"], summary)
    if min_driver:
        reason += "; driver >= %s" % min_driver
    return "passed", reason, figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    smokelib.add_expectation_args(parser, ["min-driver", "expect-cuda", "require-gpus"])
    args = parser.parse_args(argv)
    smokelib.maybe_hang(NAME)
    if smokelib.is_cpu_variant(args.expect_cuda):
        return smokelib.emit_result(NAME, "skipped", "CPU variant")
    if smokelib.nvidia_smi_path() is None:
        if args.require_gpus:
            return smokelib.emit_result(
                NAME, "failed", "needs %d GPUs, but nvidia-smi not found" % args.require_gpus
            )
        return smokelib.emit_result(NAME, "skipped", "no GPU: nvidia-smi not found")
    try:
        gpus, info = smokelib.query_gpus()
    except Exception as exc:  # nvidia-smi present but the driver does not answer
        return smokelib.emit_result(NAME, "failed", str(exc))
    status, reason, figures = evaluate(gpus, info, args.min_driver, args.require_gpus)
    return smokelib.emit_result(NAME, status, reason, figures)


if __name__ == "__main__":
    sys.exit(main())
