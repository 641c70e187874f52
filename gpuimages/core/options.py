"""The command-line options every entry point shares, and their help: one place.

AXES are the variant axes a user can select by (`--torch 1.12.0 --cuda 11.3 ...`). They
are also matrix.yaml's axes and `VariantRequest`'s fields: adding an axis here makes it
an option of every selecting task, a matrix key and a request field at once (a unit test
holds `VariantRequest` to the same list).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from gpuimages.core.errors import UserInputError
from gpuimages.core.paths import BUILD_REPORT, MATRIX, SMOKE_REPORTS, WHEELHOUSE
from gpuimages.core.reference import shown

AXES: dict[str, str] = {
    "torch": "PyTorch release, e.g. 1.12.0",
    "cuda": "CUDA major.minor (11.3, cu113) or 'cpu'",
    "cudnn": "cuDNN major; default: the one the torch x CUDA build ships with",
    "flavor": "runtime (default) or devel",
    "python": "Python major.minor; without --os it picks an OS whose archive has it, else "
    "python-build-standalone on the build's default OS; default: the OS's own",
    "python_source": "where Python comes from: apt (the OS archive) or standalone "
    "(python-build-standalone via a pinned uv); default: apt where the OS has the Python",
    "os": "e.g. ubuntu20.04, debian12; default: newest NVIDIA publishes the CUDA for",
    "base": "where CUDA comes from: os (plain OS image + torch's own CUDA wheels; the "
    "default where it works) or nvidia (nvidia/cuda images)",
    "horovod": "Horovod version to build in, e.g. 0.28.1; default: none",
}

HELP: dict[str, str] = {
    **AXES,
    "matrix": f"matrix file (default {MATRIX})",
    "all": "every variant of the matrix",
    "variant": "a variant name from `invoke matrix`",
    "json": "print JSON instead of a table",
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
    "local_base": "os-route variants on debian12 or debian13: use a local debootstrap Debian base "
    "(no registry pull)",
    "start_engine": "start a Docker engine (as root) when none answers",
    "report": f"report path (build: {BUILD_REPORT}; smoke: {SMOKE_REPORTS}/)",
    "cache_to": "registry cache target, e.g. REG/NS/gpuimages/pytorch:{variant} (inline cache "
    "without buildx: it reaches REF when the tested image is pushed there)",
    "cache_from": "registry cache source image reference ('{variant}' allowed)",
    "dest": f"wheelhouse directory (default {WHEELHOUSE})",
    "registry": "registry prefix HOST[:PORT][/NAMESPACE] (default: matrix.yaml's registry)",
    "alias": "extra tag name in the same repository, e.g. latest (repeatable)",
    "gpus": "GPUs for the containers: all, none, or 0,1 (default: none for CPU variants, "
    "all for CUDA ones; `none` where the host has no NVIDIA runtime)",
    "shm_size": "shared memory size, e.g. 8g (default: --ipc=host)",
    "timeout": "seconds per check before it is killed and reported failed (default 300)",
    "require_gpus": "fail (not skip) the GPU checks when fewer GPUs are visible",
    "no_multinode": "skip the two-container multi-node DDP run",
    "reports": f"folder of smoke reports as `invoke smoke --report` wrote them "
    f"(default {SMOKE_REPORTS})",
    "tries": "attempts per push/verify on transient registry errors (default 4)",
    "backoff": "seconds before the first retry, doubled each time (default 1)",
    "image": "a local image to use instead of a variant's (any name docker knows)",
    "mount": "host directory mounted at /workspace, the working directory; the container "
    "then runs as the directory's owner, group 0 (--user UID:0), so it can write there",
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
    "catalog": "a catalog.json `invoke publish` wrote, or a folder of releases (reports/release): "
    "name each fitting variant's published reference@digest (repeatable)",
}


# --- option values, checked before any work (one paragraph each, exit 2) --------------


def whole_number(value: object, option: str, *, minimum: int = 0) -> int:
    """--jobs 4, --timeout 300: a whole number >= minimum, or UserInputError."""
    text = str(value).strip()
    if not text.isdigit() or len(text) > 9 or int(text) < minimum:
        raise UserInputError(
            f"{option} takes a whole number{f' >= {minimum}' if minimum else ''}, "
            f"not {shown(value)}."
        )
    return int(text)


# A task's own wording where it differs from HELP's, and the options only one task has.
TASK_HELP: dict[str, dict[str, str]] = {
    "publish": {
        "registry": "HOST[:PORT][/NAMESPACE] (default: matrix.yaml's registry, else a local "
        "registry this task starts on 127.0.0.1:5000)",
        "dry_run": "check the smoke gate and show what would be pushed where; push nothing",
        "report": "the smoke report of the one image published (as `invoke smoke --report`)",
    },
    "doctor": {
        "image": "also run `docker run --rm --gpus all IMAGE nvidia-smi` for real (exit 1 if it "
        "fails)",
    },
    "resolve": {
        "driver": "the host's NVIDIA driver as nvidia-smi shows it, e.g. 535.104.05, or 'none' "
        "for a host without an NVIDIA GPU (CPU variants) (default: this host's)",
        "gpu_arch": "the GPUs' compute capability: sm_90, 9.0 or 90; repeat it or give a comma "
        "list for a host with mixed GPUs (default: this host's)",
        "torch": "only torch releases starting with this: 2.5 matches 2.5.1",
        "python": "only variants with this Python, e.g. 3.11",
        "flavor": "only runtime or devel (default: both, runtime ranked first)",
    },
    "run": {
        "dry_run": "print the equivalent `docker run` line and nothing else; start nothing",
    },
    "launch": {
        "horovod": "Horovod job: horovodrun/mpirun and an MPIJob (the variant's Horovod image)",
    },
    "compat": {
        "action": "sync: compare compat.yaml's release facts with the wheel indexes",
        "index": "PEP 503 root of the PyTorch wheel index (default download.pytorch.org/whl; "
        "'none': PyPI alone)",
        "pypi": "PyPI JSON API root (default https://pypi.org/pypi; 'none' to skip)",
        "write": "update the generated block of compat.yaml (default: print the diff only)",
    },
    "promote": {
        "from": "staging registry HOST[:PORT]/NAMESPACE the images were published to",
        "to": "public registry HOST[:PORT]/NAMESPACE to copy them to",
        "variant": "a variant name (repeatable; default: every one the manifests record)",
        "manifest": "release manifest file or folder (repeatable; default reports/release)",
        "dry_run": "check the evidence and the staging digests; copy nothing",
        "tries": "tries per registry request on transient errors (default 4)",
        "backoff": "seconds before the first retry, doubling (default 1)",
    },
}

_SIZE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,3})?[bkmgBKMG]?")


def memory_size(value: str, option: str) -> str:
    """--shm-size 8g: docker's size grammar (a number, optionally b/k/m/g)."""
    if not _SIZE.fullmatch(str(value).strip()):
        raise UserInputError(
            f"{option} takes a size such as 8g, 512m or 1073741824, not {shown(value)}."
        )
    return str(value).strip()


def writable_file(value: str | Path, option: str) -> Path:
    """A file a command will write at its end: its folder made and probed now, so a run
    is not lost to a path that cannot be written."""
    path = Path(value)
    if path.is_dir():
        writable_dir(path, option)
        return path
    writable_dir(path.parent, option, shown_as=path)
    return path


def writable_dir(value: str | Path, option: str, *, shown_as: object = None) -> Path:
    """A folder a command writes into: made if missing, and a file created and removed."""
    path = Path(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".gpuimages-probe-"):
            pass
    except OSError as exc:
        raise UserInputError(
            f"{option} {shown(str(shown_as or value))} cannot be written "
            f"({exc.strerror or exc}): choose a folder you can write to."
        ) from None
    return path
