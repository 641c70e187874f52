"""Pure logic of the smoke runner: device requests, labels check, reports."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.variant import VariantRequest, resolve
from gpuimages.vet.smoke import device_requests, labels_check
from gpuimages.vet.smoke_report import SmokeReport, report_path


@pytest.fixture
def gpu(compat):
    return resolve(VariantRequest(torch="1.12.0", cuda="11.3"), compat)


def test_device_requests():
    assert device_requests("none") == []
    [all_] = device_requests("all")
    assert all_["Count"] == -1 and all_["Capabilities"] == [["gpu"]]
    [some] = device_requests("0,1")
    assert some["DeviceIDs"] == ["0", "1"]
    with pytest.raises(UserInputError, match="--gpus 'two' is not valid"):
        device_requests("two")


def test_labels_check_passes_on_truth(gpu):
    found = {
        "torch": "1.12.0+cu113",
        "python": "3.8.10",
        "cuda": "11.3",
        "cudnn": 8302,
        "torchvision": "0.13.0+cu113",
    }
    check = labels_check(gpu, gpu.labels(), found)
    assert check.status == "passed", check.reason


def test_labels_check_names_each_lie(gpu):
    labels = {**gpu.labels(), "io.gpuimages.cuda": "11.6"}
    found = {
        "torch": "1.12.0+cu116",
        "python": "3.8.10",
        "cuda": "11.6",
        "cudnn": 8302,
        "torchvision": "0.13.0+cu116",
    }
    reason = labels_check(gpu, labels, found).reason
    assert "label io.gpuimages.cuda='11.6'" in reason
    assert "found cuda '11.6' inside" in reason


def test_reports_json_and_junit(tmp_path, gpu):
    report = {
        "schema": 1,
        "image_id": "sha256:" + "ab" * 32,
        "status": "failed",
        "variant": gpu.as_dict(),
        "duration_s": 3.0,
        "checks": [
            {"name": "gpu", "status": "skipped", "reason": "no GPU", "duration_s": 0},
            {
                "name": "ddp",
                "status": "failed",
                "reason": "needs 2 GPUs, found 1",
                "duration_s": 1.5,
                "log_tail": "tail",
                "figures": {"world_size": 1},
            },
            {"name": "torch", "status": "passed", "reason": "ok", "duration_s": 1},
        ],
    }
    path, junit = SmokeReport.from_dict(report).write(tmp_path / "r" / "x.json")
    assert path.exists()
    root = ET.parse(junit).getroot()
    assert root.get("tests") == "3" and root.get("failures") == "1" and root.get("skipped") == "1"
    assert root.find("testcase[@name='ddp']/failure").get("message") == "needs 2 GPUs, found 1"


def test_report_path(gpu):
    assert report_path(gpu, None, 1) == Path("reports/smoke") / f"{gpu.name}.json"
    assert report_path(gpu, "out.json", 1) == Path("out.json")
    assert report_path(gpu, "out", 3) == Path("out") / f"{gpu.name}.json"
