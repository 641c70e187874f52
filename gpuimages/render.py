"""Variant -> Dockerfile text, and dockerfiles/ kept in step with templates + matrix.

All decisions are made here in Python; templates get plain, already-sorted values.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2

from gpuimages.paths import TEMPLATES
from gpuimages.variant import Variant

log = logging.getLogger(__name__)

MAIN_TEMPLATE = "Dockerfile.j2"
DOCKERFILE = "Dockerfile"


@dataclass(frozen=True)
class DockerfileContext:
    """Everything the template needs, decided: no template logic beyond loops."""

    name: str
    summary: str
    matrix_path: str
    base_image: str
    builder_image: str
    python: str
    flavor: str
    tag: str
    index_url: str
    builder_apt: tuple[str, ...]
    horovod_apt: tuple[str, ...]
    horovod_requirements: tuple[str, ...]
    venv_stage: str
    final_commands: tuple[str, ...]
    runtime_apt: tuple[str, ...]
    devel_apt: tuple[str, ...]
    pip_pins: tuple[str, ...]
    horovod: str | None
    horovod_fixes: str
    horovod_env: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]


def context_for(variant: Variant, matrix_path: str = "matrix.yaml") -> DockerfileContext:
    py = f"python{variant.python}"
    builder_apt = [py, f"{py}-venv", "ca-certificates"]
    # Horovod compiles against torch: a C++ toolchain, CMake, Python and MPI headers. Its
    # stage starts from the torch venv, so variants with and without it share that layer.
    horovod_apt = (
        ["g++", "make", "cmake", f"{py}-dev", "libopenmpi-dev", "openmpi-bin"]
        if variant.horovod
        else []
    )
    runtime_apt = [py, "ca-certificates", *variant.mpi_packages]
    devel_apt = ["g++", "make", "ninja-build", f"{py}-dev"] if variant.flavor == "devel" else []

    horovod_env: list[tuple[str, str]] = []
    if variant.horovod:
        horovod_env = [
            ("HOROVOD_WITH_PYTORCH", "1"),
            ("HOROVOD_WITH_GLOO", "1"),
            ("HOROVOD_WITH_MPI", "1"),
            ("HOROVOD_WITHOUT_TENSORFLOW", "1"),
            ("HOROVOD_WITHOUT_MXNET", "1"),
        ]
        if not variant.is_cpu:
            horovod_env.append(("HOROVOD_GPU_OPERATIONS", "NCCL"))

    env = dict(variant.smoke_env())
    env["PATH"] = "/opt/venv/bin:${PATH}"
    env["VIRTUAL_ENV"] = "/opt/venv"
    if variant.require_cuda:
        env["NVIDIA_REQUIRE_CUDA"] = variant.require_cuda
        env["NVIDIA_VISIBLE_DEVICES"] = "all"
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"

    accel = "CPU" if variant.is_cpu else f"CUDA {variant.cuda_full}, cuDNN {variant.cudnn}"
    summary = (
        f"torch {variant.torch} ({accel}), {variant.flavor}, Python {variant.python} on "
        f"{variant.os}" + (f", Horovod {variant.horovod}" if variant.horovod else "")
    )
    return DockerfileContext(
        name=variant.name,
        summary=summary,
        matrix_path=matrix_path,
        base_image=variant.base_image,
        builder_image=variant.builder_image,
        python=variant.python,
        flavor=variant.flavor,
        tag=variant.tag,
        index_url=variant.index_url,
        builder_apt=tuple(sorted(set(builder_apt))),
        horovod_apt=tuple(sorted(set(horovod_apt))),
        horovod_requirements=variant.horovod_build_requires,
        venv_stage="horovod" if variant.horovod else "builder",
        # Multi-node Horovod (horovodrun -H, mpirun, MPIJob workers running `sshd -De`)
        # starts ranks over ssh; sshd refuses to start without its privilege-separation dir.
        final_commands=("mkdir -p /run/sshd",) if variant.horovod else (),
        runtime_apt=tuple(sorted(set(runtime_apt))),
        devel_apt=tuple(sorted(set(devel_apt))),
        pip_pins=variant.pip_pins,
        horovod=variant.horovod,
        horovod_fixes=" ".join(variant.horovod_fixes),
        horovod_env=tuple(horovod_env),
        env=tuple(sorted(env.items())),
        labels=tuple(variant.labels().items()),
    )


def _environment(templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles, not HTML
    )


def render_variant(
    variant: Variant, templates: Path = TEMPLATES, matrix_path: str = "matrix.yaml"
) -> str:
    template = _environment(templates).get_template(MAIN_TEMPLATE)
    return template.render(ctx=context_for(variant, matrix_path))


@dataclass(frozen=True)
class RenderResult:
    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    removed: tuple[Path, ...]

    @property
    def drifted(self) -> tuple[Path, ...]:
        return self.written + self.removed


def render_all(
    variants: tuple[Variant, ...],
    out_dir: Path,
    *,
    check: bool = False,
    templates: Path = TEMPLATES,
    matrix_path: str = "matrix.yaml",
) -> RenderResult:
    """Write dockerfiles/<name>/Dockerfile for every variant, or (check) only compare.

    Directories for variants no longer in the matrix are stale: removed (or reported).
    """
    env = _environment(templates)
    template = env.get_template(MAIN_TEMPLATE)
    written: list[Path] = []
    unchanged: list[Path] = []
    wanted: set[str] = set()
    for variant in variants:
        wanted.add(variant.name)
        text = template.render(ctx=context_for(variant, matrix_path))
        path = out_dir / variant.name / DOCKERFILE
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            unchanged.append(path)
            continue
        written.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            log.debug("wrote %s", path)
    removed: list[Path] = []
    if out_dir.is_dir():
        for child in sorted(out_dir.iterdir()):
            if child.is_dir() and child.name not in wanted:
                removed.append(child)
                if not check:
                    shutil.rmtree(child)
                    log.info("removed stale %s", child)
    return RenderResult(tuple(written), tuple(unchanged), tuple(removed))
