"""Benchmark: wall time of the smoke suite on an already built image (target: CPU < 60 s).

    python bench/smoke_bench.py [--variant 2.13.0-cpu-runtime] [--runs 3]

Times `smoke()` (the whole `invoke smoke` minus printing), best of N, and the per-check
durations of the best run. Results are written up in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

from gpuimages.core.paths import ROOT
from gpuimages.facts.matrix import load_matrix
from gpuimages.vet.smoke import SmokeOptions, smoke


def main() -> None:
    ap = argparse.ArgumentParser(description="gpuimages smoke-suite benchmark")
    ap.add_argument("--variant", default="2.13.0-cpu-runtime")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    variant = load_matrix(ROOT / "matrix.yaml").by_name()[args.variant]
    runs = []
    for _ in range(args.runs):
        start = time.monotonic()
        report = smoke(variant, SmokeOptions())
        runs.append((time.monotonic() - start, report))
        if report["status"] != "passed":
            raise SystemExit(f"smoke failed: {report['failed_checks']}")
    best, report = min(runs, key=lambda r: r[0])
    print(
        f"{variant.tag}: best {best:.1f} s of {args.runs} "
        f"(runs: {', '.join(f'{t:.1f}' for t, _ in runs)}); target < 60 s"
    )
    for check in report["checks"]:
        print(f"  {check['name']:>14} {check['status']:>8} {check.get('duration_s', 0):6.1f} s")


if __name__ == "__main__":
    main()
