"""Multi-node launch: the per-node commands, the `docker run` lines, and the Kubernetes
manifests validated against the published CRD schemas (vendored in tests/data/crds/)."""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import yaml

from gpuimages.core.errors import UserInputError
from gpuimages.facts.matrix import load_matrix
from gpuimages.host import launch
from gpuimages.vet.container import RunSpec, make_spec, parse_gpus, split_command
from tests.helpers import invoke

CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


@pytest.fixture(scope="module")
def variants(repo_root):
    return load_matrix(repo_root / "matrix.yaml").by_name()


@pytest.fixture
def gpu(variants):
    return variants["2.1.2-cuda11.8-cudnn8-runtime"]


@pytest.fixture
def hvd(variants):
    return variants["2.1.2-cuda11.8-cudnn8-runtime-horovod0.28.1"]


def plan_for(variant, tmp_path, **kw):
    args = {"nodes": 2, "gpus_per_node": 8, "master_addr": "10.0.0.1", "mount": tmp_path}
    return launch.make_plan(variant, variant.tag, **{**args, **kw})


# --- per-node commands ------------------------------------------------------------------


def test_torchrun_per_node(gpu, tmp_path):
    plan = plan_for(gpu, tmp_path, hosts=("10.0.0.1", "10.0.0.2"), script=("train.py", "--lr", "1"))
    cmds = launch.commands(plan)
    assert [label for label, _ in cmds] == ["node 0 (10.0.0.1)", "node 1 (10.0.0.2)"]
    for rank, (_, line) in enumerate(cmds):
        argv = shlex.split(line)
        assert argv[:3] == ["docker", "run", "--rm"]
        for flag in ("--ipc=host", "--network=host"):
            assert flag in argv
        assert argv[argv.index("--gpus") + 1] == "all"
        assert argv[argv.index("-v") + 1] == f"{tmp_path}:/workspace"
        i = argv.index(gpu.tag)
        assert argv[i + 1 :] == [
            "torchrun",
            "--nnodes", "2",
            "--node_rank", str(rank),
            "--master_addr", "10.0.0.1",
            "--master_port", "29500",
            "--nproc_per_node", "8",
            "train.py", "--lr", "1",
        ]  # fmt: skip


def test_old_torch_falls_back_to_distributed_launch(gpu, tmp_path):
    plan = plan_for(replace(gpu, torch="1.9.0"), tmp_path)
    argv = launch.launcher_argv(plan, 1)
    assert argv[:4] == ["python", "-m", "torch.distributed.launch", "--use_env"]
    assert "--node_rank" in argv and argv[-1] == "train.py"


def test_horovodrun_and_mpirun(hvd, tmp_path):
    plan = plan_for(hvd, tmp_path, gpus_per_node=4, hosts=("h1", "h2"), horovod=True)
    assert launch.horovodrun_argv(plan) == [
        "horovodrun", "-np", "8", "-H", "h1:4,h2:4", "-p", "12345", "python", "train.py",
    ]  # fmt: skip
    assert launch.mpirun_argv(plan) == [
        "mpirun", "--allow-run-as-root", "-np", "8", "-H", "h1:4,h2:4",
        "-bind-to", "none", "-map-by", "slot",
        "-x", "NCCL_DEBUG=INFO", "-x", "LD_LIBRARY_PATH", "-x", "PATH",
        "-mca", "pml", "ob1", "-mca", "btl", "^openib",
        "-mca", "plm_rsh_args", "-p 12345",
        "python", "train.py",
    ]  # fmt: skip
    lines = dict(launch.commands(plan))
    assert "sshd -p 12345" in lines["node 1 (h2): sshd for the ranks, start first"]
    launcher = shlex.split(lines["node 0 (h1): the launcher"])
    assert launcher[launcher.index(hvd.tag) + 1 :][:3] == ["horovodrun", "-np", "8"]


def test_single_node_horovod_needs_no_ssh(hvd, tmp_path):
    plan = plan_for(hvd, tmp_path, nodes=1, gpus_per_node=2, horovod=True)
    assert launch.horovodrun_argv(plan) == [
        "horovodrun", "-np", "2", "-H", "10.0.0.1:2", "python", "train.py",
    ]  # fmt: skip


def test_default_hosts_are_named_placeholders(gpu, tmp_path):
    plan = plan_for(gpu, tmp_path, nodes=3)
    assert plan.hosts == ("10.0.0.1", "node1", "node2")
    assert any("pass --hosts" in n for n in launch.notes(plan))


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"nodes": 0}, "--nodes must be a whole number"),
        ({"gpus_per_node": "x"}, "--gpus-per-node must be"),
        ({"master_addr": "bad host"}, "is not a host name"),
        ({"master_port": 70000}, "is not a TCP port"),
        ({"hosts": ("a",)}, "give one per node"),
        ({"job_name": "Train_Job"}, "is not a Kubernetes name"),
        ({"shm_size": "lots"}, "is not a size"),
    ],
)
def test_bad_plans_are_user_errors(gpu, tmp_path, kw, words):
    with pytest.raises(UserInputError, match=re.escape(words)):
        plan_for(gpu, tmp_path, **kw)


def test_horovod_needs_a_horovod_image(gpu, tmp_path):
    with pytest.raises(UserInputError, match="needs an image with Horovod"):
        plan_for(gpu, tmp_path, horovod=True)


# --- the docker run line ----------------------------------------------------------------


def test_run_spec_lines(tmp_path):
    spec = make_spec("img:1", ("python", "-c", "print(1, 2)"), gpus="0,1", mount=tmp_path)
    assert spec.docker_line() == (
        f"docker run --rm --gpus '\"device=0,1\"' --ipc=host -v {tmp_path}:/workspace "
        f"-w /workspace --user {tmp_path.stat().st_uid}:0 img:1 python -c 'print(1, 2)'"
    )
    kwargs = spec.create_kwargs()
    assert kwargs["ipc_mode"] == "host" and kwargs["working_dir"] == "/workspace"
    assert kwargs["user"] == f"{tmp_path.stat().st_uid}:0"  # the mount's owner writes there
    assert kwargs["device_requests"][0]["DeviceIDs"] == ["0", "1"]
    shm = RunSpec("img:1", ("true",), gpus="none", shm_size="16g")
    assert shm.docker_line() == "docker run --rm --shm-size=16g img:1 true"
    assert shm.create_kwargs() == {"device_requests": [], "shm_size": "16g"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("all", "all"), ("NONE", "none"), ("0,1", "0,1"), (" 2 , 3 ", "2,3"),
     ("GPU-8f6d2a1c-1b2c-4d5e-9f00-aabbccddeeff", "GPU-8f6d2a1c-1b2c-4d5e-9f00-aabbccddeeff")],
)  # fmt: skip
def test_parse_gpus(value, expected):
    assert parse_gpus(value, "all") == expected


def test_run_option_errors(tmp_path):
    with pytest.raises(UserInputError, match="--gpus"):
        parse_gpus("first", "all")
    with pytest.raises(UserInputError, match="exclude each other"):
        make_spec("i", ("true",), gpus="all", shm_size="8g", ipc_host=True)
    with pytest.raises(UserInputError, match="not a size"):
        make_spec("i", ("true",), gpus="all", shm_size="lots")
    with pytest.raises(UserInputError, match="not a directory"):
        make_spec("i", ("true",), gpus="all", mount=tmp_path / "missing")
    with pytest.raises(UserInputError, match="Say what to run"):
        make_spec("i", (), gpus="all")
    with pytest.raises(UserInputError, match="not both"):
        split_command("a", ["b"])
    assert split_command("python -c 'print(1, 2)'", None) == ("python", "-c", "print(1, 2)")


# --- Kubernetes manifests against the published CRD schemas -----------------------------


def crd_schema(name: str) -> dict:
    crd = yaml.safe_load((CRDS / name).read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def undeclared(instance, schema, path="") -> list[str]:
    """Fields the schema does not declare (what `kubectl apply --validate=strict` refuses)."""
    out = []
    if isinstance(instance, dict):
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        for key, value in instance.items():
            if props is not None and key in props:
                out += undeclared(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += undeclared(value, extra, f"{path}.{key}")
            elif props is not None or extra is False:
                out.append(f"{path}.{key}")
    elif isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            out += undeclared(item, schema["items"], f"{path}[{i}]")
    return out


def validate(doc: dict, crd: str) -> None:
    schema = crd_schema(crd)
    jsonschema.Draft7Validator(schema).validate(doc)
    assert undeclared(doc, schema) == []
    assert DNS_LABEL.match(doc["metadata"]["name"])
    for value in doc["metadata"]["labels"].values():
        assert LABEL_VALUE.match(value) and len(value) <= 63, value


@pytest.mark.parametrize("crd", ["kubeflow.org_pytorchjobs.yaml", "kubeflow.org_mpijobs.yaml"])
def test_vendored_crds_name_their_source(crd):
    head = (CRDS / crd).read_text().split("apiVersion:")[0]
    assert "Source: https://github.com/kubeflow/" in head
    assert "path:" in head and re.search(r"commit: [0-9a-f]{40}", head)


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_pytorchjob_validates(gpu, tmp_path, nodes):
    plan = plan_for(gpu, tmp_path, nodes=nodes, gpus_per_node=8, shm_size="16g")
    doc = launch.pytorchjob(plan)
    validate(doc, "kubeflow.org_pytorchjobs.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    specs = doc["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1
    assert specs.get("Worker", {}).get("replicas", 0) == nodes - 1
    pod = specs["Master"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch" and container["image"] == gpu.tag
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 8}
    assert container["command"][:5] == ["torchrun", "--nnodes", str(nodes), "--nproc_per_node", "8"]
    assert pod["volumes"] == [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
    ]
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]


def test_mpijob_validates(hvd, tmp_path):
    plan = plan_for(hvd, tmp_path, nodes=3, gpus_per_node=4, horovod=True)
    doc = launch.mpijob(plan)
    validate(doc, "kubeflow.org_mpijobs.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("kubeflow.org/v2beta1", "MPIJob")
    assert doc["spec"]["slotsPerWorker"] == 4
    specs = doc["spec"]["mpiReplicaSpecs"]
    assert (specs["Launcher"]["replicas"], specs["Worker"]["replicas"]) == (1, 3)
    launcher = specs["Launcher"]["template"]["spec"]["containers"][0]
    worker = specs["Worker"]["template"]["spec"]["containers"][0]
    assert launcher["command"][:4] == ["mpirun", "--allow-run-as-root", "-np", "12"]
    assert "resources" not in launcher  # the launcher holds no GPU
    assert worker["resources"]["limits"] == {"nvidia.com/gpu": 4}
    assert worker["image"] == hvd.tag


def _first_container(doc: dict) -> dict:
    specs = doc["spec"].get("pytorchReplicaSpecs") or doc["spec"]["mpiReplicaSpecs"]
    return next(iter(specs.values()))["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: _first_container(d)["resources"]["limits"].update({"nvidia.com/gpu": "lots"}),
        lambda d: d["spec"]["pytorchReplicaSpecs"]["Master"].update(replicas="one"),
        lambda d: d["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"].pop("containers"),
        lambda d: _first_container(d).pop("name"),
        lambda d: d["spec"].pop("pytorchReplicaSpecs"),
    ],
)
def test_schema_rejects_broken_pytorchjobs(gpu, tmp_path, breakage):
    doc = copy.deepcopy(launch.pytorchjob(plan_for(gpu, tmp_path)))
    breakage(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(crd_schema("kubeflow.org_pytorchjobs.yaml")).validate(doc)


def test_strict_check_catches_a_misspelt_field(gpu, tmp_path):
    doc = launch.pytorchjob(plan_for(gpu, tmp_path))
    _first_container(doc)["volumeMount"] = []
    assert undeclared(doc, crd_schema("kubeflow.org_pytorchjobs.yaml")) == [
        ".spec.pytorchReplicaSpecs.Master.template.spec.containers[0].volumeMount"
    ]


def test_write_manifest_is_plain_yaml(hvd, tmp_path):
    plan = plan_for(hvd, tmp_path, horovod=True, job_name="bert-hvd")
    path = launch.write_manifest(plan, tmp_path / "k8s")
    assert path.name == "bert-hvd-mpijob.yaml"
    text = path.read_text()
    assert "&id" not in text and "*id" not in text
    validate(yaml.safe_load(text), "kubeflow.org_mpijobs.yaml")


# --- the task ---------------------------------------------------------------------------


def test_launch_task_prints_and_writes(tmp_path):
    r = invoke(
        "launch", "--variant", "2.1.2-cuda11.8-cudnn8-runtime", "--nodes", "2",
        "--gpus-per-node", "8", "--master-addr", "10.0.0.1", "--hosts", "10.0.0.1,10.0.0.2",
        "--k8s", str(tmp_path), "--", "train.py", "--epochs", "3",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("docker run")]
    assert len(lines) == 2
    assert "--node_rank 1 --master_addr 10.0.0.1 --master_port 29500" in lines[1]
    assert lines[1].endswith("--nproc_per_node 8 train.py --epochs 3")
    (manifest,) = tmp_path.glob("*.yaml")
    validate(yaml.safe_load(manifest.read_text()), "kubeflow.org_pytorchjobs.yaml")


def test_launch_task_horovod_picks_the_horovod_twin(tmp_path):
    r = invoke(
        "launch", "--torch", "1.12.0", "--cuda", "11.3", "--horovod", "--nodes", "2",
        "--gpus-per-node", "4", "--master-addr", "10.0.0.1", "--k8s", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "horovodrun -np 8 -H 10.0.0.1:4,node1:4" in r.stdout
    assert "mpirun --allow-run-as-root -np 8" in r.stdout
    (manifest,) = tmp_path.glob("*-mpijob.yaml")
    doc = yaml.safe_load(manifest.read_text())
    validate(doc, "kubeflow.org_mpijobs.yaml")
    assert _first_container(doc)["image"].endswith("1.12.0-cuda11.3-cudnn8-runtime-horovod0.28.1")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--variant", "2.1.2-cuda11.8-cudnn8-runtime", "--nodes", "2"], "missing"),
        (["--torch", "2.3.1", "--cuda", "12.1", "--horovod", "--nodes", "2",
          "--gpus-per-node", "1", "--master-addr", "a"], "needs a Horovod image"),
    ],
)  # fmt: skip
def test_launch_task_errors_are_exit_2(args, words):
    r = invoke("launch", *args)
    assert r.returncode == 2 and words in r.stderr
    assert "Traceback" not in r.stderr
