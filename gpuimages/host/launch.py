"""Multi-node training with a variant's image: per-node commands and Kubernetes manifests.

A `LaunchPlan` (nodes, GPUs per node, master address and port, the image, the script)
renders as:

- one `docker run ... torchrun --nnodes N --node_rank R ...` line per node;
- for Horovod images, `horovodrun -np N*G -H host1:G,...` and the equivalent `mpirun`;
- Kubernetes manifests: a Kubeflow `PyTorchJob` (kubeflow.org/v1, training-operator) or,
  for Horovod, an `MPIJob` (kubeflow.org/v2beta1, mpi-operator v0.4+), with the variant's
  image, `nvidia.com/gpu` limits and a memory-backed /dev/shm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.version import Version

from gpuimages.core.errors import UserInputError
from gpuimages.facts.matrix import Matrix
from gpuimages.facts.registry_address import Registry
from gpuimages.facts.select import Selection
from gpuimages.facts.variant import Variant
from gpuimages.vet.container import RunSpec

DEFAULT_PORT = 29500
TORCHRUN_SINCE = "1.10"  # torch.distributed.run / `torchrun`; before: torch.distributed.launch
SHM_VOLUME = "dshm"
SSH_PORT = 12345  # sshd in the worker containers (Horovod's Docker guide uses it too)
# Open MPI settings for Horovod over NCCL (Horovod's docs, "Running Horovod"): no core
# binding, ranks filled slot by slot, TCP rather than the deprecated openib BTL, and the
# environment the ranks need passed along.
MPIRUN_FLAGS = (
    "-bind-to",
    "none",
    "-map-by",
    "slot",
    "-x",
    "NCCL_DEBUG=INFO",
    "-x",
    "LD_LIBRARY_PATH",
    "-x",
    "PATH",
    "-mca",
    "pml",
    "ob1",
    "-mca",
    "btl",
    "^openib",
)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class LaunchPlan:
    variant: Variant
    image: str
    nodes: int
    gpus_per_node: int
    master_addr: str
    master_port: int = DEFAULT_PORT
    script: tuple[str, ...] = ("train.py",)
    hosts: tuple[str, ...] = ()  # one per node, the master first (Horovod's -H)
    horovod: bool = False
    job_name: str = "train"
    mount: Path | None = None
    shm_size: str | None = None  # Kubernetes: sizeLimit of the /dev/shm emptyDir

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def host_slots(self) -> str:
        return ",".join(f"{h}:{self.gpus_per_node}" for h in self.hosts)

    @property
    def python_script(self) -> tuple[str, ...]:
        """The script as a command: `python train.py ...` for a .py file."""
        if self.script and self.script[0].endswith(".py"):
            return ("python", *self.script)
        return self.script


def make_plan(
    variant: Variant,
    image: str,
    *,
    nodes: int,
    gpus_per_node: int,
    master_addr: str,
    master_port: int = DEFAULT_PORT,
    script: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
    horovod: bool = False,
    job_name: str | None = None,
    mount: str | Path | None = None,
    shm_size: str | None = None,
) -> LaunchPlan:
    """Validate `invoke launch` options into a LaunchPlan (UserInputError on a bad one)."""
    nodes, gpus_per_node, master_port = (
        _positive("--nodes", nodes),
        _positive("--gpus-per-node", gpus_per_node),
        _positive("--master-port", master_port),
    )
    if master_port > 65535:
        raise UserInputError(f"--master-port {master_port} is not a TCP port (1-65535).")
    if not master_addr or not HOST.match(master_addr):
        raise UserInputError(
            f"--master-addr '{master_addr}' is not a host name or IP address: give the address "
            "of node 0 that every node can reach, e.g. --master-addr 10.0.0.1."
        )
    if horovod and not variant.horovod:
        raise UserInputError(
            f"--horovod needs an image with Horovod, and {variant.name} has none: pick a "
            "variant whose name ends in -horovod<version> (`invoke matrix` lists them)."
        )
    host_list = tuple(hosts) or (master_addr, *(f"node{i}" for i in range(1, nodes)))
    if len(host_list) != nodes:
        raise UserInputError(
            f"--hosts names {len(host_list)} host(s) for --nodes {nodes}: give one per node, "
            "the master first, e.g. --hosts 10.0.0.1,10.0.0.2."
        )
    bad = [h for h in host_list if not HOST.match(h)]
    if bad:
        raise UserInputError(f"--hosts: '{bad[0]}' is not a host name or IP address.")
    name = job_name or _job_name(variant)
    if not DNS_LABEL.match(name):
        raise UserInputError(
            f"--job-name '{name}' is not a Kubernetes name: lower-case letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit."
        )
    if shm_size:
        _k8s_quantity(shm_size)  # refuse a bad size now, not when the manifest is written
    mount_path = Path(mount).expanduser().resolve() if mount else Path.cwd()
    return LaunchPlan(
        variant=variant,
        image=image,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        master_addr=master_addr,
        master_port=master_port,
        script=tuple(script) or ("train.py",),
        hosts=host_list,
        horovod=horovod,
        job_name=name,
        mount=mount_path,
        shm_size=shm_size,
    )


def _positive(option: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise UserInputError(f"{option} must be a whole number of at least 1, not '{value}'.")
    return number


def _job_name(variant: Variant) -> str:
    hvd = "-hvd" if variant.horovod else ""
    core = re.sub(r"[^a-z0-9]+", "-", f"train-{variant.torch}-{variant.wheel_tag}{hvd}".lower())
    return core.strip("-")[:63]


# --- per-node commands ------------------------------------------------------------------


def launcher_argv(plan: LaunchPlan, rank: int) -> list[str]:
    """What runs in the container of node `rank`: torchrun (torch >= 1.10) or its precursor."""
    rendezvous = [
        "--nnodes",
        str(plan.nodes),
        "--node_rank",
        str(rank),
        "--master_addr",
        plan.master_addr,
        "--master_port",
        str(plan.master_port),
        "--nproc_per_node",
        str(plan.gpus_per_node),
    ]
    if Version(plan.variant.torch) >= Version(TORCHRUN_SINCE):
        return ["torchrun", *rendezvous, *plan.script]
    # --use_env: LOCAL_RANK in the environment, as torchrun does, not a --local_rank argument.
    return ["python", "-m", "torch.distributed.launch", "--use_env", *rendezvous, *plan.script]


def node_spec(plan: LaunchPlan, command: tuple[str, ...]) -> RunSpec:
    gpus = "none" if plan.variant.is_cpu else "all"
    return RunSpec(
        image=plan.image,
        command=command,
        gpus=gpus,
        mount=plan.mount,
        shm_size=None,  # --ipc=host: NCCL and DataLoader workers share /dev/shm
        network_host=True,  # ranks on different nodes reach each other on the host network
    )


def torchrun_commands(plan: LaunchPlan) -> list[tuple[str, str]]:
    """(label, command line) per node for a torchrun job."""
    return [
        (
            f"node {rank} ({plan.hosts[rank]})",
            node_spec(plan, tuple(launcher_argv(plan, rank))).docker_line(),
        )
        for rank in range(plan.nodes)
    ]


def horovodrun_argv(plan: LaunchPlan) -> list[str]:
    ssh = ["-p", str(SSH_PORT)] if plan.nodes > 1 else []
    slots = ["-H", plan.host_slots]
    return ["horovodrun", "-np", str(plan.world_size), *slots, *ssh, *plan.python_script]


def mpirun_argv(plan: LaunchPlan) -> list[str]:
    ssh = ["-mca", "plm_rsh_args", f"-p {SSH_PORT}"] if plan.nodes > 1 else []
    return [
        "mpirun",
        "--allow-run-as-root",
        "-np",
        str(plan.world_size),
        "-H",
        plan.host_slots,
        *MPIRUN_FLAGS,
        *ssh,
        *plan.python_script,
    ]


def horovod_commands(plan: LaunchPlan) -> list[tuple[str, str]]:
    """(label, line): the other nodes' containers (sshd), then horovodrun on node 0 or mpirun.

    As in Horovod's Docker guide: every node runs a container on the host network; the
    containers of nodes 1.. run sshd on SSH_PORT, and node 0's starts all ranks over SSH.
    """
    out = []
    for rank in range(1, plan.nodes):
        sshd = ("bash", "-c", f"/usr/sbin/sshd -p {SSH_PORT}; sleep infinity")
        out.append(
            (
                f"node {rank} ({plan.hosts[rank]}): sshd for the ranks, start first",
                node_spec(plan, sshd).docker_line(),
            )
        )
    out.append(
        (
            f"node 0 ({plan.hosts[0]}): the launcher",
            node_spec(plan, tuple(horovodrun_argv(plan))).docker_line(),
        )
    )
    out.append(
        (
            "or, on node 0, the same with Open MPI directly",
            node_spec(plan, tuple(mpirun_argv(plan))).docker_line(),
        )
    )
    return out


def commands(plan: LaunchPlan) -> list[tuple[str, str]]:
    return horovod_commands(plan) if plan.horovod else torchrun_commands(plan)


def notes(plan: LaunchPlan) -> list[str]:
    reach = (
        "The nodes must reach each other on any TCP port (MPI, Gloo and NCCL pick their own)"
        if plan.horovod
        else f"Every node must reach {plan.master_addr}:{plan.master_port}, and NCCL's own ports"
    )
    out = [
        f"{reach}; --network=host lets NCCL use the hosts' interfaces (set "
        "NCCL_SOCKET_IFNAME=eth0 when it picks the wrong one).",
        f"{plan.mount} is mounted at /workspace: put the script there on every node (or use a "
        "shared file system).",
    ]
    if plan.hosts[1:] and plan.hosts[1] == "node1":
        out.append("node1, node2, ... stand for the other nodes' addresses: pass --hosts.")
    if plan.horovod:
        out.append(
            "horovodrun and mpirun start the other nodes' ranks over SSH (port "
            f"{SSH_PORT}): node 0's container needs passwordless keys for the other nodes in "
            "/home/trainer/.ssh (the image's user, uid 1000); theirs run the image's sshd (as the "
            "MPIJob's workers do with --k8s, on port 2222: no privilege needed as uid 1000)."
        )
    else:
        out.append(
            "torchrun sets LOCAL_RANK, RANK and WORLD_SIZE in the environment; scripts written "
            "for `python -m torch.distributed.launch` that parse --local_rank should read "
            "os.environ['LOCAL_RANK'] instead."
        )
    return out


# --- Kubernetes manifests ---------------------------------------------------------------


def _labels(plan: LaunchPlan) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": plan.job_name,
        "app.kubernetes.io/managed-by": "gpuimages",
        "io.gpuimages.variant": plan.variant.name[:63],
    }


def _shm_volume(plan: LaunchPlan) -> dict[str, object]:
    empty_dir: dict[str, object] = {"medium": "Memory"}
    if plan.shm_size:
        empty_dir["sizeLimit"] = _k8s_quantity(plan.shm_size)
    return {"name": SHM_VOLUME, "emptyDir": empty_dir}


def _k8s_quantity(size: str) -> str:
    """Docker's '16g' -> Kubernetes' '16Gi'."""
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)i?b?", size.strip().lower())
    if not m:
        raise UserInputError(f"--shm-size '{size}' is not a size like 16g.")
    unit = {"": "", "k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}[m.group(2)]
    return f"{m.group(1)}{unit}"


def _container(
    plan: LaunchPlan, name: str, command: list[str], *, gpus: bool = True
) -> dict[str, object]:
    container: dict[str, object] = {
        "name": name,
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "volumeMounts": [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}],
    }
    if gpus and not plan.variant.is_cpu:
        container["resources"] = {"limits": {"nvidia.com/gpu": plan.gpus_per_node}}
    return container


def _pod_template(plan: LaunchPlan, container: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {"labels": _labels(plan)},
        "spec": {"containers": [container], "volumes": [_shm_volume(plan)]},
    }


def pytorchjob(plan: LaunchPlan) -> dict[str, object]:
    """Kubeflow PyTorchJob (training-operator, kubeflow.org/v1): Master 1 + Worker N-1.

    The operator sets MASTER_ADDR/MASTER_PORT and, for torchrun, PET_NODE_RANK,
    PET_MASTER_ADDR and PET_MASTER_PORT in every pod; torchrun reads those as defaults, so
    the command names only the shape of the job. Its container must be named "pytorch".
    """
    command = [
        "torchrun",
        "--nnodes",
        str(plan.nodes),
        "--nproc_per_node",
        str(plan.gpus_per_node),
        *plan.script,
    ]

    def replica(count: int) -> dict[str, object]:
        pod = _pod_template(plan, _container(plan, "pytorch", command))
        return {"replicas": count, "restartPolicy": "OnFailure", "template": pod}

    specs: dict[str, object] = {"Master": replica(1)}
    if plan.nodes > 1:
        specs["Worker"] = replica(plan.nodes - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": plan.job_name, "labels": _labels(plan)},
        "spec": {"nprocPerNode": str(plan.gpus_per_node), "pytorchReplicaSpecs": specs},
    }


def mpijob(plan: LaunchPlan) -> dict[str, object]:
    """MPIJob (mpi-operator v0.4+, kubeflow.org/v2beta1): a Launcher and N Workers.

    The operator writes the hostfile (slotsPerWorker slots per worker) and the SSH keys;
    the launcher runs mpirun, the workers run sshd and hold the GPUs.
    """
    launch = [
        "mpirun",
        "--allow-run-as-root",
        "-np",
        str(plan.world_size),
        *MPIRUN_FLAGS,
        *plan.python_script,
    ]
    launcher = {
        "replicas": 1,
        "template": _pod_template(plan, _container(plan, "launcher", launch, gpus=False)),
    }
    worker = {
        "replicas": plan.nodes,
        "template": _pod_template(plan, _container(plan, "worker", ["/usr/sbin/sshd", "-De"])),
    }
    return {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": {"name": plan.job_name, "labels": _labels(plan)},
        "spec": {
            "slotsPerWorker": plan.gpus_per_node,
            # The images run as uid 1000 (HOME /home/trainer); the operator's keys go there.
            "sshAuthMountPath": "/home/trainer/.ssh",
            "runPolicy": {"cleanPodPolicy": "Running"},
            "mpiReplicaSpecs": {"Launcher": launcher, "Worker": worker},
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated values out in full: no &anchors / *aliases in a manifest."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def to_yaml(doc: dict[str, object]) -> str:
    return yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False)


def manifest(plan: LaunchPlan) -> dict[str, object]:
    return mpijob(plan) if plan.horovod else pytorchjob(plan)


def write_manifest(plan: LaunchPlan, directory: str | Path) -> Path:
    """Write the job's manifest as DIR/<job-name>-<kind>.yaml; return its path."""
    doc = manifest(plan)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{plan.job_name}-{str(doc['kind']).lower()}.yaml"
    header = (
        f"# {doc['kind']} for {plan.image}: {plan.nodes} node(s) x {plan.gpus_per_node} "
        "GPU(s).\n# Generated by `invoke launch --k8s`; apply with kubectl apply -f.\n"
    )
    path.write_text(header + to_yaml(doc), encoding="utf-8")
    return path


def horovod_twin(matrix: Matrix, variant: Variant) -> Variant:
    """The matrix's Horovod variant of the same torch, CUDA and flavor (for --horovod)."""
    twins = [
        v
        for v in matrix.variants
        if v.horovod
        and (v.torch, v.cuda, v.flavor) == (variant.torch, variant.cuda, variant.flavor)
    ]
    if len(twins) != 1:
        names = ", ".join(v.name for v in matrix.variants if v.horovod) or "none"
        raise UserInputError(
            f"--horovod needs a Horovod image and {matrix.path} has {len(twins) or 'no'} Horovod "
            f"twin of {variant.name}: pass --variant with one of: {names}."
        )
    return twins[0]


def plan_from_options(
    selection: Selection,
    *,
    nodes: int | str | None,
    gpus_per_node: int | str | None,
    master_addr: str | None,
    master_port: int | str = DEFAULT_PORT,
    horovod: bool = False,
    hosts: str | None = None,
    registry: str | None = None,
    script: tuple[str, ...] = (),
    job_name: str | None = None,
    mount: str | Path | None = None,
    shm_size: str | None = None,
) -> LaunchPlan:
    """`invoke launch`: the required options first, then the variant (its Horovod twin
    with --horovod) and its image name at the registry (matrix.yaml's by default)."""
    required = (("nodes", nodes), ("gpus-per-node", gpus_per_node), ("master-addr", master_addr))
    missing = [f"--{name}" for name, value in required if value is None]
    if missing:
        raise UserInputError(
            f"{', '.join(missing)} missing: e.g. invoke launch --variant NAME --nodes 2 "
            "--gpus-per-node 8 --master-addr 10.0.0.1 -- train.py"
        )
    matrix, (chosen,) = selection.variants()
    if horovod and not chosen.horovod:
        chosen = horovod_twin(matrix, chosen)
    target = Registry.choose(registry, matrix.registry)
    image = target.tag_for(chosen) if target else chosen.tag
    return make_plan(
        chosen,
        image,
        nodes=nodes,  # type: ignore[arg-type]  # make_plan checks and converts
        gpus_per_node=gpus_per_node,  # type: ignore[arg-type]
        master_addr=master_addr or "",
        master_port=master_port,  # type: ignore[arg-type]
        script=script,
        hosts=tuple(h.strip() for h in hosts.split(",")) if hosts else (),
        horovod=horovod,
        job_name=job_name,
        mount=mount,
        shm_size=shm_size,
    )
