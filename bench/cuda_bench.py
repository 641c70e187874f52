"""Benchmark: a CUDA variant on the os route (torch 2.14.1, CUDA 13.0), side by side in one run.

    python bench/cuda_bench.py [--wheelhouse wheelhouse]

Needs a running Docker engine, the local base (scripts/make-base-image.sh) and a wheelhouse
with the devel variant's wheels (`invoke wheelhouse --variant 2.14.1-cuda13.0-cudnn9-devel`,
which includes the runtime's). Cold figures start from a fresh base (the local base plus a
one-file layer of its own), so no image layer of an earlier build is reused; BuildKit's
cache mounts and its copy of the build context persist, as on any build host. Figures:

1. runtime image size against its payload floor (base + Python + the installed venv),
   and the bytes of CUDA libraries present twice inside it (the smoke suite's `cuda` check);
2. warm rebuild after touching only a smoke script, as a share of the cold build;
3. cold runtime + devel together against the runtime alone (devel builds on its layers).

Results are written up in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import docker
from build_bench import fresh_base, offline_sources, timed_build, warm_rebuild

from gpuimages.build.engine import LOCAL_BASE, find_docker_cli
from gpuimages.build.image import MB, PackageSources
from gpuimages.build.render import render_all
from gpuimages.core.paths import ROOT
from gpuimages.facts.matrix import load_matrix

RUNTIME = "2.14.1-cuda13.0-cudnn9-runtime"
DEVEL = "2.14.1-cuda13.0-cudnn9-devel"
REPOSITORY = "gpuimages-bench/pytorch-cuda"

FLOOR = (
    "du -sb /opt/venv | cut -f1; "
    "dpkg-query -W -f='${Installed-Size}\\n' python3.11 python3.11-minimal "
    "libpython3.11-minimal libpython3.11-stdlib ca-certificates | awk '{s+=$1} END {print s*1024}'"
)


def main() -> None:
    ap = argparse.ArgumentParser(description="gpuimages CUDA (os route) benchmark")
    ap.add_argument("--wheelhouse", default=str(ROOT / "wheelhouse"))
    args = ap.parse_args()
    client = docker.from_env(timeout=1800)
    cli = find_docker_cli()
    by_name = load_matrix(ROOT / "matrix.yaml").by_name()
    runtime = replace(by_name[RUNTIME], repository=REPOSITORY, size_budget_mb=None)
    devel = replace(by_name[DEVEL], repository=REPOSITORY, size_budget_mb=None)
    made: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        dockerfiles = tmpdir / "dockerfiles"
        render_all((runtime, devel), dockerfiles)

        def sources(base: str) -> PackageSources:
            return offline_sources(base, args.wheelhouse)

        try:
            base1 = fresh_base(client)
            made.append(base1)
            cold, [r1] = timed_build([runtime], cli, sources(base1), dockerfiles, tmpdir / "w")
            made.append(runtime.tag)
            print(f"cold build ({RUNTIME}): {cold:.1f} s, {(r1.size_bytes or 0) / MB:.0f} MB")

            out = client.containers.run(r1.image_id, ["bash", "-c", FLOOR], remove=True)
            venv, python = (int(x) for x in out.decode().split())
            base_size = client.images.get(LOCAL_BASE).attrs["Size"]
            floor = base_size + python + venv
            size = r1.size_bytes or 0
            print(
                f"image {size / MB:.0f} MB; payload floor {floor / MB:.0f} MB (base "
                f"{base_size / MB:.0f} + python {python / MB:.0f} + venv {venv / MB:.0f}): "
                f"{size / floor:.3f} x (target <= 1.05 x)"
            )
            raw = client.containers.run(
                r1.image_id,
                ["python", "/opt/gpuimages/smoke/check_cuda.py"],
                remove=True,
            ).decode()
            result = json.loads(raw.split("GPUIMAGES_RESULT ", 1)[1].splitlines()[0])
            dup = result["figures"]["duplicate_bytes"]
            print(
                f"CUDA libraries present twice: {len(result['figures']['duplicates'])} "
                f"({dup} bytes; target 0); cuda check {result['status']}: {result['reason']}"
            )

            warm = warm_rebuild(runtime, cli, sources(base1), dockerfiles, tmpdir / "w")
            print(
                f"warm rebuild after a smoke-script change: {warm:.1f} s = "
                f"{warm / cold:.1%} of cold (target <= 3%)"
            )

            base2 = fresh_base(client)
            made.append(base2)
            both, results = timed_build(
                [runtime, devel], cli, sources(base2), dockerfiles, tmpdir / "w2"
            )
            made.append(devel.tag)
            print(
                f"cold runtime + devel together: {both:.1f} s = {both / cold:.2f} x the runtime "
                f"alone (target <= 1.3 x); devel {(results[1].size_bytes or 0) / MB:.0f} MB"
            )
        finally:
            for tag in made:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, force=True)


if __name__ == "__main__":
    main()
