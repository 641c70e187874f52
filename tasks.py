"""invoke tasks: parse options, call gpuimages, print. `invoke --list`; `invoke --help TASK`."""

from __future__ import annotations

import json as jsonlib
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from gpuimages import console as ui
from gpuimages import container as containers
from gpuimages import launch as launching
from gpuimages.build import PackageSources, build_many, write_report
from gpuimages.cli import guarded, request_from
from gpuimages.compat import load_compat
from gpuimages.doctor import diagnose
from gpuimages.engine import check_local_base, ensure_engine, ensure_local_base, find_docker_cli
from gpuimages.errors import UserInputError
from gpuimages.matrix import load_matrix
from gpuimages.publish import SMOKE_REPORTS, RetryPolicy, publish_release
from gpuimages.render import render_all
from gpuimages.select import select, warnings_for
from gpuimages.smoke import SmokeOptions, report_path, write_reports
from gpuimages.smoke import smoke as run_smoke
from gpuimages.tagging import add_tags, registry_tag
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
    "report": "report path (build: build/reports/build-report.json; smoke: reports/smoke/)",
    "cache_to": "registry cache target, e.g. REG/NS/gpuimages/pytorch:{variant} (inline cache "
    "without buildx: it reaches REF when the tested image is pushed there)",
    "cache_from": "registry cache source image reference ('{variant}' allowed)",
    "dest": "wheelhouse directory (default wheelhouse)",
    "registry": "registry prefix HOST[:PORT][/NAMESPACE] (default: matrix.yaml's registry)",
    "alias": "extra tag name in the same repository, e.g. latest (repeatable)",
    "gpus": "GPUs for the containers: all, none, or 0,1 (default: none for CPU variants)",
    "shm_size": "shared memory size, e.g. 8g (default: --ipc=host)",
    "timeout": "seconds per check before it is killed and reported failed (default 300)",
    "require_gpus": "fail (not skip) the GPU checks when fewer GPUs are visible",
    "no_multinode": "skip the two-container multi-node DDP run",
    "image": "a local image to use instead of a variant's (any name docker knows)",
    "mount": "host directory mounted at /workspace, the working directory",
    "ipc_host": "share the host's IPC namespace and /dev/shm (the default without --shm-size)",
    "cmd": "the command as one shell string, instead of the words after --",
    "require_gpu": "exit 1 when this host has no usable NVIDIA GPU",
    "driver": "answer for a hypothetical host with this driver, e.g. 450.80.02 (no host checks)",
    "gpu_arch": "GPU compute capability to judge against the wheels, e.g. sm_86 or 8.6",
    "nodes": "number of nodes (machines)",
    "gpus_per_node": "GPUs (processes) per node",
    "master_addr": "address of node 0 that every node can reach",
    "master_port": "TCP port of the rendezvous on node 0 (default 29500)",
    "hosts": "every node's address, master first, e.g. 10.0.0.1,10.0.0.2 (Horovod's -H)",
    "k8s": "write the Kubernetes manifest (PyTorchJob, or MPIJob with --horovod) into DIR",
    "job_name": "Kubernetes job name (default from the variant)",
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
        print(
            jsonlib.dumps(
                {**variant.as_dict(), "warnings": warnings_for(variant, load_compat())}, indent=2
            )
        )
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
        "cache_to",
        "cache_from",
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
    cache_to=None,
    cache_from=None,
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
            cache_to=cache_to,
            cache_from=cache_from,
        )
    path = write_report(results, Path(report))
    ui.console.print(ui.build_table(results))
    for r in results:
        if r.ok:
            ui.console.print(f"image {r.tags[0]} ({r.image_id})")
        else:
            ui.err_console.print(f"{r.variant.name}: {r.error}", style="red", markup=False)
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


@task(
    auto_shortflags=False,
    iterable=["variant"],
    help=helps(
        *VARIANT_OPTIONS,
        "all",
        "variant",
        "matrix",
        "gpus",
        "shm_size",
        "timeout",
        "require_gpus",
        "no_multinode",
        "report",
    ),
)
@guarded
def smoke(
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
    gpus=None,
    shm_size=None,
    timeout=300,
    require_gpus=None,
    no_multinode=False,
    report=None,
):
    """Smoke-test built images (nvidia-smi, CUDA, DDP, multi-node, Horovod); JSON + JUnit."""
    _, variants = _selected(matrix, all, variant, torch, cuda, cudnn, flavor, python, os, horovod)
    options = SmokeOptions(
        gpus=gpus,
        shm_size=shm_size,
        timeout_s=int(timeout),
        require_gpus=None if require_gpus is None else int(require_gpus),
        multinode=not no_multinode,
    )
    failed = []
    for v in variants:
        ui.console.print(f"smoke-testing {v.tag} ...")
        result = run_smoke(v, options)
        path, junit = write_reports(result, report_path(v, report, len(variants)))
        ui.console.print(ui.smoke_table(result))
        ui.console.print(f"report: {path}  junit: {junit}")
        if result["status"] != "passed":
            failed.append(v.name)
    if failed:
        raise Exit(f"error: smoke tests failed for: {', '.join(failed)}", code=1)


# --- publish (issue 6): push smoke-tested images, write the release manifest ----------


VARIANT_HELP.update(
    {
        "reports": f"folder of smoke reports, <variant name>.json each (default {SMOKE_REPORTS})",
        "tries": "attempts per push/verify on transient registry errors (default 4)",
        "backoff": "seconds before the first retry, doubled each time (default 1)",
    }
)
PUBLISH_HELP = {
    **helps(*VARIANT_OPTIONS, "all", "variant", "matrix", "reports", "dry_run", "tries", "backoff"),
    "registry": "HOST[:PORT][/NAMESPACE] (default: matrix.yaml's registry, else a local "
    "registry this task starts on 127.0.0.1:5000)",
    "dry_run": "check the smoke gate and show what would be pushed where; push nothing",
}


@task(auto_shortflags=False, iterable=["variant"], help=PUBLISH_HELP)
@guarded
def publish(
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
    reports=str(SMOKE_REPORTS),
    dry_run=False,
    tries=None,
    backoff=None,
):
    """Push images whose smoke report passed for that exact image id; write a release manifest."""
    m, variants = _selected(matrix, all, variant, torch, cuda, cudnn, flavor, python, os, horovod)
    try:
        policy = RetryPolicy.from_env(
            tries=None if tries is None else int(tries),
            backoff_s=None if backoff is None else float(backoff),
        )
    except ValueError:
        raise Exit(
            "error: --tries takes a whole number, --backoff a number of seconds.", 2
        ) from None
    outcome = publish_release(
        variants,
        registry=registry or m.registry,
        reports=Path(reports),
        dry_run=dry_run,
        policy=policy,
    )
    if dry_run and not (registry or m.registry):
        ui.console.print(
            "no registry configured: a real run starts a local registry on 127.0.0.1:5000"
        )
    if outcome.started_local_registry:
        ui.console.print(
            f"no registry configured (--registry, or `registry:` in {matrix}): started a local "
            f"registry at {outcome.registry.url} (scripts/start-registry.sh)"
        )
    ui.console.print(ui.publish_table(outcome, dry_run))
    for r in outcome.not_published:
        ui.err_console.print(
            f"{r.status} {r.variant.name}: {r.reason}", style="red", markup=False, soft_wrap=True
        )
    if outcome.manifest_md:
        ui.console.print(f"release notes: {outcome.manifest_md}")
    if outcome.manifest_json:
        ui.console.print(f"release manifest: {outcome.manifest_json}", soft_wrap=True)
    if outcome.not_published:
        names = ", ".join(r.variant.name for r in outcome.not_published)
        total = len(outcome.results)
        raise Exit(f"error: {len(outcome.not_published)} of {total} not published: {names}", 1)


# --- host doctor, run helper, multi-node launch (issue 7) -------------------------------


DOCTOR_HELP = {
    **helps(*VARIANT_OPTIONS, "variant", "matrix", "json", "driver", "gpu_arch", "require_gpu"),
    "image": "also run `docker run --rm --gpus all IMAGE nvidia-smi` for real (exit 1 if it fails)",
}
RUN_HELP = {
    **helps(*VARIANT_OPTIONS, "variant", "matrix", "image", "gpus", "mount", "shm_size"),
    **helps("ipc_host", "cmd"),
    "dry_run": "print the equivalent `docker run` line and nothing else; start nothing",
}
LAUNCH_OPTIONS = ("torch", "cuda", "cudnn", "flavor", "python", "os")
LAUNCH_HELP = {
    **helps(*LAUNCH_OPTIONS, "variant", "matrix", "nodes", "gpus_per_node", "master_addr"),
    **helps("master_port", "hosts", "k8s", "job_name", "mount", "shm_size", "registry"),
    "horovod": "Horovod job: horovodrun/mpirun and an MPIJob (the variant's Horovod image)",
}


def _after_dashes(c) -> list[str]:
    """The words after `--` as the shell passed them (invoke's remainder re-joins them)."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return shlex.split(c.remainder) if c.remainder else []


@task(name="doctor", auto_shortflags=False, iterable=["variant"], help=DOCTOR_HELP)
@guarded
def doctor_task(
    c,
    json=False,
    driver=None,
    gpu_arch=None,
    image=None,
    require_gpu=False,
    torch=None,
    cuda=None,
    cudnn=None,
    flavor=None,
    python=None,
    os=None,
    horovod=None,
    variant=None,
    matrix=MATRIX,
):
    """Is this host ready for the images, and which variants can its driver (or --driver) run?"""
    chosen = bool(variant) or any((torch, cuda, cudnn, flavor, python, os, horovod))
    args = (variant, torch, cuda, cudnn, flavor, python, os, horovod)
    _, variants = _selected(matrix, not chosen, *args)
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


@task(name="run", auto_shortflags=False, help=RUN_HELP)
@guarded
def run_task(
    c,
    torch=None,
    cuda=None,
    cudnn=None,
    flavor=None,
    python=None,
    os=None,
    horovod=None,
    variant=None,
    image=None,
    matrix=MATRIX,
    gpus=None,
    mount=None,
    shm_size=None,
    ipc_host=False,
    dry_run=False,
    cmd=None,
):
    """Run a command in a variant's image: `invoke run --variant NAME -- python train.py`."""
    command = containers.split_command(cmd, _after_dashes(c))
    chosen = None
    if image:
        if variant or any((torch, cuda, cudnn, flavor, python, os, horovod)):
            raise UserInputError("Give either --image or a variant (--variant/--torch ...).")
        default_gpus = "all"
    else:
        args = (variant, torch, cuda, cudnn, flavor, python, os, horovod)
        chosen = _selected(matrix, False, *args)[1][0]
        image, default_gpus = chosen.tag, "none" if chosen.is_cpu else "all"
    spec = containers.make_spec(
        image,
        command,
        gpus=containers.parse_gpus(gpus, default_gpus),
        mount=mount,
        shm_size=shm_size,
        ipc_host=ipc_host,
    )
    if dry_run:
        print(spec.docker_line())
        return
    client = containers.engine_client()
    if chosen is not None:
        containers.local_image(chosen, client)
    ui.err_console.print(f"$ {spec.docker_line()}", markup=False, soft_wrap=True)
    code = containers.run(spec, client, on_line=lambda line: print(line, flush=True))
    if code:
        raise Exit(code=code)


@task(name="launch", auto_shortflags=False, help=LAUNCH_HELP)
@guarded
def launch_task(
    c,
    nodes=None,
    gpus_per_node=None,
    master_addr=None,
    master_port=launching.DEFAULT_PORT,
    horovod=False,
    hosts=None,
    k8s=None,
    job_name=None,
    mount=None,
    shm_size=None,
    registry=None,
    torch=None,
    cuda=None,
    cudnn=None,
    flavor=None,
    python=None,
    os=None,
    variant=None,
    matrix=MATRIX,
):
    """Per-node commands (torchrun, or horovodrun/mpirun) and --k8s manifests for one job."""
    missing = [
        f"--{n}"
        for n, v in (
            ("nodes", nodes),
            ("gpus-per-node", gpus_per_node),
            ("master-addr", master_addr),
        )
        if v is None
    ]
    if missing:
        raise UserInputError(
            f"{', '.join(missing)} missing: e.g. invoke launch --variant NAME --nodes 2 "
            "--gpus-per-node 8 --master-addr 10.0.0.1 -- train.py"
        )
    args = (variant, torch, cuda, cudnn, flavor, python, os, None)
    m, (chosen,) = _selected(matrix, False, *args)
    if horovod and not chosen.horovod:
        chosen = launching.horovod_twin(m, chosen)
    registry = registry or m.registry
    image = registry_tag(chosen, registry) if registry else chosen.tag
    plan = launching.make_plan(
        chosen,
        image,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        master_addr=master_addr,
        master_port=master_port,
        script=tuple(_after_dashes(c)),
        hosts=tuple(h.strip() for h in hosts.split(",")) if hosts else (),
        horovod=horovod,
        job_name=job_name,
        mount=mount,
        shm_size=shm_size,
    )
    ui.print_commands(launching.commands(plan), launching.notes(plan))
    if k8s:
        path = launching.write_manifest(plan, k8s)
        doc = launching.manifest(plan)
        ui.console.print(
            f"# wrote {path} ({doc['kind']} {doc['apiVersion']}): kubectl apply -f {path}",
            markup=False,
            soft_wrap=True,
        )


# --- compat: the compatibility data against the wheel indexes (issue 11) ------------------
@task(
    name="compat",
    positional=["action"],
    auto_shortflags=False,
    help={
        "action": "sync: compare compat.yaml's release facts with the wheel indexes",
        "index": "PEP 503 root of the PyTorch wheel index (default download.pytorch.org/whl)",
        "pypi": "PyPI JSON API root (default https://pypi.org/pypi; 'none' to skip)",
        "write": "update the generated block of compat.yaml (default: print the diff only)",
    },
)
@guarded
def compat_task(c, action, index=None, pypi=None, write=False):
    """`invoke compat sync [--index URL] [--write]`: release facts against the indexes."""
    from gpuimages import compatsync

    print(compatsync.run_cli(action, index=index, pypi=pypi, write=write))


# --- promote: tested digests from staging to the public repository (issue 14) -----------
@task(
    name="promote",
    auto_shortflags=False,
    iterable=["variant", "manifest"],
    help={
        "from": "staging registry HOST[:PORT]/NAMESPACE the images were published to",
        "to": "public registry HOST[:PORT]/NAMESPACE to copy them to",
        "variant": "a variant name (repeatable; default: every one the manifests record)",
        "manifest": "release manifest file or folder (repeatable; default reports/release)",
        "dry_run": "check the evidence and the staging digests; copy nothing",
        "tries": "tries per registry request on transient errors (default 4)",
        "backoff": "seconds before the first retry, doubling (default 1)",
    },
)
@guarded
def promote_task(
    c, from_=None, to=None, variant=None, manifest=None, dry_run=False, tries=None, backoff=None
):
    """Copy smoke-tested digests from staging to the public registry (no rebuild, no pull)."""
    from gpuimages import promote

    promote.main(
        source=from_,
        dest=to,
        variants=variant,
        manifests=manifest,
        dry_run=dry_run,
        tries=tries,
        backoff=backoff,
    )
