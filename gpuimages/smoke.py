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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest

from gpuimages.container import RunSpec, parse_gpus, start_error
from gpuimages.errors import GpuImagesError, UserInputError
from gpuimages.variant import Variant

log = logging.getLogger(__name__)

SUITE = "/opt/gpuimages/smoke/suite.py"
SCHEMA = 1
SMOKE_LABEL = "io.gpuimages.smoke-run"
REPORT_DIR = Path("reports/smoke")
MASTER_PORT = 29500


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
        timeout: int | str = 300,
        require_gpus: int | str | None = None,
        multinode: bool = True,
    ) -> SmokeOptions:
        """The options of `invoke smoke` as given on the command line."""
        try:
            timeout_s = int(timeout)
            required = None if require_gpus is None else int(require_gpus)
        except ValueError:
            raise UserInputError(
                "--timeout takes a whole number of seconds, --require-gpus a number of GPUs."
            ) from None
        return cls(gpus, shm_size, timeout_s, required, multinode)

    def gpus_for(self, variant: Variant) -> str:
        return self.gpus or ("none" if variant.is_cpu else "all")


def device_requests(gpus: str) -> list[DeviceRequest]:
    """--gpus all | none | 0,1 as the docker API's device requests (as `invoke run` does)."""
    return RunSpec(image="", command=(), gpus=parse_gpus(gpus, "all")).device_requests()


class Containers:
    """Tracks what a smoke run creates so that all of it is removed, whatever happens."""

    def __init__(self, client: docker.DockerClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.containers: list = []
        self.networks: list = []

    def start(self, image: str, command: list[str], options: SmokeOptions, gpus: str, **kw):
        host_config: dict = (
            {"shm_size": options.shm_size} if options.shm_size else {"ipc_mode": "host"}
        )
        try:
            # create, track, then start: a container whose start fails is still removed.
            container = self.client.containers.create(
                image,
                command,
                device_requests=device_requests(gpus),
                labels={SMOKE_LABEL: self.run_id},
                **host_config,
                **kw,
            )
            self.containers.append(container)
            container.start()
        except docker.errors.APIError as exc:
            raise start_error(exc, image) from None
        return container

    def network(self, name: str):
        net = self.client.networks.create(name, driver="bridge", labels={SMOKE_LABEL: self.run_id})
        self.networks.append(net)
        return net

    def remove_all(self) -> None:
        for container in self.containers:
            try:
                container.remove(force=True)
            except docker.errors.APIError as exc:
                log.warning("could not remove container %s: %s", container.short_id, exc)
        for net in self.networks:
            try:
                net.remove()
            except docker.errors.APIError as exc:
                log.warning("could not remove network %s: %s", net.name, exc)


@contextmanager
def tracked(client: docker.DockerClient) -> Iterator[Containers]:
    box = Containers(client, uuid.uuid4().hex[:10])
    try:
        yield box
    finally:
        box.remove_all()


def _wait(container, timeout_s: float) -> tuple[int | None, str, str]:
    """Exit code (None on timeout), stdout, stderr of a detached container."""
    try:
        status = container.wait(timeout=timeout_s)
        code = int(status.get("StatusCode", -1))
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        container.kill()
        code = None
    out = container.logs(stdout=True, stderr=False).decode(errors="replace")
    err = container.logs(stdout=False, stderr=True).decode(errors="replace")
    return code, out, err


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


def _suite_budget(options: SmokeOptions, checks: int = 6) -> float:
    return options.timeout_s * checks + 120


def _failed(name: str, reason: str, tail: str = "", duration: float = 0.0) -> dict:
    return {
        "name": name,
        "status": "failed",
        "reason": reason,
        "duration_s": round(duration, 2),
        "figures": {},
        "log_tail": tail[-4000:],
    }


def run_suite(
    box: Containers, image_id: str, options: SmokeOptions, gpus: str, *extra: str, **kw
) -> dict:
    container = box.start(image_id, suite_argv(options, *extra), options, gpus, **kw)
    start = time.monotonic()
    code, out, err = _wait(container, _suite_budget(options))
    report = _parse_suite(out)
    if code is None or report is None:
        why = "the suite did not finish in time" if code is None else "the suite printed no report"
        return {
            "checks": [_failed("suite", why, err, time.monotonic() - start)],
            "found": {},
            "host": {},
        }
    return report


def nccl_debug_rerun(box: Containers, image_id: str, options: SmokeOptions, gpus: str) -> str:
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
    ddp = next((c for c in report.get("checks", []) if c["name"] in ("ddp", "suite")), {})
    return ddp.get("log_tail", "")


def run_multinode(box: Containers, image_id: str, options: SmokeOptions, gpus: str) -> dict:
    """DDP across two containers on a user-defined network: node 0 is the master."""
    name = f"gpuimages-smoke-{box.run_id}"
    box.network(name)
    start = time.monotonic()
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
            box.start(
                image_id,
                suite_argv(options, *args),
                options,
                gpus,
                name=f"{name}-node{rank}",
                hostname=f"node{rank}",
                network=name,
            )
        )
    results = [_wait(c, options.timeout_s + 120) for c in nodes]
    duration = time.monotonic() - start
    per_node = []
    for rank, (code, out, err) in enumerate(results):
        report = _parse_suite(out)
        ddp = next((c for c in (report or {}).get("checks", []) if c["name"] == "ddp"), None)
        if code is None or ddp is None:
            return _failed(
                "multinode_ddp", f"node {rank} did not report (exit {code})", err, duration
            )
        per_node.append(ddp)
    failed = [i for i, d in enumerate(per_node) if d["status"] != "passed"]
    if failed:
        first = per_node[failed[0]]
        return _failed(
            "multinode_ddp",
            f"node {failed[0]}: {first['reason']}",
            first.get("log_tail", ""),
            duration,
        )
    figures = dict(per_node[0].get("figures") or {})
    figures["nodes"] = 2
    return {
        "name": "multinode_ddp",
        "status": "passed",
        "duration_s": round(duration, 2),
        "reason": f"2 containers on network {name}: " + per_node[0]["reason"],
        "figures": figures,
        "log_tail": per_node[0].get("log_tail", ""),
    }


def _major_minor(version: str | None) -> str | None:
    if not version:
        return None
    return ".".join(version.split("+")[0].split(".")[:2])


def labels_check(variant: Variant, labels: dict[str, str], found: dict) -> dict:
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
    if not variant.is_cpu:
        cudnn = str(found.get("cudnn") or "")
        seen["cudnn"] = cudnn[0] if cudnn else None  # 8302 -> 8; 90100 -> 9
    for key, value in seen.items():
        want = variant.versions()[key]
        if value != want:
            problems.append(f"found {key} {value!r} inside, variant/labels say {want!r}")
    return {
        "name": "labels",
        "status": "failed" if problems else "passed",
        "reason": "; ".join(problems) or "labels equal the variant; found versions equal labels",
        "duration_s": 0.0,
        "figures": {"compared": sorted(seen)},
        "log_tail": "",
    }


def smoke(
    variant: Variant,
    options: SmokeOptions,
    *,
    client: docker.DockerClient | None = None,
) -> dict:
    """Run every check against the image the variant's tag names; return the SmokeReport."""
    client = client or docker.from_env(timeout=600)
    try:
        image = client.images.get(variant.tag)
    except docker.errors.ImageNotFound:
        raise GpuImagesError(
            f"{variant.tag} is not built here: run `invoke build --variant {variant.name}` first."
        ) from None
    gpus = options.gpus_for(variant)
    started = time.monotonic()
    with tracked(client) as box:
        suite = run_suite(box, image.id, options, gpus)
        checks = list(suite.get("checks", []))
        ddp = next((c for c in checks if c["name"] == "ddp"), None)
        if ddp and ddp["status"] == "failed" and not variant.is_cpu:
            ddp["nccl_debug_log"] = nccl_debug_rerun(box, image.id, options, gpus)
        checks.append(labels_check(variant, image.labels, suite.get("found") or {}))
        if options.multinode:
            checks.append(run_multinode(box, image.id, options, gpus))
    failed = [c["name"] for c in checks if c["status"] == "failed"]
    return {
        "schema": SCHEMA,
        "variant": variant.as_dict(),
        "tag": variant.tag,
        "image_id": image.id,
        "status": "failed" if failed else "passed",
        "failed_checks": failed,
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "duration_s": round(time.monotonic() - started, 2),
        "host": {
            "docker": client.version().get("Version"),
            "gpus_requested": gpus,
            "in_container": suite.get("host", {}),
        },
        "checks": checks,
        "found": suite.get("found", {}),
    }


def write_reports(report: dict, path: Path) -> tuple[Path, Path]:
    """The JSON report and a JUnit XML beside it (same stem) for CI test views."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    junit = path.with_suffix(".xml")
    suite = ET.Element(
        "testsuite",
        name=f"smoke.{report['variant']['name']}",
        tests=str(len(report["checks"])),
        failures=str(sum(c["status"] == "failed" for c in report["checks"])),
        skipped=str(sum(c["status"] == "skipped" for c in report["checks"])),
        time=f"{report['duration_s']:.2f}",
    )
    for check in report["checks"]:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"smoke.{report['variant']['name']}",
            name=check["name"],
            time=f"{check.get('duration_s', 0):.2f}",
        )
        if check["status"] == "failed":
            ET.SubElement(case, "failure", message=check["reason"][:500]).text = check.get(
                "log_tail", ""
            )
        elif check["status"] == "skipped":
            ET.SubElement(case, "skipped", message=check["reason"][:500])
        if check.get("figures"):
            ET.SubElement(case, "system-out").text = json.dumps(check["figures"], sort_keys=True)
    ET.ElementTree(suite).write(junit, encoding="utf-8", xml_declaration=True)
    return path, junit


def report_path(variant: Variant, report: str | None, count: int) -> Path:
    """--report is a file for one image, a folder for several; default reports/smoke/."""
    if report is None:
        return REPORT_DIR / f"{variant.name}.json"
    p = Path(report)
    if count > 1 or p.is_dir() or not p.suffix:
        return p / f"{variant.name}.json"
    return p
