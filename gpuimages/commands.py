"""What each invoke task does, one function per task: tasks.py forwards to these.

A selecting task's `selection` stands for the shared options (the variant axes, --all,
--variant, --matrix), parsed once into a `Selection` by `gpuimages.cli.command`, which
also gives every option its help (gpuimages/core/options.py).
"""

from __future__ import annotations

import json as jsonlib
from pathlib import Path

from invoke.exceptions import Exit

from gpuimages import console as ui
from gpuimages.build.engine import (
    LOCAL_BASES,
    built_image,
    check_local_base,
    docker_for_builds,
    engine_client,
    ensure_engine,
    ensure_local_base,
)
from gpuimages.build.image import BuildInterrupted, PackageSources, build_many, write_report
from gpuimages.build.render import render_all
from gpuimages.build.tagging import add_tags
from gpuimages.build.wheelhouse import download
from gpuimages.cli import after_dashes
from gpuimages.core.options import whole_number, writable_dir, writable_file
from gpuimages.core.paths import (
    BUILD_REPORT,
    DOCKERFILES,
    MATRIX,
    SMOKE_REPORTS,
    WHEELHOUSE,
    WORK_DIR,
)
from gpuimages.facts.compat import load_compat
from gpuimages.facts.matrix import load_matrix
from gpuimages.facts.registry_address import Registry
from gpuimages.facts.select import Selection, warnings_for
from gpuimages.host import launch as launching
from gpuimages.host import resolve as resolving
from gpuimages.host.doctor import diagnose
from gpuimages.release.catalog import load_catalog
from gpuimages.release.cut import publish_release, registry_notes
from gpuimages.release.registry import RetryPolicy
from gpuimages.vet import container as containers
from gpuimages.vet.smoke import SmokeOptions
from gpuimages.vet.smoke import smoke as run_smoke
from gpuimages.vet.smoke_report import report_path

DOCTOR_IMAGE = (
    "also run `docker run --rm --gpus all IMAGE nvidia-smi` for real (exit 1 if it fails)"
)


def matrix(c, matrix=str(MATRIX), json=False):
    """List the resolved variants of the matrix (JSON for CI fan-out)."""
    m = load_matrix(matrix)
    if json:
        print(jsonlib.dumps([v.as_dict() for v in m.variants], indent=2))
    else:
        title = f"{m.path}: {len(m.variants)} variants"
        ui.console.print(ui.variants_table(m.variants, title=title))


def check(c, selection: Selection, json=False):
    """Is this combination supported? Exit 0 with the resolved variant, or 2 with the reason."""
    variant = selection.checked()
    if json:
        print(
            jsonlib.dumps(
                {
                    **variant.as_dict(),
                    "python_why": variant.python_why,
                    "warnings": warnings_for(variant, load_compat()),
                },
                indent=2,
            )
        )
    else:
        ui.console.print(ui.variant_table(variant))
        ui.console.print(f"python: {variant.python_why}")
        ui.console.print(f"supported: {variant.tag}")


def render(c, check=False, matrix=str(MATRIX)):
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
        ui.console.print(f"dockerfiles/ is up to date ({len(result.unchanged)} files).")
        return
    ui.console.print(
        f"{len(result.written)} written, {len(result.unchanged)} unchanged, "
        f"{len(result.removed)} stale removed."
    )


def build(
    c,
    selection: Selection,
    dry_run=False,
    docker=None,
    jobs=None,
    base_image=None,
    builder_image=None,
    pip_index_url=None,
    wheelhouse=None,
    ca_bundle=None,
    apt_mirror=None,
    offline=False,
    local_base=False,
    start_engine=False,
    report=str(BUILD_REPORT),
    cache_to=None,
    cache_from=None,
):
    """Build images: `invoke build --torch 1.12.0 --cuda 11.3`, `--all`, or `--variant NAME`."""
    jobs = 1 if jobs is None else whole_number(jobs, "--jobs", minimum=1)
    report = writable_file(report, "--report")
    m, variants = selection.variants()
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
    sources.validate()  # files and folders named exist, --dry-run included
    local_os = check_local_base(variants, base_image=base_image) if local_base else None
    plan_base = LOCAL_BASES[local_os][0] if local_os else base_image
    ui.console.print(
        ui.variants_table(variants, title=f"Build plan: {len(variants)} image(s)", base=plan_base)
    )
    if dry_run:
        for v in variants:
            ui.console.print(f"  {v.tag}  <-  dockerfiles/{v.name}/Dockerfile")
        return
    start = start_engine or local_base
    cli = docker_for_builds(docker, install=start)
    ensure_engine(cli, start=start)
    if local_os:
        with ui.StepProgress(f"local base {plan_base}") as progress:
            sources = sources.on_base(ensure_local_base(cli, local_os, on_line=progress))
    try:
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
                cache_to=cache_to,
                cache_from=cache_from,
            )
    except BuildInterrupted as stop:
        path = write_report(stop.results, Path(report))
        ui.err_console.print(f"builds stopped, no tag moved; report: {path}")
        raise stop.cause from None
    ui.print_builds(results, write_report(results, Path(report)))
    failed = [r.variant.name for r in results if not r.ok]
    if failed:
        raise Exit(f"error: {len(failed)} build(s) failed: {', '.join(failed)}", code=1)


def wheelhouse(c, selection: Selection, dest=str(WHEELHOUSE)):
    """Download the wheels a variant installs into DEST, for `build --wheelhouse --offline`."""
    _, variants = selection.variants()
    writable_dir(dest, "--dest")
    for v in variants:
        download(v, Path(dest), log_dir=WORK_DIR / "logs")
    ui.console.print(f"wheelhouse: {Path(dest).resolve()}")


def tag(c, selection: Selection, registry=None, alias=None):
    """Tag built images with a registry prefix and/or opt-in aliases (--alias latest)."""
    m, variants = selection.variants()
    target = Registry.choose(registry, m.registry)
    for v in variants:
        for t in add_tags(v, registry=target, aliases=tuple(alias or ())):
            ui.console.print(f"tagged {t}")


def smoke(
    c,
    selection: Selection,
    gpus=None,
    shm_size=None,
    timeout=None,
    require_gpus=None,
    no_multinode=False,
    report=None,
):
    """Smoke-test built images (nvidia-smi, CUDA, DDP, multi-node, Horovod); JSON + JUnit."""
    _, variants = selection.variants()
    options = SmokeOptions.from_options(
        gpus=gpus,
        shm_size=shm_size,
        timeout=timeout,
        require_gpus=require_gpus,
        multinode=not no_multinode,
    )
    for v in variants:  # where the reports go, checked before the first container starts
        writable_file(report_path(v, report, len(variants)), "--report")
    failed = []
    for v in variants:
        ui.console.print(f"smoke-testing {v.tag} ...")
        with ui.StepProgress(f"smoke {v.name}") as progress:
            result = run_smoke(v, options, on_progress=progress)
        path, junit = result.write(report_path(v, report, len(variants)))
        ui.console.print(ui.smoke_table(result))
        ui.console.print(f"report: {path}  junit: {junit}")
        if result.status != "passed":
            failed.append(v.name)
    if failed:
        raise Exit(f"error: smoke tests failed for: {', '.join(failed)}", code=1)


def publish(
    c,
    selection: Selection,
    registry=None,
    reports=str(SMOKE_REPORTS),
    report=None,
    dry_run=False,
    tries=None,
    backoff=None,
):
    """Push images whose smoke report passed for that exact image id; write a release manifest."""
    m, variants = selection.variants()
    policy = RetryPolicy.from_options(tries, backoff)
    target = Registry.choose(registry, m.registry)
    with ui.StepProgress("push") as progress:
        outcome = publish_release(
            variants,
            registry=target,
            reports=Path(reports),
            report=Path(report) if report else None,
            dry_run=dry_run,
            policy=policy,
            on_progress=progress,
        )
    notes = registry_notes(outcome, configured=bool(target), dry_run=dry_run, matrix=m.path)
    ui.print_publish(outcome, dry_run, notes)
    for path in (outcome.catalog_md, outcome.catalog_json):
        if path:
            ui.console.print(f"catalog: {path}", soft_wrap=True)
    if outcome.not_published:
        names = ", ".join(r.variant.name for r in outcome.not_published)
        total = len(outcome.results)
        raise Exit(f"error: {len(outcome.not_published)} of {total} not published: {names}", 1)


def doctor(
    c, selection: Selection, json=False, driver=None, gpu_arch=None, image=None, require_gpu=False
):
    """Is this host ready for the images, and which variants can its driver (or --driver) run?"""
    _, variants = selection.variants()
    report = diagnose(
        variants,
        load_compat(),
        driver=driver,
        gpu_arch=gpu_arch,
        image=image,
        require_gpu=require_gpu,
    )
    if json:
        print(jsonlib.dumps(report.as_dict(), indent=2))
    else:
        ui.print_doctor(report)
    if report.exit_code:
        raise Exit(code=report.exit_code)


def resolve(
    c,
    driver=None,
    gpu_arch=None,
    torch=None,
    python=None,
    flavor=None,
    catalog=None,
    matrix=str(MATRIX),
    json=False,
):
    """Which variants fit a host's driver and GPUs, best first, and why the others do not."""
    request = resolving.host_request(driver, gpu_arch, torch=torch, python=python, flavor=flavor)
    m = load_matrix(matrix)
    resolving.check_filters(m.variants, torch=torch, python=python, flavor=flavor, matrix=matrix)
    published = load_catalog(catalog) if catalog else None
    result = resolving.resolve_host(m.variants, request, load_compat(), published)
    if json:
        print(jsonlib.dumps(result.as_dict(), indent=2))
    else:
        ui.print_resolution(result)
    if result.exit_code:
        raise Exit(f"error: {resolving.failure(result)}", code=result.exit_code)


def run(
    c,
    selection: Selection,
    image=None,
    gpus=None,
    mount=None,
    shm_size=None,
    ipc_host=False,
    dry_run=False,
    cmd=None,
):
    """Run a command in a variant's image: `invoke run --variant NAME -- python train.py`."""
    command = containers.split_command(cmd, after_dashes(c))
    target = containers.run_target(selection, image)
    spec = containers.make_spec(
        target.image,
        command,
        gpus=containers.parse_gpus(gpus, target.default_gpus),
        mount=mount,
        shm_size=shm_size,
        ipc_host=ipc_host,
    )
    if dry_run:
        print(spec.docker_line())
        return
    client = engine_client()
    if target.variant is not None:
        built_image(target.variant, client)
    ui.err_console.print(f"$ {spec.docker_line()}", markup=False, soft_wrap=True)
    code = containers.run(spec, client, on_line=lambda line: print(line, flush=True))
    if code:
        raise Exit(code=code)


def launch(
    c,
    selection: Selection,
    nodes=None,
    gpus_per_node=None,
    master_addr=None,
    master_port=None,
    horovod=False,
    hosts=None,
    k8s=None,
    job_name=None,
    mount=None,
    shm_size=None,
    registry=None,
):
    """Per-node commands (torchrun, or horovodrun/mpirun) and --k8s manifests for one job."""
    plan = launching.plan_from_options(
        selection,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        master_addr=master_addr,
        master_port=launching.DEFAULT_PORT if master_port is None else master_port,
        horovod=horovod,
        hosts=hosts,
        registry=registry,
        script=tuple(after_dashes(c)),
        job_name=job_name,
        mount=mount,
        shm_size=shm_size,
    )
    if k8s:
        writable_dir(k8s, "--k8s")
    ui.print_commands(launching.commands(plan), launching.notes(plan))
    if k8s:
        path = launching.write_manifest(plan, k8s)
        doc = launching.manifest(plan)
        ui.console.print(
            f"# wrote {path} ({doc['kind']} {doc['apiVersion']}): kubectl apply -f {path}",
            markup=False,
            soft_wrap=True,
        )


def compat(c, action, index=None, pypi=None, write=False):
    """`invoke compat sync [--index URL] [--write]`: release facts against the indexes."""
    from gpuimages.facts import compatsync

    print(compatsync.run_cli(action, index=index, pypi=pypi, write=write))


def promote(
    c, from_=None, to=None, variant=None, manifest=None, dry_run=False, tries=None, backoff=None
):
    """Copy smoke-tested digests from staging to the public registry (no rebuild, no pull)."""
    options = {"source": from_, "dest": to, "variants": variant, "manifests": manifest}
    ui.promote(**options, dry_run=dry_run, tries=tries, backoff=backoff)
