"""The act run's pure parts: the workflow rewrite, the run's matrix, act's command line and
log, and the artifact stand-in's path rules (tests/act/)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.act.actions import artifacts
from tests.act.harness import (
    KEPT,
    STAND_INS,
    UNREACHABLE_STEPS,
    ActCommand,
    ActLog,
    HarnessError,
    act_matrix,
    local_workflow,
    write_secrets,
)
from tests.helpers import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"


def steps(doc: dict):
    for job in doc["jobs"].values():
        yield from job["steps"]


def test_the_local_workflow_uses_only_stand_ins_and_act_s_own_checkout():
    original = yaml.safe_load(WORKFLOW.read_text())
    local = yaml.safe_load(local_workflow(WORKFLOW.read_text()))
    uses = [s["uses"] for s in steps(local) if "uses" in s]
    assert uses, "the workflow uses no action at all?"
    for action in uses:
        assert action.startswith("./tests/act/actions/") or action.split("@")[0] in KEPT
        if action.startswith("./"):
            assert (ROOT / action / "action.yml").is_file(), action
    # Everything else is as written: same jobs, same steps, same run lines but the skipped.
    assert list(local["jobs"]) == list(original["jobs"])
    for before, after in zip(steps(original), steps(local), strict=True):
        assert before.get("with") == after.get("with")
        assert before.get("if") == after.get("if") and before.get("env") == after.get("env")
        if before.get("name") not in UNREACHABLE_STEPS:
            assert before.get("run") == after.get("run")


def test_an_unreachable_step_says_why_in_the_log():
    local = yaml.safe_load(local_workflow(WORKFLOW.read_text()))
    [lint] = [s for s in steps(local) if s.get("name") == "Lint this workflow"]
    assert lint["run"].startswith("echo '::warning title=skipped in the act run::")
    assert "GitHub" in lint["run"]


def test_an_action_without_stand_in_is_refused_by_name():
    text = "jobs:\n  a:\n    steps:\n      - uses: docker/login-action@v3\n"
    with pytest.raises(HarnessError, match=r"line 4: docker/login-action has no local stand-in"):
        local_workflow(text, unreachable={})


def test_stand_ins_keep_their_lead_and_drop_the_ref():
    text = "steps:\n  - uses: actions/setup-python@v6\n    with: {python-version: '3.11'}\n"
    assert local_workflow(text, unreachable={}) == (
        "steps:\n  - uses: ./tests/act/actions/setup-python\n    with: {python-version: '3.11'}\n"
    )
    assert set(STAND_INS) & KEPT == set()


def test_a_renamed_unreachable_step_is_noticed():
    with pytest.raises(HarnessError, match="no step named 'Lint this workflow'"):
        local_workflow("jobs: {}\n")


def test_the_run_s_matrix_names_its_repository_and_builds_offline(tmp_path):
    text = act_matrix(
        (ROOT / "matrix.yaml").read_text(),
        repository="gpuimages-test9/pytorch-act",
        base_image="gpuimages-local/debian:bookworm",
        wheelhouse=tmp_path,
    )
    doc = yaml.safe_load(text)
    assert doc["repository"] == "gpuimages-test9/pytorch-act"
    assert doc["sources"] == {
        "base_image": "gpuimages-local/debian:bookworm",
        "builder_image": "gpuimages-local/debian:bookworm",
        "wheelhouse": str(tmp_path),
        "offline": True,
    }
    with pytest.raises(HarnessError):
        act_matrix("repository: x\n", repository="y", base_image="b", wheelhouse=tmp_path)


def test_act_runs_jobs_on_the_host_and_keeps_secrets_off_its_command_line(tmp_path):
    secret_file = write_secrets(tmp_path / "s.env", {"PASSWORD": "hunter2-xyz"})
    assert secret_file.stat().st_mode & 0o777 == 0o600
    command = ActCommand(
        act=Path("act"),
        workdir=tmp_path / "repo",
        workflow=tmp_path / "images.yml",
        event=tmp_path / "event.json",
        artifacts=tmp_path / "artifacts",
        artifact_port=40001,
        cache=tmp_path / "cache",
        secret_file=secret_file,
        variables={"GPUIMAGES_STAGING": "127.0.0.1:5001/staging"},
    )
    argv = command.argv()
    assert argv[:2] == ["act", "push"]
    assert "ubuntu-latest=-self-hosted" in argv
    assert argv[argv.index("--artifact-server-addr") + 1] == "127.0.0.1"
    assert "GPUIMAGES_STAGING=127.0.0.1:5001/staging" in argv
    assert "hunter2-xyz" not in " ".join(argv) and str(secret_file) in argv
    with pytest.raises(HarnessError):
        write_secrets(tmp_path / "t.env", {"X": "has space"})


def test_the_log_tells_job_results_summaries_and_failed_steps():
    lines = [
        {"jobID": "plan", "command": "summary", "content": "1 variant(s): x\n", "msg": "s"},
        {"jobID": "plan", "jobResult": "success", "msg": "Job succeeded"},
        {"jobID": "image", "step": "Build", "stepResult": "failure", "stage": "Main"},
        {"jobID": "image", "jobResult": "failure", "msg": "Job failed"},
    ]
    log = ActLog.parse("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    assert log.jobs == {"plan": "success", "image": "failure"}
    assert log.summaries == {"plan": "1 variant(s): x\n"}
    assert log.failed_steps == ["image: Build"]
    assert log.tail(1) == "not json"


# ------------------------------------------------------------- the artifact stand-in


def token(run: int, job: int) -> str:
    claims = json.dumps({"scp": f"Actions.ExampleScope Actions.Results:{run}:{job}"}).encode()
    return "e30." + base64.urlsafe_b64encode(claims).decode().rstrip("=") + ".sig"


def test_run_and_job_come_from_the_runtime_token():
    assert artifacts.backend_ids(token(7, 9)) == ("7", "9")
    with pytest.raises(artifacts.ArtifactError):
        artifacts.backend_ids("not-a-jwt")


def test_the_artifact_root_is_where_upload_artifact_puts_it(tmp_path):
    (tmp_path / "reports/junit").mkdir(parents=True)
    (tmp_path / "reports/junit/unit.xml").write_text("<testsuite/>")
    (tmp_path / "build/logs").mkdir(parents=True)
    (tmp_path / "build/logs/b.log").write_text("log")
    (tmp_path / "build/logs/.hidden").write_text("no")
    root, files = artifacts.collect("reports/junit/", tmp_path, include_hidden=False)
    assert root == tmp_path / "reports/junit" and files == [tmp_path / "reports/junit/unit.xml"]
    root, files = artifacts.collect("build/logs/\nreports/\n", tmp_path, include_hidden=False)
    assert root == tmp_path
    assert [str(f.relative_to(root)) for f in files] == [
        "build/logs/b.log",
        "reports/junit/unit.xml",
    ]
    root, files = artifacts.collect("**/junit/\n!reports/junit/unit.xml", tmp_path, False)
    assert root == tmp_path and files == []


def test_the_junit_stand_in_counts_and_summarises(tmp_path):
    (tmp_path / "r.xml").write_text(
        "<testsuites><testsuite><testcase name='a'/><testcase name='b'><skipped/></testcase>"
        "<testcase name='c'><failure message='x'/></testcase></testsuite></testsuites>"
    )
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    env = {
        **os.environ,
        "INPUT_REPORT_PATHS": str(tmp_path / "*.xml"),
        "INPUT_CHECK_NAME": "smoke v",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
    }
    script = ROOT / "tests/act/actions/junit_report.py"
    r = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "### smoke v" in summary.read_text() and "| 1 | 3 | 1 | 1 | 1 |" in summary.read_text()
    assert outputs.read_text().splitlines() == ["total=3", "passed=1", "skipped=1", "failed=1"]


def test_zipped_paths_are_relative_to_the_root(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/f.txt").write_text("x")
    data = artifacts.zipped(tmp_path, [tmp_path / "a/f.txt"])
    (tmp_path / "z.zip").write_bytes(data)
    assert zipfile.ZipFile(tmp_path / "z.zip").namelist() == ["a/f.txt"]
