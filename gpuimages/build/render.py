"""Variant -> Dockerfile text, and dockerfiles/ kept in step with templates + matrix.

All decisions are made here in Python; templates get plain, already-sorted values.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

import jinja2

from gpuimages.build.startup import FACTS_FILE, facts_text
from gpuimages.core.errors import UserInputError
from gpuimages.core.paths import TEMPLATES
from gpuimages.core.reference import shown
from gpuimages.facts.compat import Compat, load_compat
from gpuimages.facts.variant import Variant

log = logging.getLogger(__name__)

MAIN_TEMPLATE = "Dockerfile.j2"
DOCKERFILE = "Dockerfile"

# Protected torch: pip reads these pins (what the build installed) through PIP_CONSTRAINT,
# so installing a library can never swap torch for another CUDA build.
CONSTRAINTS = "/opt/gpuimages/constraints.txt"
PROTECTED = (
    "torch",
    "torchvision",
    "torchaudio",
    "numpy",
    "triton",
    "horovod",
    "nvidia-*",
    "cuda-*",
)

# Non-root by default: uid 1000 in group 0, and everything a user writes (the venv, HOME,
# /workspace) group-writable, so arbitrary UIDs in group 0 (OpenShift) work the same.
USER_UID = 1000
USER_NAME = "trainer"
HOME = f"/home/{USER_NAME}"
USER_COMMANDS = (
    # Some bases (ubuntu:24.04) already have a user 1000: it gives way.
    f"if getent passwd {USER_UID} >/dev/null; then "
    f'userdel --remove "$(getent passwd {USER_UID} | cut -d: -f1)"; fi',
    f"useradd --uid {USER_UID} --gid 0 --create-home --home-dir {HOME} --shell /bin/bash "
    f"{USER_NAME}",
    f"mkdir -p /workspace && chown {USER_UID}:0 /workspace {HOME}",
    f"chmod 2775 /workspace {HOME}",
)
# Multi-node Horovod (horovodrun -H, mpirun, MPIJob workers running `sshd -De`) starts
# ranks over ssh. As the image's user, sshd reads the host keys through group 0, writes
# its pid file where it may, and accepts the group-writable HOME; port 2222 needs no
# privilege (the client's default port follows); root still works (privsep dir).
SSHD_PORT = 2222
SSHD_COMMANDS = (
    "mkdir -p /run/sshd",
    "chmod 0640 /etc/ssh/ssh_host_*_key",
    f"printf 'Port {SSHD_PORT}\\nPidFile /tmp/sshd.pid\\nStrictModes no\\n' >>/etc/ssh/sshd_config",
    f"printf 'Host *\\n    Port {SSHD_PORT}\\n' >>/etc/ssh/ssh_config",
)
# The start-up check (scripts/entrypoint/), then the command: isolated from the user's
# PYTHON* variables, no site-packages, standard library only.
# Where scripts/image/python-standalone.sh installs a python-build-standalone CPython.
STANDALONE_HOME = "/opt/python"
ENTRYPOINT = ("/opt/venv/bin/python", "-I", "-S", "/opt/gpuimages/entrypoint/startup_check.py")


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
    uv: str | None  # set: Python comes from python-build-standalone via this uv
    python_home: str | None  # where that Python lives (copied beside the venv)
    python_commands: tuple[str, ...]  # what makes the venv's Python before pip runs
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
    horovod_commands: tuple[str, ...]
    cuda_toolkit: str | None
    toolchain_requirements: tuple[str, ...]
    toolchain_commands: tuple[str, ...]
    parts: tuple[str, ...]  # the template partials, one stage each, in order
    final_parent: str
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    constraints: str
    protected: tuple[str, ...]  # write-constraints.py patterns: what pip may not replace
    user: str  # USER of the final image
    entrypoint: str  # ENTRYPOINT, a JSON array
    cmd: str  # CMD, a JSON array


def context_for(variant: Variant, matrix_path: str = "matrix.yaml") -> DockerfileContext:
    _check_comment(matrix_path, "--matrix")
    py = f"python{variant.python}"
    standalone = variant.python_source == "standalone"
    # A standalone CPython brings its own headers and needs no OS Python at run time; the
    # builder borrows the OS's python3 only to pip-install the pinned uv that installs it.
    builder_apt = (
        ["python3", "python3-venv", "ca-certificates"]
        if standalone
        else [py, f"{py}-venv", "ca-certificates"]
    )
    os_python = [] if standalone else [py]
    headers = [] if standalone else [f"{py}-dev"]
    # Horovod compiles against torch: a C++ toolchain, CMake, Python and MPI headers. Its
    # stage starts from the torch venv, so variants with and without it share that layer.
    horovod_apt = (
        ["g++", "make", "cmake", *headers, "libopenmpi-dev", "openmpi-bin"]
        if variant.horovod
        else []
    )
    runtime_apt = [*os_python, "ca-certificates", *variant.mpi_packages]
    devel_apt = ["g++", "make", "ninja-build", *headers] if variant.flavor == "devel" else []

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
    horovod_requirements = variant.horovod_build_requires
    horovod_commands: list[str] = []
    if variant.horovod:
        build = f"/opt/gpuimages/build/build-horovod.sh {variant.horovod}"
        horovod_commands.append(" ".join([build, *variant.horovod_fixes]))
    if variant.horovod and not variant.is_cpu:
        # Horovod's own CUDA kernels: the wheel's archs (its default list starts at sm_35,
        # which CUDA 12.x warns about and CUDA 13's nvcc refuses).
        horovod_env.append(("HOROVOD_BUILD_CUDA_CC_LIST", ",".join(a[3:] for a in variant.archs)))
    if variant.horovod and variant.cuda_home:
        # os route: nvcc and the NCCL headers come from PyPI into the builder's venv, and
        # the compiler leaves again once Horovod is built: the runtime stays compiler-free.
        horovod_requirements += variant.toolchain_requirements
        site = variant.cuda_home.rsplit("/", 1)[0]
        horovod_env += [
            ("CUDA_HOME", variant.cuda_home),
            ("HOROVOD_CUDA_HOME", variant.cuda_home),
            ("HOROVOD_NCCL_HOME", f"{site}/nccl"),
            ("HOROVOD_NCCL_LINK", "SHARED"),
            ("PATH", f"{variant.cuda_home}/bin:/opt/venv/bin:${{PATH}}"),
        ]
        major = variant.cuda.split(".")[0]
        # The wheels ship versioned sonames only; the link step wants the dev names.
        horovod_commands[:0] = [
            f"ln -sf libcudart.so.{major} {variant.cuda_home}/lib/libcudart.so",
            f"ln -sfn lib {variant.cuda_home}/lib64",
            f"ln -sf libnccl.so.2 {site}/nccl/lib/libnccl.so",
        ]
        horovod_commands += [
            "/opt/venv/bin/python -m pip uninstall -y nvidia-cuda-nvcc "
            "nvidia-cuda-crt nvidia-nvvm nvidia-cuda-cccl",
            f"rm -f {variant.cuda_home}/lib/libcudart.so {variant.cuda_home}/lib64 "
            f"{site}/nccl/lib/libnccl.so",
        ]

    env = dict(variant.smoke_env())
    env["PATH"] = "/opt/venv/bin:${PATH}"
    env["VIRTUAL_ENV"] = "/opt/venv"
    # Arbitrary UIDs (OpenShift, --user) have no passwd entry, so Docker would give them
    # HOME=/: every user gets the group-writable home instead.
    env["HOME"] = HOME
    env["PIP_CONSTRAINT"] = CONSTRAINTS
    toolchain_commands: list[str] = []
    if variant.flavor == "devel" and not variant.is_cpu:
        # Without a GPU, torch.utils.cpp_extension cannot pick archs (IndexError): name them.
        env["TORCH_CUDA_ARCH_LIST"] = variant.torch_cuda_arch_list
    if variant.cuda_home and variant.flavor == "devel":
        env["CUDA_HOME"] = variant.cuda_home
        env["PATH"] = f"/opt/venv/bin:{variant.cuda_home}/bin:${{PATH}}"
        # The wheels ship only the versioned libcudart (`-lcudart` needs the dev name),
        # and keep libraries in lib/ where nvcc.profile links from lib64/.
        major = variant.cuda.split(".")[0]
        toolchain_commands += [
            f"ln -sf libcudart.so.{major} {variant.cuda_home}/lib/libcudart.so",
            f"ln -sfn lib {variant.cuda_home}/lib64",
        ]
    if variant.require_cuda:
        env["NVIDIA_REQUIRE_CUDA"] = variant.require_cuda
        env["NVIDIA_VISIBLE_DEVICES"] = "all"
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"

    parts = ["_builder.j2"]
    if variant.horovod:
        parts.append("_horovod.j2")
    parts.append("_system.j2")
    if variant.flavor == "devel":
        parts.append("_toolchain.j2")
    parts.append("_final.j2")

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
        uv=variant.uv if standalone else None,
        python_home=STANDALONE_HOME if standalone else None,
        python_commands=(
            (f"/opt/gpuimages/build/python-standalone.sh {variant.python} {variant.uv}",)
            if standalone
            else ()
        ),
        horovod_apt=tuple(sorted(set(horovod_apt))),
        horovod_requirements=_quoted(horovod_requirements),
        venv_stage="horovod" if variant.horovod else "builder",
        final_commands=(*USER_COMMANDS, *(SSHD_COMMANDS if variant.horovod else ())),
        runtime_apt=tuple(sorted(set(runtime_apt))),
        devel_apt=tuple(sorted(set(devel_apt))),
        pip_pins=_quoted(variant.pip_pins),
        horovod=variant.horovod,
        horovod_fixes=" ".join(variant.horovod_fixes),
        horovod_env=tuple(horovod_env),
        horovod_commands=tuple(horovod_commands),
        cuda_toolkit=variant.cuda_toolkit if variant.flavor == "devel" else None,
        toolchain_requirements=_quoted(
            variant.toolchain_requirements if variant.flavor == "devel" else ()
        ),
        toolchain_commands=tuple(toolchain_commands),
        parts=tuple(parts),
        final_parent="toolchain" if variant.flavor == "devel" else "system",
        env=tuple((k, _quoted_value(v, expand=True)) for k, v in sorted(env.items())),
        labels=tuple((k, _quoted_value(v)) for k, v in variant.labels().items()),
        constraints=CONSTRAINTS,
        protected=_quoted(PROTECTED),
        user=f"{USER_UID}:0",
        entrypoint=json.dumps(ENTRYPOINT),
        cmd=json.dumps(["bash"]),
    )


def generated_header(matrix_path: str) -> str:
    """The first line of every rendered Dockerfile (see templates/_header.j2)."""
    return (
        f"# Generated by gpuimages from templates/{MAIN_TEMPLATE} and {matrix_path}: do not edit."
    )


def _ours(folder: Path, matrix_path: str) -> bool:
    """A folder holding a Dockerfile rendered by gpuimages from this matrix file."""
    try:
        with open(folder / DOCKERFILE, encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\n")
    except OSError:
        return False
    return first == generated_header(matrix_path)


def _check_comment(value: str, what: str) -> None:
    """A value placed in a Dockerfile comment: one line."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UserInputError(f"{what} {shown(value)} holds a line break or control character.")


def _quoted_value(value: str, *, expand: bool = False) -> str:
    """A value for `KEY="..."` in LABEL/ENV: backslash and quote escaped, `$` too unless
    the value means to expand (ENV PATH=...:${PATH}); line breaks and other control
    characters refused (a newline would start a new Dockerfile instruction)."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UserInputError(
            f"{shown(value)} cannot be a LABEL or ENV value: it holds a line break or "
            "another control character."
        )
    value = value.replace("\\", "\\\\").replace('"', '\\"')
    return value if expand else value.replace("$", "\\$")


def _quoted(requirements: tuple[str, ...]) -> tuple[str, ...]:
    """Requirement lines as shell words: extras like `pkg[a,b]` are globs unquoted."""
    return tuple(shlex.quote(r) for r in requirements)


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
    compat: Compat | None = None,
) -> RenderResult:
    """Write dockerfiles/<name>/Dockerfile (and its startup.json) for every variant, or
    (check) only compare.

    A Dockerfile for a variant no longer in the matrix is stale: removed (or reported),
    but only one that carries our generated header naming this same matrix file; a
    Dockerfile of another matrix or written by hand is never touched. An empty matrix is
    refused (it would make every Dockerfile stale).
    """
    if not variants:
        raise UserInputError(
            f"{matrix_path} defines no variants: nothing to render (and dockerfiles/ is left "
            "as it is). Add an `axes` group or an `include` entry."
        )
    _check_comment(matrix_path, "--matrix")
    env = _environment(templates)
    template = env.get_template(MAIN_TEMPLATE)
    compat = compat or load_compat()
    written: list[Path] = []
    unchanged: list[Path] = []
    wanted: set[str] = set()
    for variant in variants:
        wanted.add(variant.name)
        files = {
            DOCKERFILE: template.render(ctx=context_for(variant, matrix_path)),
            # What the image's start-up check knows (the doctor's verdicts, as data).
            FACTS_FILE: facts_text(variant, variants, compat),
        }
        for filename, text in files.items():
            path = out_dir / variant.name / filename
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
            if child.is_dir() and child.name not in wanted and _ours(child, matrix_path):
                removed.append(child)
                if not check:
                    for name in (DOCKERFILE, FACTS_FILE):  # the files we write, no others
                        (child / name).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        child.rmdir()  # only when nothing else was put there
                    log.info("removed stale %s", child)
    return RenderResult(tuple(written), tuple(unchanged), tuple(removed))
