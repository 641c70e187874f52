"""invoke tasks: parse options, call gpuimages, print. `invoke --list`; `invoke --help TASK`."""

from __future__ import annotations

import json as jsonlib
from dataclasses import replace
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from gpuimages import console as ui
from gpuimages.build import PackageSources, build_many, write_report
from gpuimages.cli import guarded, request_from
from gpuimages.compat import load_compat
from gpuimages.engine import check_local_base, ensure_engine, ensure_local_base, find_docker_cli
from gpuimages.matrix import load_matrix
from gpuimages.render import render_all
from gpuimages.select import select, warnings_for
from gpuimages.tagging import add_tags
from gpuimages.wheelhouse import download

MATRIX = "matrix.yaml"
DOCKERFILES = Path("dockerfiles")
WORK_DIR = Path("build")
BUILD_REPORT = "build/reports/build-report.json"

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
    "docker": "docker client to use (default: the first on PATH that can use BuildKit)",
    "jobs": "build this many independent variants at once (default 1)",
    "base_image": "base image instead of the variant's (a mirror or a local image)",
    "builder_image": "image for the builder stage (default: as --base-image where it applies)",
    "pip_index_url": "PyPI mirror for pip inside the build (no credentials in the URL)",
    "wheelhouse": "directory of wheels bound into the build (see `invoke wheelhouse`)",
    "ca_bundle": "CA bundle for a TLS proxy, handed in as a BuildKit secret (not a layer)",
    "apt_mirror": "Debian/Ubuntu archive mirror URL for apt inside the build",
    "offline": "pip installs only from --wheelhouse",
    "local_base": "CPU variants: use a local debootstrap Debian base (no registry pull)",
    "start_engine": "start a Docker engine (as root) when none answers",
    "report": f"build report JSON (default {BUILD_REPORT})",
    "dest": "wheelhouse directory (default wheelhouse)",
    "registry": "registry prefix HOST[:PORT][/NAMESPACE] (default: matrix.yaml's registry)",
    "alias": "extra tag name in the same repository, e.g. latest (repeatable)",
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


def _selected(matrix, all, variant, torch, cuda, cudnn, flavor, python, os, horovod):
    m = load_matrix(matrix)
    names = tuple(variant) if isinstance(variant, list) else ((variant,) if variant else ())
    request = request_from(torch, cuda, cudnn, flavor, python, os, horovod)
    return m, select(m, load_compat(), all_variants=all, names=names, request=request)


@task(
    auto_shortflags=False,
    iterable=["variant"],
    help=helps(
        *VARIANT_OPTIONS,
        "all",
        "variant",
        "matrix",
        "dry_run",
        "docker",
        "jobs",
        "base_image",
        "builder_image",
        "pip_index_url",
        "wheelhouse",
        "ca_bundle",
        "apt_mirror",
        "offline",
        "local_base",
        "start_engine",
        "report",
    ),
)
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
    docker=None,
    jobs=1,
    base_image=None,
    builder_image=None,
    pip_index_url=None,
    wheelhouse=None,
    ca_bundle=None,
    apt_mirror=None,
    offline=False,
    local_base=False,
    start_engine=False,
    report=BUILD_REPORT,
):
    """Build images: `invoke build --torch 1.12.0 --cuda 11.3`, `--all`, or `--variant NAME`."""
    m, variants = _selected(matrix, all, variant, torch, cuda, cudnn, flavor, python, os, horovod)
    sources = PackageSources.merged(
        m.sources,
        base_image=base_image,
        builder_image=builder_image,
        pip_index_url=pip_index_url,
        wheelhouse=wheelhouse,
        ca_bundle=ca_bundle,
        apt_mirror=apt_mirror,
        offline=offline,
    )
    if local_base:
        check_local_base(variants)
    ui.console.print(ui.variants_table(variants, title=f"Build plan: {len(variants)} image(s)"))
    if dry_run:
        for v in variants:
            ui.console.print(f"  {v.tag}  <-  dockerfiles/{v.name}/Dockerfile")
        return
    cli = find_docker_cli(docker)
    ensure_engine(cli, start=start_engine or local_base)
    if local_base:
        base = ensure_local_base(cli)
        sources = replace(sources, base_image=base, builder_image=base)
    with ui.BuildProgress([v.name for v in variants]) as progress:
        results = build_many(
            variants,
            cli,
            sources,
            dockerfiles=DOCKERFILES,
            work_dir=WORK_DIR,
            jobs=jobs,
            on_line=lambda v, line: progress.line(v.name, line),
            on_done=lambda r: progress.done(r.variant.name, r.status),
        )
    path = write_report(results, Path(report))
    ui.console.print(ui.build_table(results))
    for r in results:
        if r.ok:
            ui.console.print(f"image {r.tags[0]} ({r.image_id})")
        else:
            ui.err_console.print(f"[red]{r.variant.name}: {r.error}[/red]")
    ui.console.print(f"report: {path}")
    failed = [r.variant.name for r in results if not r.ok]
    if failed:
        raise Exit(f"error: {len(failed)} build(s) failed: {', '.join(failed)}", code=1)


@task(
    auto_shortflags=False,
    iterable=["variant"],
    help=helps(*VARIANT_OPTIONS, "all", "variant", "matrix", "dest"),
)
@guarded
def wheelhouse(
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
    dest="wheelhouse",
):
    """Download the wheels a variant installs into DEST, for `build --wheelhouse --offline`."""
    _, variants = _selected(matrix, all, variant, torch, cuda, cudnn, flavor, python, os, horovod)
    for v in variants:
        download(v, Path(dest), log_dir=WORK_DIR / "logs")
    ui.console.print(f"wheelhouse: {Path(dest).resolve()}")


@task(
    auto_shortflags=False,
    iterable=["variant", "alias"],
    help=helps(*VARIANT_OPTIONS, "all", "variant", "matrix", "registry", "alias"),
)
@guarded
def tag(
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
    registry=None,
    alias=None,
):
    """Tag built images with a registry prefix and/or opt-in aliases (--alias latest)."""
    m, variants = _selected(matrix, all, variant, torch, cuda, cudnn, flavor, python, os, horovod)
    for v in variants:
        for t in add_tags(v, registry=registry or m.registry, aliases=tuple(alias or ())):
            ui.console.print(f"tagged {t}")
