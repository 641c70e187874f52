"""Benchmark: load + validate + render a generated 1,000-variant matrix.

    python bench/render_bench.py [--variants 1000]

Prints the seconds for each phase (best of 3); targets: validation well under 1 s,
rendering under 5 s on a 2-core machine. Results are written up in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import yaml

from gpuimages.build.render import render_all
from gpuimages.facts.compat import load_compat
from gpuimages.facts.matrix import load_matrix


def entries() -> list[dict]:
    """Every distinct valid variant the compatibility data allows (names must be unique)."""
    compat = load_compat()
    unique: dict[tuple, dict] = {}
    for (version, release), flavor, hvd in itertools.product(
        compat.torch.items(), ("runtime", "devel"), (None, "0.28.1")
    ):
        if hvd and not compat.horovod[hvd].torch.contains(version):
            continue
        for cuda in release.builds():
            entry = {"torch": version, "cuda": cuda, "flavor": flavor, "horovod": hvd}
            unique.setdefault((version, cuda, flavor, hvd), entry)
    return list(unique.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--variants", type=int, default=1000)
    args = ap.parse_args()
    base = entries()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        # The same valid entries under several repositories: 1,000 variants in all.
        files = []
        left = args.variants
        while left > 0:
            take = base[:left]
            path = tmpdir / f"matrix{len(files)}.yaml"
            path.write_text(yaml.safe_dump({"repository": f"bench/r{len(files)}", "include": take}))
            files.append(path)
            left -= len(take)
        load_compat()  # parsed once per process, as in every task
        timings: dict[str, list[float]] = {"load+validate": [], "render": []}
        for run in range(3):
            t0 = time.perf_counter()
            matrices = [load_matrix(f) for f in files]
            t1 = time.perf_counter()
            for i, m in enumerate(matrices):
                render_all(m.variants, tmpdir / f"out{run}" / str(i))
            t2 = time.perf_counter()
            timings["load+validate"].append(t1 - t0)
            timings["render"].append(t2 - t1)
        total = sum(len(m.variants) for m in matrices)
        print(f"variants: {total} in {len(files)} matrix files")
        for phase, values in timings.items():
            runs = ", ".join(f"{v:.3f}" for v in values)
            print(f"{phase:>14}: best {min(values):.3f} s  (runs: {runs})")


if __name__ == "__main__":
    main()
