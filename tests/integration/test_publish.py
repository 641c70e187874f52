"""Publishing against a real registry (Debian's docker-registry on 127.0.0.1).

Most tests push a SMALL image (the local Debian base plus a unique label) tagged as the
CPU variant under a throwaway repository, with a smoke report the test writes for that
exact image id; one test captures versions from the real CPU image.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import replace
from pathlib import Path

import docker.errors
import pytest

from gpuimages.facts.registry_address import Registry
from gpuimages.release.cut import publish_release
from gpuimages.release.registry import (
    Credentials,
    CredentialsRejected,
    PublishError,
    RegistryApi,
    RetryPolicy,
)
from gpuimages.vet.contents import capture_contents

from .conftest import (
    CPU_VARIANT,
    ROOT,
    TEST_NAMESPACE,
    free_port,
    start_registry,
    stop_registry,
)

REPO = f"{TEST_NAMESPACE}/publish"

FAST = RetryPolicy(tries=2, base_s=0.1)


@pytest.fixture
def variant(matrix):
    return replace(matrix.by_name()[CPU_VARIANT], repository=REPO)


@pytest.fixture
def empty_registry(docker_cli, tmp_path):
    """A registry of this test's own, so 'nothing was pushed' can be checked."""
    registry = start_registry(tmp_path / "registry")
    yield registry
    stop_registry(registry)


def write_report(reports: Path, variant, image_id: str, status: str = "passed") -> Path:
    """A smoke report in the smoke step's shape (schema 1), honest about this image id,
    with every check the gate requires of a CPU variant (`smoke_report.required_checks`)."""
    checks = [
        {"name": "gpu", "status": "skipped", "reason": "no GPU", "duration_s": 0.1},
        {"name": "torch", "status": "passed", "reason": "", "duration_s": 1.0},
        {"name": "cuda", "status": "skipped", "reason": "CPU variant", "duration_s": 0.1},
        {"name": "ddp", "status": status, "reason": "", "duration_s": 2.0},
        {"name": "flavor", "status": "passed", "reason": "", "duration_s": 0.1},
        {"name": "labels", "status": "passed", "reason": "", "duration_s": 0.0},
    ]
    report = {
        "schema": 1,
        "variant": variant.as_dict(),
        "tag": variant.tag,
        "image_id": image_id,
        "status": status,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "host": {"hostname": "test"},
        "checks": [{**c, "figures": {}, "log_tail": ""} for c in checks],
        "found": {"torch": "2.13.0+cpu", "python": "3.11.2"},
    }
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"{variant.name}.json"
    path.write_text(json.dumps(report))
    return path


def release(tmp_path, variant, registry: str | None, env=None, policy=FAST, **kw):
    return publish_release(
        (variant,),
        registry=registry,
        reports=tmp_path / "reports",
        release_root=tmp_path / "release",
        policy=policy,
        env={"DOCKER_CONFIG": str(tmp_path / "no-docker-config"), **(env or {})},
        **kw,
    )


def test_push_then_pull_by_digest_gives_the_same_image(
    client, open_registry, small_image, variant, tmp_path
):
    write_report(tmp_path / "reports", variant, small_image.id)
    run = release(tmp_path, variant, open_registry.host)

    [result] = run.results
    assert result.status == "published", result.reason
    ref = f"{open_registry.host}/{REPO}:{CPU_VARIANT}"
    assert result.registry_tag == ref
    assert result.digest.startswith("sha256:") and len(result.digest) == 71
    remote = RegistryApi(Registry.parse(open_registry.host)).manifest(REPO, CPU_VARIANT)
    assert remote.digest == result.digest
    assert remote.config_digest == small_image.id  # the registry holds the tested image

    manifest = json.loads(run.manifest_json.read_text())
    [entry] = manifest["images"]
    assert entry["status"] == "published" and entry["digest"] == result.digest
    assert entry["pull"] == f"{open_registry.host}/{REPO}@{result.digest}"
    assert entry["smoke"]["passed"] == 4 and entry["smoke"]["skipped"] == 2
    assert entry["contents"]["versions"]["python"] == "absent"  # a plain Debian image
    assert entry["contents"]["dpkg"]["installed"] > 50
    assert run.manifest_json.parent.parent == tmp_path / "release"
    markdown = run.manifest_md.read_text()
    assert f"| {CPU_VARIANT} | **published** |" in markdown

    # Remove every local name of the image, then pull it back by digest only.
    original_id = small_image.id
    for tag in client.images.get(original_id).tags:
        client.images.remove(tag)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(original_id)
    pulled = client.images.pull(entry["pull"])
    pulled.tag(REPO, "pulled-by-digest")
    clean = client.images.get(f"{REPO}:pulled-by-digest")
    assert clean.id == original_id
    assert entry["pull"] in clean.attrs["RepoDigests"]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no report", "no smoke report at"),
        ("failed report", "did not pass: status 'failed' (failed checks: ddp)"),
        ("report for another image", "is now image"),
    ],
)
def test_unvetted_image_is_refused_and_not_pushed(
    empty_registry, small_image, variant, tmp_path, case, words
):
    if case == "failed report":
        write_report(tmp_path / "reports", variant, small_image.id, status="failed")
    elif case == "report for another image":
        write_report(tmp_path / "reports", variant, "sha256:" + "0" * 64)
    run = release(tmp_path, variant, empty_registry.host)

    [result] = run.results
    assert result.status == "refused" and words in result.reason
    assert "\n" not in result.reason
    with pytest.raises(PublishError, match="has no manifest"):
        RegistryApi(Registry.parse(empty_registry.host)).manifest(REPO, CPU_VARIANT)
    entry = json.loads(run.manifest_json.read_text())["images"][0]
    assert entry["status"] == "refused" and words in entry["reason"]
    assert "### Not published" in run.manifest_md.read_text()


def test_registry_that_stays_down_fails_clearly_and_fast(small_image, variant, tmp_path):
    write_report(tmp_path / "reports", variant, small_image.id)
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    run = release(tmp_path, variant, host, policy=RetryPolicy(tries=3, base_s=0.2))
    elapsed = time.monotonic() - start

    [result] = run.results
    assert result.status == "failed"
    assert "did not answer" in result.reason and "after 3 tries" in result.reason
    assert "Connection refused" in result.reason
    assert elapsed < 20, f"took {elapsed:.1f} s"
    manifest = json.loads(run.manifest_json.read_text())
    assert manifest["counts"] == {"published": 0, "refused": 0, "failed": 1}
    assert manifest["images"][0]["digest"] is None
    assert f"`{CPU_VARIANT}` (failed)" in run.manifest_md.read_text()


def _matrix_file(tmp_path: Path, registry: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(
        f"repository: {REPO}\n"
        f"registry: {registry}\n"
        "axes:\n"
        "  - {torch: 2.13.0, cuda: cpu, torchvision: none}\n"
    )
    return path


def test_wrong_credentials_clear_error_and_password_nowhere(
    auth_registry, small_image, variant, tmp_path
):
    """`invoke publish` as CI runs it, with a wrong password from the environment."""
    write_report(tmp_path / "reports", variant, small_image.id)
    wrong = "wrong-" + uuid.uuid4().hex
    summary = tmp_path / "step-summary.md"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GPUIMAGES_")},
        "GPUIMAGES_REGISTRY_USER": auth_registry.user,
        "GPUIMAGES_REGISTRY_PASSWORD": wrong,
        "GPUIMAGES_PUSH_TRIES": "1",
        "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    matrix_file = _matrix_file(tmp_path, auth_registry.host)
    argv = [sys.executable, "-m", "invoke", "-r", str(ROOT), "publish", "--variant", CPU_VARIANT]
    argv += ["--matrix", str(matrix_file), "--reports", str(tmp_path / "reports")]
    r = subprocess.run(
        argv,
        cwd=tmp_path,  # the release manifest goes to ./reports/release/
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out
    expected = f"registry rejected the credentials for gpuimages-ci@{auth_registry.host}"
    assert expected in " ".join(r.stderr.split()), r.stderr
    paths = {
        k.strip(): v.strip()
        for k, _, v in (line.partition(": ") for line in r.stdout.splitlines())
        if k.strip() in ("release manifest", "catalog")
    }
    assert "release manifest" in paths, r.stdout
    manifest_json = tmp_path / paths["release manifest"]
    entry = json.loads(manifest_json.read_text())["images"][0]
    assert entry["status"] == "failed" and entry["digest"] is None
    assert expected in entry["reason"]
    written = [manifest_json, manifest_json.with_name("manifest.md"), summary]
    written += [p for p in manifest_json.parent.glob("catalog.*")]
    for text in [out, *(p.read_text() for p in written)]:
        assert wrong not in text
    assert "rejected the credentials" in summary.read_text()


def test_wrong_credentials_in_process_logs_and_exceptions_hold_no_password(
    auth_registry, small_image, variant, tmp_path, caplog
):
    wrong = "wrong-" + uuid.uuid4().hex
    env = {"GPUIMAGES_REGISTRY_USER": auth_registry.user, "GPUIMAGES_REGISTRY_PASSWORD": wrong}
    write_report(tmp_path / "reports", variant, small_image.id)
    caplog.set_level(logging.DEBUG)  # docker SDK and urllib3 debug lines included
    run = release(tmp_path, variant, auth_registry.host, env=env)

    [result] = run.results
    assert result.status == "failed"
    assert "registry rejected the credentials for gpuimages-ci@" in result.reason
    api = RegistryApi(
        Registry.parse(auth_registry.host), Credentials(auth_registry.user, wrong, "test")
    )
    with pytest.raises(CredentialsRejected) as info:
        api.ping()
    shown = [
        caplog.text,
        run.manifest_json.read_text(),
        run.manifest_md.read_text(),
        str(info.value),
        repr(info.value),
        "".join(traceback.format_exception(info.value)),
        repr(api.credentials),
        str(api.credentials),
    ]
    for text in shown:
        assert wrong not in text


def test_right_credentials_publish(client, auth_registry, small_image, variant, tmp_path, caplog):
    env = {
        "GPUIMAGES_REGISTRY_USER": auth_registry.user,
        "GPUIMAGES_REGISTRY_PASSWORD": auth_registry.password,
    }
    write_report(tmp_path / "reports", variant, small_image.id)
    caplog.set_level(logging.DEBUG)
    run = release(tmp_path, variant, auth_registry.host, env=env)

    [result] = run.results
    assert result.status == "published", result.reason
    creds = Credentials(auth_registry.user, auth_registry.password, "test")
    api = RegistryApi(Registry.parse(auth_registry.host), creds)
    assert api.manifest(REPO, CPU_VARIANT).digest == result.digest
    for text in (caplog.text, run.manifest_json.read_text(), run.manifest_md.read_text()):
        assert auth_registry.password not in text


def test_no_registry_configured_starts_a_local_one(small_image, variant, tmp_path):
    write_report(tmp_path / "reports", variant, small_image.id)
    port = free_port()
    try:
        run = release(tmp_path, variant, None, local_port=port)
        assert run.started_local_registry
        assert run.registry.host == f"127.0.0.1:{port}"
        assert run.results[0].status == "published", run.results[0].reason
    finally:  # the script's default state folder, as `invoke publish` started it
        script = ROOT / "scripts" / "start-registry.sh"
        subprocess.run(["bash", str(script), "--stop", "--port", str(port)], timeout=60)
        state = Path(os.environ.get("TMPDIR") or "/tmp") / f"gpuimages-registry-{port}"
        shutil.rmtree(state, ignore_errors=True)


def test_versions_captured_inside_the_real_cpu_image(client, cpu_build):
    contents = capture_contents(client, cpu_build["image_id"])
    assert contents.error is None
    assert contents.versions["torch"] == "2.13.0+cpu"
    assert contents.versions["python"].startswith("3.11.")
    assert contents.versions["cuda"] == "absent" and contents.versions["horovod"] == "absent"
    assert contents.pip_source == "pip freeze"
    assert "torch==2.13.0+cpu" in contents.pip_freeze
    assert contents.dpkg_count > 50
    assert "libc6" in contents.key_packages and "python3.11" in contents.key_packages
