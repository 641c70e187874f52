"""Proof: Horovod with NCCL built against a CUDA 13 torch on the os route, no GPU needed.

    python bench/horovod_cuda.py [--wheelhouse wheelhouse] [--keep]

Builds `2.14.1-cuda13.0-cudnn9-runtime-horovod0.28.1` (torch 2.14.1, CUDA 13.0 from its
wheels; nvcc 13.0 and NCCL's headers from PyPI in the builder stage only) from the local
Debian base and an offline wheelhouse (`invoke wheelhouse --variant <that name>`), then
asks the image's Horovod what it was built with (`horovodrun --check-build`): NCCL must
be among the tensor operations, PyTorch among the frameworks, and the runtime image must
hold no compiler. Prints the build time and the check-build table. The image is removed
afterwards unless --keep. Takes 10-20 minutes on 2 cores (Horovod's C++ and CUDA sources).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import docker

from gpuimages.build.engine import LOCAL_BASE, find_docker_cli
from gpuimages.build.image import MB, PackageSources, build_many
from gpuimages.build.render import render_all
from gpuimages.core.paths import ROOT
from gpuimages.facts.matrix import load_matrix

VARIANT = "2.14.1-cuda13.0-cudnn9-runtime-horovod0.28.1"


def checked(check_build: str, section: str, name: str) -> bool:
    """Whether `horovodrun --check-build` ticks `name` ([X] NCCL) in `section`."""
    part = check_build.split(section, 1)[-1]
    return bool(re.search(rf"\[X\]\s+{re.escape(name)}\b", part))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheelhouse", default=str(ROOT / "wheelhouse"))
    ap.add_argument("--keep", action="store_true", help="keep the image afterwards")
    args = ap.parse_args()
    client = docker.from_env(timeout=3600)
    variant = replace(
        load_matrix(ROOT / "matrix.yaml").by_name()[VARIANT],
        repository="gpuimages-bench/pytorch-horovod",
        size_budget_mb=None,
    )
    sources = PackageSources(
        base_image=LOCAL_BASE,
        builder_image=LOCAL_BASE,
        wheelhouse=Path(args.wheelhouse),
        offline=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        dockerfiles = Path(tmp) / "dockerfiles"
        render_all((variant,), dockerfiles)
        start = time.monotonic()
        [result] = build_many(
            (variant,), find_docker_cli(), sources, dockerfiles=dockerfiles, work_dir=Path(tmp)
        )
        elapsed = time.monotonic() - start
        if not result.ok:
            log = result.log_path.read_text() if result.log_path else ""
            errors = log.split("==== build-horovod: compiler errors ====")[-1][-4000:]
            raise SystemExit(f"{VARIANT} did not build: {result.error}\n{errors}")
    try:
        out = client.containers.run(
            result.image_id, ["horovodrun", "--check-build"], remove=True
        ).decode()
        compilers = client.containers.run(
            result.image_id,
            ["bash", "-c", "command -v nvcc gcc g++ cc c++ || true"],
            remove=True,
        ).decode()
        print(f"{VARIANT}: built in {elapsed:.0f} s, {(result.size_bytes or 0) / MB:.0f} MB")
        print(out.strip())
        ok = {
            "NCCL": checked(out, "Available Tensor Operations", "NCCL"),
            "PyTorch": checked(out, "Available Frameworks", "PyTorch"),
            "Gloo": checked(out, "Available Controllers", "Gloo"),
            "MPI": checked(out, "Available Controllers", "MPI"),
        }
        print("built in: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in ok.items()))
        print(f"compilers in the runtime image: {compilers.split() or 'none'}")
        if not all(ok.values()) or compilers.split():
            raise SystemExit(1)
    finally:
        if not args.keep:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(variant.tag, force=True)


if __name__ == "__main__":
    main()
