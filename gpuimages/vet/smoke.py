"""Image -> SmokeReport: run the in-image suite (scripts/smoke/) in containers.

One container runs the whole suite (nvidia-smi, torch/CUDA/cuDNN/NCCL, DDP, flavor,
Horovod); two containers on a user-defined network then run DDP as two nodes. The host
adds what only it can see: labels against the variant and what was found inside. Every
container and network is removed afterwards, on failure and Ctrl-C too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import DeviceRequest

from gpuimages.build.engine import built_image, engine_client, engine_errors
from gpuimages.core.options import memory_size, whole_number
from gpuimages.core.progress import Progress, silent
from gpuimages.facts.variant import Variant
from gpuimages.vet.container import RunSpec, TrackedContainers, parse_gpus
from gpuimages.vet.container import tracked as track_containers
from gpuimages.vet.smoke_report import SmokeCheck, SmokeReport

log = logging.getLogger(__name__)

SUITE = "/opt/gpuimages/smoke/suite.py"
SMOKE_LABEL = "io.gpuimages.smoke-run"
MASTER_PORT = 29500
PROGRESS_PREFIX = "[smoke] "  # scripts/smoke/suite.py's stderr line per check begun and ended


@dataclass(frozen=True)
class SmokeOptions:
    gpus: str | None = None  # "all", "none", "0,1"; default: none for CPU, all for GPU
    shm_size: str | None = None  # else --ipc=host
    timeout_s: int = 300  # per check
    require_gpus: int | None = None
    multinode: bool = True

    @classmethod
    def from_options(
        cls,
        *,
        gpus: str | None = None,
        shm_size: str | None = None,
        timeout: int | str | None = None,
        require_gpus: int | str | None = None,
        multinode: bool = True,
    ) -> SmokeOptions:
        """The options of `invoke smoke` as given on the command line."""
        timeout_s = 300 if timeout is None else whole_number(timeout, "--timeout", minimum=1)
        required = None if require_gpus is None else whole_number(require_gpus, "--require-gpus")
        if shm_size is not None:
            shm_size = memory_size(shm_size, "--shm-size")
        if gpus is not None:
            parse_gpus(gpus, "all")  # --gpus all | none | 0,1, refused here when not
        return cls(gpus, shm_size, timeout_s, required, multinode)

    def gpus_for(self, variant: Variant) -> str:
        return self.gpus or ("none" if variant.is_cpu else "all")


def device_requests(gpus: str) -> list[DeviceRequest]:
    """--gpus all | none | 0,1 as the docker API's device requests (as `invoke run` does)."""
    return RunSpec(image="", command=(), gpus=parse_gpus(gpus, "all")).device_requests()


def tracked(client: docker.DockerClient) -> AbstractContextManager[TrackedContainers]:
    """What one smoke run creates, labelled with its run id, removed whatever happens."""
    return track_containers(client, {SMOKE_LABEL: "{run_id}"})


def start(
    box: TrackedContainers,
    image: str,
    command: list[str],
    options: SmokeOptions,
    gpus: str,
    **kw: Any,
) -> Container:
    host_config: dict = {"shm_size": options.shm_size} if options.shm_size else {"ipc_mode": "host"}
    return box.start(image, command, device_requests=device_requests(gpus), **host_config, **kw)


def _wait(
    box: TrackedContainers, container: Container, timeout_s: float
) -> tuple[int | None, str, str]:
    """Exit code (None on timeout), stdout, stderr of a detached container."""
    code = box.wait(container, timeout_s)
    return code, box.logs(container, stderr=False), box.logs(container, stdout=False)


def _parse_suite(stdout: str) -> dict | None:
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        return json.loads(stdout[start:])
    except json.JSONDecodeError:
        return None


def suite_argv(options: SmokeOptions, *extra: str) -> list[str]:
    argv = ["python", SUITE, "--timeout", str(options.timeout_s)]
    if options.require_gpus is not None:
        argv += ["--require-gpus", str(options.require_gpus)]
    return argv + list(extra)


def _suite_budget(options: SmokeOptions, checks: int = 7) -> float:
    return options.timeout_s * checks + 120


def _failed(name: str, reason: str, tail: str = "", duration: float = 0.0) -> SmokeCheck:
    return SmokeCheck(name, "failed", reason, round(duration, 2), {}, tail[-4000:])


@dataclass(frozen=True)
class SuiteOutput:
    """What the in-image suite printed (scripts/smoke/suite.py), its checks typed."""

    checks: tuple[SmokeCheck, ...]
    found: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str) -> SmokeCheck | None:
        return next((c for c in self.checks if c.name == name), None)


def _suite_output(doc: dict | None) -> SuiteOutput | None:
    if doc is None:
        return None
    try:
        checks = tuple(SmokeCheck.from_dict(c) for c in doc.get("checks") or [])
    except ValueError:
        return None
    return SuiteOutput(checks, dict(doc.get("found") or {}), dict(doc.get("host") or {}))


def run_suite(
    box: TrackedContainers,
    image_id: str,
    options: SmokeOptions,
    gpus: str,
    *extra: str,
    on_progress: Progress = silent,
    **kw,
) -> SuiteOutput:
    container = start(box, image_id, suite_argv(options, *extra), options, gpus, **kw)
    began = time.monotonic()

    def progress(line: str) -> None:
        if line.startswith(PROGRESS_PREFIX):
            on_progress(line.removeprefix(PROGRESS_PREFIX).strip())

    box.follow(container, progress, stdout=False)
    code, out, err = _wait(box, container, _suite_budget(options))
    suite = _suite_output(_parse_suite(out))
    if code is None or suite is None:
        why = "the suite did not finish in time" if code is None else "the suite printed no report"
        return SuiteOutput((_failed("suite", why, err, time.monotonic() - began),))
    return suite


def nccl_debug_rerun(
    box: TrackedContainers, image_id: str, options: SmokeOptions, gpus: str
) -> str:
    """A failed GPU DDP run once more with NCCL_DEBUG=INFO: the log says which transport
    NCCL picked (or why it fell back to sockets, e.g. without --ipc=host)."""
    report = run_suite(
        box,
        image_id,
        options,
        gpus,
        "--only",
        "ddp",
        environment={"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET"},
    )
    ddp = report.check("ddp") or report.check("suite")
    return ddp.log_tail if ddp else ""


def run_multinode(
    box: TrackedContainers, image_id: str, options: SmokeOptions, gpus: str
) -> SmokeCheck:
    """DDP across two containers on a user-defined network: node 0 is the master."""
    name = f"gpuimages-smoke-{box.run_id}"
    box.network(name)
    began = time.monotonic()
    nodes = []
    for rank in (0, 1):
        args = [
            "--only",
            "ddp",
            "--nnodes",
            "2",
            "--node-rank",
            str(rank),
            "--master-addr",
            f"{name}-node0",
            "--master-port",
            str(MASTER_PORT),
        ]
        nodes.append(
            start(
                box,
                image_id,
                suite_argv(options, *args),
                options,
                gpus,
                name=f"{name}-node{rank}",
                hostname=f"node{rank}",
                network=name,
            )
        )
    results = [_wait(box, c, options.timeout_s + 120) for c in nodes]
    duration = time.monotonic() - began
    per_node = []
    for rank, (code, out, err) in enumerate(results):
        report = _suite_output(_parse_suite(out))
        ddp = report.check("ddp") if report else None
        if code is None or ddp is None:
            return _failed(
                "multinode_ddp", f"node {rank} did not report (exit {code})", err, duration
            )
        per_node.append(ddp)
    failed = [i for i, d in enumerate(per_node) if d.status != "passed"]
    if failed:
        first = per_node[failed[0]]
        return _failed(
            "multinode_ddp", f"node {failed[0]}: {first.reason}", first.log_tail, duration
        )
    return SmokeCheck(
        "multinode_ddp",
        "passed",
        f"2 containers on network {name}: " + per_node[0].reason,
        round(duration, 2),
        {**per_node[0].figures, "nodes": 2},
        per_node[0].log_tail,
    )


def _major_minor(version: str | None) -> str | None:
    if not version:
        return None
    return ".".join(version.split("+")[0].split(".")[:2])


def _cudnn_version(cudnn: str) -> str | None:
    """'9.1.0' as is; raw torch.backends.cudnn.version() numbers (8302, 90100) as X.Y.Z."""
    if not cudnn or "." in cudnn:
        return cudnn or None
    raw = int(cudnn)
    if raw >= 90000:
        return f"{raw // 10000}.{raw % 10000 // 100}.{raw % 100}"
    return f"{raw // 1000}.{raw % 1000 // 100}.{raw % 100}"


def labels_check(variant: Variant, labels: dict[str, str], found: dict) -> SmokeCheck:
    """Truth in labels: image labels equal the variant's; what was found inside equals both."""
    problems = []
    for key, want in variant.labels().items():
        if key == "org.opencontainers.image.title":
            continue  # follows --registry/aliases when re-tagged
        if labels.get(key) != want:
            problems.append(f"label {key}={labels.get(key)!r}, variant says {want!r}")
    seen = {
        "torch": (found.get("torch") or "").split("+")[0] or None,
        "python": _major_minor(found.get("python")),
        "cuda": "cpu"
        if variant.is_cpu and not found.get("cuda")
        else _major_minor(found.get("cuda")),
        "torchvision": (found.get("torchvision") or "").split("+")[0] or "none",
    }
    prefix = found.get("python_prefix")
    if prefix:  # where the venv's Python really lives tells its source
        seen["python_source"] = "standalone" if prefix.startswith("/opt/python/") else "apt"
    if not variant.is_cpu:
        cudnn = str(found.get("cudnn") or "")
        version = _cudnn_version(cudnn)
        seen["cudnn"] = version.split(".")[0] if version else None
        if variant.cudnn_version:
            seen["cudnn_version"] = version
        if variant.nccl:
            seen["nccl"] = found.get("nccl")
    for key, value in seen.items():
        want = variant.versions()[key]
        if value != want:
            problems.append(f"found {key} {value!r} inside, variant/labels say {want!r}")
    return SmokeCheck(
        "labels",
        "failed" if problems else "passed",
        "; ".join(problems) or "labels equal the variant; found versions equal labels",
        figures={"compared": sorted(seen)},
    )


def _done(check: SmokeCheck) -> str:
    return f"{check.name}: {check.status} ({check.duration_s:.1f} s) {check.reason}"


def smoke(
    variant: Variant,
    options: SmokeOptions,
    *,
    client: docker.DockerClient | None = None,
    on_progress: Progress = silent,
) -> SmokeReport:
    """Run every check against the image the variant's tag names; return the SmokeReport.

    on_progress hears each check as it begins ("ddp ...") and ends ("ddp: passed ...").
    """
    client = client or engine_client()
    image = built_image(variant, client)
    gpus = options.gpus_for(variant)
    started = time.monotonic()
    with tracked(client) as box:
        suite = run_suite(box, image.id, options, gpus, on_progress=on_progress)
        checks = list(suite.checks)
        ddp = suite.check("ddp")
        if ddp and ddp.status == "failed" and not variant.is_cpu:
            on_progress("ddp again with NCCL_DEBUG=INFO ...")
            rerun = nccl_debug_rerun(box, image.id, options, gpus)
            checks[checks.index(ddp)] = replace(ddp, nccl_debug_log=rerun)
        checks.append(labels_check(variant, image.labels, suite.found))
        on_progress(_done(checks[-1]))
        if options.multinode:
            on_progress("multinode_ddp ...")
            checks.append(run_multinode(box, image.id, options, gpus))
            on_progress(_done(checks[-1]))
    with engine_errors("could not ask the Docker engine its version"):
        engine_version = client.version().get("Version")
    return SmokeReport(
        variant=variant.as_dict(),
        image_id=image.id,
        status="failed" if any(c.status == "failed" for c in checks) else "passed",
        checks=tuple(checks),
        tag=variant.tag,
        created=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        duration_s=round(time.monotonic() - started, 2),
        host={"docker": engine_version, "gpus_requested": gpus, "in_container": suite.host},
        found=suite.found,
    )
