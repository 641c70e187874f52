"""Real CUDA images without a GPU: torch 2.14.1 (CUDA 13.0) runtime and devel, os route.

Built as users build them (`invoke wheelhouse`, then `invoke build --local-base
--wheelhouse --offline`) under a repository name of the tests' own, smoke-tested with
`invoke smoke`, and removed afterwards: the CUDA-stack check passes for real, the GPU
checks are skipped with their reason, devel compiles a kernel to SASS for every arch.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import docker.errors
import pytest

from .conftest import ROOT, TEST_REPOSITORY, invoke

REPOSITORY = f"{TEST_REPOSITORY}-cuda"  # gpuimages-test/pytorch-cuda by default
RUNTIME = "2.14.1-cuda13.0-cudnn9-runtime"
DEVEL = "2.14.1-cuda13.0-cudnn9-devel"
ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # compat.yaml, measured


@pytest.fixture(scope="module")
def cuda_matrix(tmp_path_factory) -> Path:
    """The shipped 2.14.1 entries under the tests' own repository name."""
    path = tmp_path_factory.mktemp("cuda-matrix") / "matrix.yaml"
    path.write_text(
        f"repository: {REPOSITORY}\n"
        "axes:\n"
        "  - torch: 2.14.1\n"
        '    cuda: "13.0"\n'
        "    os: debian12\n"
        "    flavor: [runtime, devel]\n"
        "    size_budget_mb: 6600\n"
    )
    return path


@pytest.fixture(scope="module")
def cuda_wheelhouse(docker_cli, cuda_matrix) -> Path:
    """torch's CUDA 13 wheels and the PyPI nvcc (devel's requirements include runtime's)."""
    dest = ROOT / "wheelhouse"
    r = invoke(
        "wheelhouse", "--matrix", str(cuda_matrix), "--variant", DEVEL, "--dest", str(dest),
        timeout=1800,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return dest


@pytest.fixture(scope="module")
def cuda_builds(docker_cli, client, local_base, cuda_matrix, cuda_wheelhouse, tmp_path_factory):
    """Both images built in one `invoke build`; removed when the module is done."""
    report = tmp_path_factory.mktemp("cuda-build") / "build-report.json"
    r = invoke(
        "build",
        "--matrix",
        str(cuda_matrix),
        "--all",
        "--local-base",
        "--wheelhouse",
        str(cuda_wheelhouse),
        "--offline",
        "--report",
        str(report),
    )
    try:
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        rows = {row["variant"]["name"]: row for row in json.loads(report.read_text())["builds"]}
        yield rows
    finally:
        for name in (DEVEL, RUNTIME):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(f"{REPOSITORY}:{name}", force=True)


@pytest.fixture(scope="module")
def smoke_reports(cuda_builds, cuda_matrix, tmp_path_factory) -> dict[str, dict]:
    out = {}
    folder = tmp_path_factory.mktemp("cuda-smoke")
    for name in (RUNTIME, DEVEL):
        path = folder / f"{name}.json"
        r = invoke(
            "smoke",
            "--matrix",
            str(cuda_matrix),
            "--variant",
            name,
            "--no-multinode",
            "--gpus",
            "none",  # no NVIDIA runtime here: GPU checks skip with their reason
            "--report",
            str(path),
        )
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        out[name] = json.loads(path.read_text())
    return out


def checks(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_both_built_within_budget(cuda_builds):
    for name in (RUNTIME, DEVEL):
        row = cuda_builds[name]
        assert row["status"] == "built", row
        assert row["size_bytes"] <= 6600 * 1_000_000 * 1.2


def test_devel_builds_on_the_runtime_layers(client, cuda_builds):
    """Same venv layer: devel adds the toolchain on top of what runtime already has."""
    runtime = client.images.get(cuda_builds[RUNTIME]["image_id"]).attrs["RootFS"]["Layers"]
    devel = client.images.get(cuda_builds[DEVEL]["image_id"]).attrs["RootFS"]["Layers"]
    shared = next(i for i, (a, b) in enumerate(zip(runtime, devel, strict=False)) if a != b)
    # base, apt (Python), venv: the multi-GB venv is one blob for both images
    assert shared >= 3, (runtime, devel)


def test_cuda_stack_proven_without_gpu(smoke_reports):
    for name, report in smoke_reports.items():
        c = checks(report)
        assert report["status"] == "passed", (name, report)
        cuda = c["cuda"]
        assert cuda["status"] == "passed", cuda
        f = cuda["figures"]
        assert f["torch_cuda"] == "13.0" and f["cudnn"] == "9.24.0" and f["nccl"] == "2.30.7"
        assert f["compiled_archs"] == ARCHS
        assert f["duplicates"] == {} and f["duplicate_bytes"] == 0
        loads = f["libraries"]
        assert any(p.endswith("libcudart.so.13") and r == "ok" for p, r in loads.items())
        assert any("libcudnn.so.9" in p and r == "ok" for p, r in loads.items())
        assert all(path.startswith("/opt/venv/") for path in f["loaded_by_torch"].values())
        # no GPU here: skipped, and saying why
        assert c["gpu"]["status"] == "skipped" and "nvidia-smi" in c["gpu"]["reason"]
        assert c["labels"]["status"] == "passed", c["labels"]


def test_runtime_has_no_compiler(smoke_reports):
    flavor = checks(smoke_reports[RUNTIME])["flavor"]
    assert flavor["status"] == "passed" and "no C/C++/CUDA compiler" in flavor["reason"]


def test_devel_compiles_a_kernel_for_every_arch(smoke_reports):
    flavor = checks(smoke_reports[DEVEL])["flavor"]
    assert flavor["status"] == "passed", flavor
    f = flavor["figures"]
    assert f["nvcc_release"] == "13.0"  # = torch.version.cuda
    assert f["nvcc_links_program"] == "ok"  # static cudart found (lib64 -> lib)
    assert f["sass"] == ARCHS
    assert f["cpp_extension"] == "ok"
    assert "not run: no GPU visible" in f["cuda_extension"]
