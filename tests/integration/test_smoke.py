"""The CPU variant's smoke suite for real: gloo DDP, two-container multi-node, labels."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from xml.etree import ElementTree as ET

import pytest

from gpuimages.vet.smoke import SMOKE_LABEL, SmokeOptions, smoke

from .conftest import CPU_VARIANT, TEST_REPOSITORY, invoke


@pytest.fixture(scope="module")
def smoke_report(cpu_build, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("smoke") / "report.json"
    r = invoke("smoke", "--variant", CPU_VARIANT, "--report", str(path))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    report = json.loads(path.read_text())
    report["_junit"] = path.with_suffix(".xml")
    return report


def checks(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_report_is_for_this_exact_image(smoke_report, cpu_build):
    assert smoke_report["status"] == "passed"
    assert smoke_report["image_id"] == cpu_build["image_id"]
    assert smoke_report["tag"] == f"{TEST_REPOSITORY}:{CPU_VARIANT}"
    assert smoke_report["found"]["torch"] == "2.13.0+cpu"


def test_ddp_two_processes_on_gloo(smoke_report):
    ddp = checks(smoke_report)["ddp"]
    assert ddp["status"] == "passed", ddp
    f = ddp["figures"]
    assert f["backend"] == "gloo" and f["world_size"] == 2
    assert f["loss_last"] < f["loss_first"]
    assert f["allreduce_busbw_GBps"] > 0


def test_multinode_two_containers(smoke_report):
    mn = checks(smoke_report)["multinode_ddp"]
    assert mn["status"] == "passed", mn
    assert mn["figures"]["nodes"] == 2 and mn["figures"]["world_size"] >= 2


def test_gpu_checks_skipped_with_reason(smoke_report):
    c = checks(smoke_report)
    assert c["gpu"]["status"] == "skipped" and c["gpu"]["reason"]
    assert c["flavor"]["status"] == "passed"  # runtime: no compiler
    assert c["labels"]["status"] == "passed"


def test_junit_xml(smoke_report):
    root = ET.parse(smoke_report["_junit"]).getroot()
    assert root.tag == "testsuite" and root.get("failures") == "0"
    names = {case.get("name") for case in root.iter("testcase")}
    assert {"torch", "ddp", "multinode_ddp", "labels"} <= names
    assert root.find("testcase[@name='gpu']/skipped") is not None


def test_nothing_left_behind(client, smoke_report):
    assert not client.containers.list(all=True, filters={"label": SMOKE_LABEL})
    assert not client.networks.list(filters={"label": SMOKE_LABEL})


def test_gpus_without_nvidia_runtime_is_a_plain_error(cpu_build, client):
    r = invoke("smoke", "--variant", CPU_VARIANT, "--gpus", "all", "--no-multinode")
    assert r.returncode == 1
    assert "No NVIDIA container runtime on this host" in r.stderr
    assert "nvidia-container-toolkit" in r.stderr and "Traceback" not in r.stderr
    assert not client.containers.list(all=True, filters={"label": SMOKE_LABEL})


def test_lying_label_fails_the_labels_check(client, cpu_build, matrix):
    variant = replace(matrix.by_name()[CPU_VARIANT], repository="gpuimages-test/liar")
    dockerfile = f"FROM {cpu_build['image_id']}\nLABEL io.gpuimages.torch=9.9.9\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=variant.tag, rm=True)
    try:
        report = smoke(variant, SmokeOptions(multinode=False), client=client).as_dict()
        labels = checks(report)["labels"]
        assert report["status"] == "failed" and labels["status"] == "failed"
        assert "io.gpuimages.torch='9.9.9'" in labels["reason"]
    finally:
        client.images.remove(variant.tag, noprune=True)


def test_nccl_debug_rerun_hands_nccl_debug_to_the_container(client, cpu_build):
    from gpuimages.vet.smoke import nccl_debug_rerun, tracked

    with tracked(client) as box:
        tail = nccl_debug_rerun(box, cpu_build["image_id"], SmokeOptions(), "none")
        [container] = box.containers
        container.reload()
        env = container.attrs["Config"]["Env"]
        assert "NCCL_DEBUG=INFO" in env
        assert container.attrs["Config"]["Cmd"][-2:] == ["--only", "ddp"]
    assert "world size 2" in tail or "GPUIMAGES_RESULT" in tail, tail
    assert not client.containers.list(all=True, filters={"label": SMOKE_LABEL})
