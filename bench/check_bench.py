"""`invoke check` logic on 1,000 variants: resolve() over the compatibility data.

Run: python bench/check_bench.py  (prints the wall time; the goal is under 1 s)
"""

from __future__ import annotations

import itertools
import time

from gpuimages.core.errors import UserInputError
from gpuimages.facts.compat import load_compat
from gpuimages.facts.variant import VariantRequest, resolve


def requests(compat, n=1000):
    out = []
    for version, release in itertools.cycle(compat.torch.items()):
        for build in release.builds():
            for flavor in ("runtime", "devel"):
                out.append(VariantRequest(torch=version, cuda=build, flavor=flavor))
                if len(out) == n:
                    return out
    return out


def main() -> None:
    compat = load_compat()
    reqs = requests(compat)
    start = time.perf_counter()
    ok = refused = 0
    for r in reqs:
        try:
            resolve(r, compat)
            ok += 1
        except UserInputError:
            refused += 1
    wall = time.perf_counter() - start
    print(f"{len(reqs)} requests: {ok} resolved, {refused} refused in {wall:.3f} s")
    assert wall < 1.0, "check on 1,000 variants must stay under 1 s"


if __name__ == "__main__":
    main()
