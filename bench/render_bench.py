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

from gpuimages.compat import load_compat
from gpuimages.matrix import load_matrix
from gpuimages.render import render_all


def generate(n: int) -> dict:
    """Valid entries from the compatibility data, repeated under many repositories' names.

    Names must be unique, so the matrix crosses every valid torch x CUDA x flavor x
    Python x Horovod choice and stops at n.
    """
    compat = load_compat()
    entries = []
    for (version, release), flavor, hvd in itertools.product(
        compat.torch.items(), ("runtime", "devel"), (None, "0.28.1")
    ):
        for cuda in release.builds():
            for os_name in compat.os_for_cuda(cuda):
                for python in compat.pythons_for(version, os_name):
                    if hvd and not compat.horovod[hvd].torch.contains(version):
                        continue
                    entries.append({"torch": version, "cuda": cuda, "flavor": flavor,
                                    "os": os_name, "python": python, "horovod": hvd})
    # Variant names ignore os/python, so keep the first of each name, then fan out by repo.
    unique = {}
    for e in entries:
        key = (e["torch"], e["cuda"], e["flavor"], e["horovod"])
        unique.setdefault(key, e)
    base = list(unique.values())
    return {"axes": [], "include": base}, base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--variants", type=int, default=1000)
    args = ap.parse_args()
    _, base = generate(args.variants)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        # One matrix file per repository keeps names unique; 1,000 variants in all.
        files = []
        per_file = len(base)
        count = 0
        i = 0
        while count < args.variants:
            take = base[: min(per_file, args.variants - count)]
            path = tmpdir / f"matrix{i}.yaml"
            path.write_text(yaml.safe_dump({"repository": f"bench/repo{i}", "include": take}))
            files.append(path)
            count += len(take)
            i += 1
        load_compat()  # parsed once per process, as in every task
        timings = {"load+validate": [], "render": []}
        for _ in range(3):
            t0 = time.perf_counter()
            variants = [v for f in files for v in load_matrix(f).variants]
            t1 = time.perf_counter()
            out = tmpdir / f"out{_}"
            for j, f in enumerate(files):
                mine = tuple(v for v in variants if v.repository == f"bench/repo{j}")
                render_all(mine, out / f"repo{j}")
            t2 = time.perf_counter()
            timings["load+validate"].append(t1 - t0)
            timings["render"].append(t2 - t1)
        print(f"variants: {len(variants)} in {len(files)} matrix files")
        for phase, values in timings.items():
            print(f"{phase:>14}: best {min(values):.3f} s  (runs: "
                  + ", ".join(f"{v:.3f}" for v in values) + ")")


if __name__ == "__main__":
    main()
