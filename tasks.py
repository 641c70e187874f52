"""invoke tasks: parse options, call gpuimages, print. `invoke --list`; `invoke --help TASK`."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from gpuimages import console as ui
from gpuimages.cli import guarded, request_from
from gpuimages.compat import load_compat
from gpuimages.matrix import load_matrix
from gpuimages.render import render_all
from gpuimages.select import select, warnings_for

MATRIX = "matrix.yaml"
DOCKERFILES = Path("dockerfiles")

VARIANT_HELP = {
    "torch": "PyTorch release, e.g. 1.12.0",
    "cuda": "CUDA major.minor (11.3, cu113) or 'cpu'",
    "cudnn": "cuDNN major; default: the one the torch release ships with",
    "flavor": "runtime (default) or devel",
    "python": "Python major.minor; default: the OS's own when torch supports it",
    "os": "e.g. ubuntu20.04, debian12; default: newest the CUDA image offers",
    "horovod": "Horovod version to build in, e.g. 0.28.1; default: none",
    "matrix": f"matrix file (default {MATRIX})",
    "json": "print JSON instead of a table",
    "all": "every variant of the matrix",
    "variant": "a variant name from `invoke matrix`",
    "dry_run": "print the plan (variants, tags, base images) and stop",
    "check": "only compare; exit 1 naming the files that drifted",
}
VARIANT_OPTIONS = ("torch", "cuda", "cudnn", "flavor", "python", "os", "horovod")


def helps(*names: str) -> dict[str, str]:
    return {n: VARIANT_HELP[n] for n in names}


@task(auto_shortflags=False, help=helps("matrix", "json"))
@guarded
def matrix(c, matrix=MATRIX, json=False):
    """List the resolved variants of the matrix (JSON for CI fan-out)."""
    m = load_matrix(matrix)
    if json:
        print(jsonlib.dumps([v.as_dict() for v in m.variants], indent=2))
    else:
        title = f"{m.path}: {len(m.variants)} variants"
        ui.console.print(ui.variants_table(m.variants, title=title))


@task(auto_shortflags=False, help=helps(*VARIANT_OPTIONS, "matrix", "json"))
@guarded
def check(
    c,
    torch=None,
    cuda=None,
    cudnn=None,
    flavor=None,
    python=None,
    os=None,
    horovod=None,
    matrix=MATRIX,
    json=False,
):
    """Is this combination supported? Exit 0 with the resolved variant, or 2 with the reason."""
    request = request_from(torch, cuda, cudnn, flavor, python, os, horovod)
    if request is None:
        raise Exit("error: give at least --torch and --cuda (see `invoke --help check`).", code=2)
    repository = load_matrix(matrix).repository if Path(matrix).exists() else "gpuimages/pytorch"
    from gpuimages.select import check as check_request

    variant = check_request(request, load_compat(), repository)
    if json:
        print(jsonlib.dumps({**variant.as_dict(), "warnings": warnings_for(variant)}, indent=2))
    else:
        ui.console.print(ui.variant_table(variant))
        ui.console.print(f"supported: {variant.tag}")


@task(auto_shortflags=False, help=helps("check", "matrix"))
@guarded
def render(c, check=False, matrix=MATRIX):
    """Write dockerfiles/<variant>/Dockerfile from templates/ and the matrix."""
    m = load_matrix(matrix)
    result = render_all(m.variants, DOCKERFILES, check=check, matrix_path=str(matrix))
    if check:
        if result.drifted:
            names = "\n  ".join(str(p) for p in result.drifted)
            raise Exit(
                f"dockerfiles/ has drifted from templates/ and {matrix} "
                f"(run `invoke render`):\n  {names}",
                code=1,
            )
        ui.console.print(f"dockerfiles/ is up to date ({len(result.unchanged)} Dockerfiles).")
        return
    ui.console.print(
        f"{len(result.written)} written, {len(result.unchanged)} unchanged, "
        f"{len(result.removed)} stale removed."
    )


@task(auto_shortflags=False, help=helps(*VARIANT_OPTIONS, "all", "variant", "matrix", "dry_run"))
@guarded
def build(
    c,
    torch=None,
    cuda=None,
    cudnn=None,
    flavor=None,
    python=None,
    os=None,
    horovod=None,
    all=False,
    variant=None,
    matrix=MATRIX,
    dry_run=False,
):
    """Build images: `invoke build --torch 1.12.0 --cuda 11.3`, `--all`, or `--variant NAME`."""
    m = load_matrix(matrix)
    variants = select(
        m,
        load_compat(),
        all_variants=all,
        names=(variant,) if variant else (),
        request=request_from(torch, cuda, cudnn, flavor, python, os, horovod),
    )
    ui.console.print(ui.variants_table(variants, title=f"Build plan: {len(variants)} image(s)"))
    for v in variants:
        ui.console.print(f"  {v.tag}  <-  dockerfiles/{v.name}/Dockerfile  (base {v.base_image})")
    if dry_run:
        return
    raise Exit("error: real builds are not implemented yet; use --dry-run.", code=1)
