"""Benchmark: build speed and image size of the CPU variants, side by side in one run.

    python bench/build_bench.py [--wheelhouse wheelhouse] [--skip-naive]

Needs a running Docker engine, the local base (scripts/make-base-image.sh) and a
wheelhouse with the CPU variant's wheels (`invoke wheelhouse --variant 2.13.0-cpu-runtime`).
Every cold figure starts from a fresh base (the local base plus a one-file layer of
its own), so no layer of an earlier build can be reused; BuildKit's cache mounts (apt
downloads) do persist, as they would on any build host. Figures:

1. warm rebuild after touching only a smoke script, as a share of the cold build;
2. image size against the payload floor (base + Python + site-packages) and against a
   straightforward single-stage Dockerfile that pip-installs the same wheels;
3. four CPU variants sharing a base (runtime and devel, each also under a second
   repository name, i.e. the same builds published twice) against 4 x one cold build.

Results are written up in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import docker

from gpuimages.build.engine import LOCAL_BASE, find_docker_cli
from gpuimages.build.image import MB, PackageSources, build_many
from gpuimages.build.render import render_all
from gpuimages.core.paths import ROOT
from gpuimages.facts.matrix import load_matrix

RUNTIME = "2.13.0-cpu-runtime"
DEVEL = "2.13.0-cpu-devel"
TOUCHED = ROOT / "scripts" / "smoke" / "README.md"

NAIVE = """\
FROM {base}
RUN apt-get update && apt-get install -y python3.11 python3.11-venv
COPY wheelhouse /wheelhouse
RUN python3.11 -m venv /opt/venv && /opt/venv/bin/pip install --no-index \\
    --find-links /wheelhouse torch==2.13.0+cpu numpy==2.4.1
COPY scripts/smoke /opt/gpuimages/smoke
"""


def fresh_base(client: docker.DockerClient) -> str:
    """The local base plus one tiny unique layer: a new layer chain, so no cache hit."""
    run_id = uuid.uuid4().hex[:8]
    tag = f"gpuimages-bench/base:{run_id}"
    dockerfile = f"FROM {LOCAL_BASE}\nRUN echo {run_id} > /etc/gpuimages-bench-run\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


def offline_sources(base: str, wheelhouse: str | Path) -> PackageSources:
    """Both stages on `base`, packages only from the wheelhouse: nothing else varies."""
    return PackageSources(
        base_image=base, builder_image=base, wheelhouse=Path(wheelhouse), offline=True
    )


def warm_rebuild(variant, cli, sources, dockerfiles, work) -> float:
    """Seconds to rebuild after touching only a smoke script (restored afterwards)."""
    original = TOUCHED.read_text()
    try:
        TOUCHED.write_text(original + f"\n<!-- bench {uuid.uuid4().hex} -->\n")
        warm, _ = timed_build([variant], cli, sources, dockerfiles, work)
    finally:
        TOUCHED.write_text(original)
    return warm


def timed_build(variants, cli, sources, dockerfiles, work):
    start = time.monotonic()
    results = build_many(
        tuple(variants), cli, sources, dockerfiles=dockerfiles, work_dir=work, jobs=2
    )
    elapsed = time.monotonic() - start
    for r in results:
        if not r.ok:
            raise SystemExit(f"bench build of {r.variant.name} failed: {r.error}")
    return elapsed, results


def main() -> None:
    ap = argparse.ArgumentParser(description="gpuimages build benchmark")
    ap.add_argument("--wheelhouse", default=str(ROOT / "wheelhouse"))
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    client = docker.from_env(timeout=900)
    cli = find_docker_cli()
    matrix = load_matrix(ROOT / "matrix.yaml")
    by_name = matrix.by_name()
    runtime = replace(by_name[RUNTIME], repository="gpuimages-bench/pytorch", size_budget_mb=None)
    devel = replace(by_name[DEVEL], repository="gpuimages-bench/pytorch", size_budget_mb=None)
    mirror = [replace(v, repository="gpuimages-bench/mirror") for v in (runtime, devel)]
    made: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        dockerfiles = tmpdir / "dockerfiles"
        render_all((runtime, devel, *mirror), dockerfiles)

        def sources(base: str) -> PackageSources:
            return offline_sources(base, args.wheelhouse)

        try:
            base1 = fresh_base(client)
            made.append(base1)
            cold, [r1] = timed_build([runtime], cli, sources(base1), dockerfiles, tmpdir / "w")
            warm = warm_rebuild(runtime, cli, sources(base1), dockerfiles, tmpdir / "w")
            print(f"cold build ({RUNTIME}): {cold:.1f} s")
            print(
                f"warm rebuild after a smoke-script change: {warm:.1f} s = "
                f"{warm / cold:.1%} of cold (target < 10%)"
            )

            base_size = client.images.get(LOCAL_BASE).attrs["Size"]
            out = (
                client.containers.run(
                    r1.image_id,
                    [
                        "bash",
                        "-c",
                        "du -sb /opt/venv/lib/python3.11/site-packages | cut -f1; "
                        "dpkg-query -W -f='${Installed-Size}\\n' python3.11 python3.11-minimal "
                        "libpython3.11-minimal libpython3.11-stdlib ca-certificates | "
                        "awk '{s+=$1} END {print s*1024}'",
                    ],
                    remove=True,
                )
                .decode()
                .split()
            )
            site, python = int(out[0]), int(out[1])
            floor = base_size + python + site
            size = r1.size_bytes or 0
            print(
                f"image {size / MB:.0f} MB; payload floor {floor / MB:.0f} MB (base "
                f"{base_size / MB:.0f} + python {python / MB:.0f} + site-packages "
                f"{site / MB:.0f}): {size / floor - 1:+.1%} (target within 10%)"
            )
            if not args.skip_naive:
                ctx = tmpdir / "naive"
                (ctx / "scripts").mkdir(parents=True)
                shutil.copytree(ROOT / "scripts" / "smoke", ctx / "scripts" / "smoke")
                shutil.copytree(args.wheelhouse, ctx / "wheelhouse")
                (ctx / "Dockerfile").write_text(NAIVE.format(base=base1))
                start = time.monotonic()
                naive, _ = client.images.build(
                    path=str(ctx), tag="gpuimages-bench/naive:1", rm=True
                )
                made.append("gpuimages-bench/naive:1")
                print(
                    f"single-stage Dockerfile: {naive.attrs['Size'] / MB:.0f} MB in "
                    f"{time.monotonic() - start:.0f} s; ours is "
                    f"{size / naive.attrs['Size']:.0%} of it"
                )

            base2 = fresh_base(client)
            made.append(base2)
            four, results = timed_build(
                [runtime, devel, *mirror], cli, sources(base2), dockerfiles, tmpdir / "w"
            )
            print(
                f"4 CPU variants sharing a base: {four:.1f} s = {four / cold:.2f} x one cold "
                f"build (target < 2x); sizes: "
                + ", ".join(
                    f"{r.variant.repository}:{r.variant.name} {(r.size_bytes or 0) / MB:.0f} MB"
                    for r in results
                )
            )
            made += [v.tag for v in (runtime, devel, *mirror)]
        finally:
            for tag in made:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=True)


if __name__ == "__main__":
    main()
