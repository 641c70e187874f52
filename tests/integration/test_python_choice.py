"""A real image whose Python is not the project's default one (issue 23), chosen by Python.

The matrix entry names torch 2.14.1 (CUDA 13.0) and Python 3.13, no OS: the resolver
picks debian13, whose own archive has python3.13 (debian12, the default, has 3.11).
Built as a user builds it, in a folder of its own (`invoke render`, `invoke wheelhouse`,
`invoke build --local-base --wheelhouse --offline` on a debootstrap'd trixie), smoked
with `invoke smoke` (Python 3.13 found inside, from /usr: the apt one; labels true), and
removed afterwards. A CUDA build because PyPI's torch for cp313 is its CUDA 13.0 wheel
(the CPU wheel at hand is cp311 only); its CUDA libraries are Python-independent.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import docker.errors
import pytest

from .conftest import ROOT, TEST_REPOSITORY, invoke, make_workspace

REPOSITORY = f"{TEST_REPOSITORY}-python"
NAME = "2.14.1-cuda13.0-cudnn9-runtime"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Its own folder and matrix: the shipped matrix has this name on Python 3.11."""
    path = make_workspace(
        tmp_path_factory.mktemp("python-choice"), REPOSITORY, link_dockerfiles=False
    )
    (path / "matrix.yaml").write_text(
        f"repository: {REPOSITORY}\n"
        "axes:\n"
        "  - torch: 2.14.1\n"
        '    cuda: "13.0"\n'
        '    python: "3.13"\n'
        "    size_budget_mb: 6600\n"
    )
    r = invoke("render", cwd=path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return path


def test_python_picks_the_os(workspace):
    r = invoke("matrix", "--json", cwd=workspace)
    assert r.returncode == 0, r.stderr
    (variant,) = json.loads(r.stdout)
    assert (variant["python"], variant["os"], variant["python_source"]) == (
        "3.13",
        "debian13",
        "apt",
    )
    dockerfile = (workspace / "dockerfiles" / NAME / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=debian:trixie-slim" in dockerfile
    assert "python3.13" in dockerfile and "python3.11" not in dockerfile


@pytest.fixture(scope="module")
def build(docker_cli, client, workspace, tmp_path_factory):
    dest = ROOT / "wheelhouse"
    r = invoke("wheelhouse", "--all", "--dest", str(dest), timeout=1800, cwd=workspace)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = tmp_path_factory.mktemp("python-build") / "build-report.json"
    r = invoke(
        "build", "--all", "--local-base", "--wheelhouse", str(dest), "--offline",
        "--report", str(report), cwd=workspace,
    )  # fmt: skip
    try:
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        (row,) = json.loads(report.read_text())["builds"]
        yield row
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(f"{REPOSITORY}:{NAME}", force=True)


def test_built_on_trixie_with_its_python(build, client):
    assert build["status"] == "built"
    image = client.images.get(f"{REPOSITORY}:{NAME}")
    labels = image.labels
    assert labels["io.gpuimages.python"] == "3.13"
    assert labels["io.gpuimages.os"] == "debian13"
    assert labels["io.gpuimages.python-source"] == "apt"
    out = client.containers.run(
        image.id,
        ["python", "-c", "import sys, torch; print(sys.version_info[:2], sys.base_prefix)"],
        remove=True,
        entrypoint=[],
    ).decode()
    assert "(3, 13) /usr" in out


def test_smoke_passes(build, workspace, tmp_path):
    report = tmp_path / "smoke.json"
    r = invoke(
        "smoke", "--variant", NAME, "--gpus", "none", "--no-multinode", "--report", str(report),
        cwd=workspace, timeout=1800,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    doc = json.loads(report.read_text())
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["status"] == "passed", doc
    assert checks["labels"]["status"] == "passed"
    assert "python_source" in checks["labels"]["figures"]["compared"]
    assert doc["found"]["python"].startswith("3.13.")
