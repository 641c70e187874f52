"""Promotion between two real registries (the compose file's staging and public services).

A SMALL image (the local Debian base plus a unique label) is published to staging with
`publish_release` (smoke report written for that exact image id), then promoted to the
public registry (htpasswd auth) through the registry API only.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gpuimages.facts.registry_address import Registry
from gpuimages.release.cut import publish_release
from gpuimages.release.promote import promote_release
from gpuimages.release.registry import Credentials, PublishError, RegistryApi, RetryPolicy
from gpuimages.vet.evidence import ENV_EVIDENCE_KEY

from .conftest import CPU_VARIANT, ROOT, TEST_NAMESPACE
from .test_publish import write_report

FAST = RetryPolicy(tries=2, base_s=0.1)
REPO = f"{TEST_NAMESPACE}/promote"
KEY = "evidence-key-" + uuid.uuid4().hex


@pytest.fixture
def variant(matrix):
    return replace(matrix.by_name()[CPU_VARIANT], repository=REPO)


def public_api(registry) -> RegistryApi:
    creds = Credentials(registry.user, registry.password, "test")
    return RegistryApi(Registry.parse(registry.host), creds)


def staged(tmp_path, variant, image, staging: str, key: str | None = KEY):
    """Smoke report + publish to staging, as the per-variant CI job does; its manifest path."""
    write_report(tmp_path / "reports", variant, image.id)
    env = {"DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
    if key:
        env[ENV_EVIDENCE_KEY] = key
    run = publish_release(
        (variant,),
        registry=staging,
        reports=tmp_path / "reports",
        release_root=tmp_path / "release",
        policy=FAST,
        env=env,
    )
    [result] = run.results
    assert result.status == "published", result.reason
    return run.manifest_json, result.digest


def promote_env(tmp_path, public, key: str | None = KEY) -> dict[str, str]:
    env = {
        "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
        "GPUIMAGES_REGISTRY_USER": public.user,
        "GPUIMAGES_REGISTRY_PASSWORD": public.password,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    if key:
        env[ENV_EVIDENCE_KEY] = key
    return env


def test_promote_copies_the_tested_digest_unchanged(
    client, open_registry, auth_registry, small_image, variant, tmp_path
):
    staging = f"{open_registry.host}/staging"
    manifest_json, digest = staged(tmp_path, variant, small_image, staging)
    public = f"{auth_registry.host}/release"

    run = promote_release(
        source=staging,
        dest=public,
        manifests=[tmp_path / "release"],
        policy=FAST,
        env=promote_env(tmp_path, auth_registry),
    )

    [p] = run.promotions
    assert p.status == "promoted", p.reason
    assert p.digest == digest
    assert p.stats.streamed == 2 and p.stats.mounted == 0  # config + the one layer
    remote = public_api(auth_registry).manifest(f"release/{REPO}", CPU_VARIANT)
    assert remote.digest == digest  # the manifest's bytes, unchanged
    assert remote.config_digest == small_image.id  # the smoke-tested image
    doc = json.loads(manifest_json.read_text())
    [record] = doc["images"][0]["promotions"]
    assert record["status"] == "promoted" and record["digest"] == digest
    assert record["pull"] == f"{auth_registry.host}/release/{REPO}@{digest}"
    assert doc["images"][0]["evidence"]["algorithm"] == "hmac-sha256"
    markdown = manifest_json.with_name("manifest.md").read_text()
    assert "### Promotions" in markdown and "**promoted**" in markdown
    summary = (tmp_path / "summary.md").read_text()
    assert "1 of 1 promoted" in summary
    for text in (manifest_json.read_text(), markdown, summary):
        assert auth_registry.password not in text and KEY not in text

    # Pull it back from the public registry by digest alone: the same image id.
    for tag in client.images.get(small_image.id).tags:
        client.images.remove(tag)
    auth = {"username": auth_registry.user, "password": auth_registry.password}
    pulled = client.images.pull(record["pull"], auth_config=auth)
    assert pulled.id == small_image.id

    # Promoting again finds every blob already there, and still verifies the digest.
    again = promote_release(
        source=staging,
        dest=public,
        manifests=[manifest_json],
        policy=FAST,
        env=promote_env(tmp_path, auth_registry),
    )
    assert again.promotions[0].status == "promoted"
    assert again.promotions[0].stats.present == 2


def test_promote_within_one_registry_mounts_the_blobs(
    open_registry, small_image, variant, tmp_path
):
    staging = f"{open_registry.host}/staging-mount"
    _, digest = staged(tmp_path, variant, small_image, staging, key=None)
    run = promote_release(
        source=staging,
        dest=f"{open_registry.host}/public-mount",
        manifests=[tmp_path / "release"],
        policy=FAST,
        env={"DOCKER_CONFIG": str(tmp_path / "none")},
    )
    [p] = run.promotions
    assert p.status == "promoted", p.reason
    assert p.stats.mounted == 2 and p.stats.streamed == 0 and p.stats.bytes_streamed == 0
    remote = RegistryApi(Registry.parse(open_registry.host)).manifest(
        f"public-mount/{REPO}", CPU_VARIANT
    )
    assert remote.digest == digest


def test_a_staging_digest_without_passing_evidence_is_refused(
    client, local_base, open_registry, auth_registry, small_image, variant, tmp_path
):
    """The staging tag moved to an untested image after publish: nothing is copied."""
    staging = f"{open_registry.host}/staging-moved"
    manifest_json, tested = staged(tmp_path, variant, small_image, staging)
    other, _ = client.images.build(
        fileobj=io.BytesIO(f"FROM {local_base}\nLABEL untested={uuid.uuid4().hex}\n".encode()),
        rm=True,
    )
    ref = f"{staging}/{REPO}"
    try:
        other.tag(ref, CPU_VARIANT)
        for chunk in client.images.push(ref, tag=CPU_VARIANT, stream=True, decode=True):
            assert "error" not in chunk, chunk
        run = promote_release(
            source=staging,
            dest=f"{auth_registry.host}/release-moved",
            manifests=[tmp_path / "release"],
            policy=FAST,
            env=promote_env(tmp_path, auth_registry),
        )
    finally:
        client.images.remove(other.id, force=True)

    [p] = run.promotions
    assert p.status == "refused"
    assert p.digest != tested
    assert f"vouches for {tested}, not {p.digest}" in p.reason
    with pytest.raises(PublishError, match="has no manifest"):
        public_api(auth_registry).manifest(f"release-moved/{REPO}", CPU_VARIANT)
    [record] = json.loads(manifest_json.read_text())["images"][0]["promotions"]
    assert record["status"] == "refused" and record["pull"] is None

    # A manifest edited to vouch for the untested digest does not hold under the key.
    doc = json.loads(manifest_json.read_text())
    doc["images"][0]["digest"] = p.digest
    manifest_json.write_text(json.dumps(doc))
    edited = promote_release(
        source=staging,
        dest=f"{auth_registry.host}/release-moved",
        manifests=[manifest_json],
        policy=FAST,
        env=promote_env(tmp_path, auth_registry),
    )
    assert edited.promotions[0].status == "refused"
    assert "signature does not hold" in edited.promotions[0].reason
    with pytest.raises(PublishError, match="has no manifest"):
        public_api(auth_registry).manifest(f"release-moved/{REPO}", CPU_VARIANT)


class FailingHalfway(BaseHTTPRequestHandler):
    """Forwards to a real registry; after `blobs_allowed` blob uploads, answers 503 to all."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)
    blobs_allowed = 1
    blobs_done = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        with cls.lock:
            broken = cls.blobs_done >= cls.blobs_allowed and self.path != "/v2/"
        if broken:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        conn = http.client.HTTPConnection(*cls.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if self.command == "PUT" and "/blobs/uploads/" in self.path and resp.status == 201:
            with cls.lock:
                cls.blobs_done += 1
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _forward


@pytest.fixture
def failing_public(auth_registry):
    """The public registry behind a proxy that breaks after the first blob is stored."""
    host, port = auth_registry.host.rsplit(":", 1)
    handler = type("Handler", (FailingHalfway,), {"upstream": (host, int(port))})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_a_destination_failing_halfway_claims_nothing_promoted(
    open_registry, auth_registry, failing_public, small_image, variant, tmp_path
):
    """`invoke promote` as CI runs it: the config blob lands, then the registry breaks."""
    staging = f"{open_registry.host}/staging-half"
    manifest_json, digest = staged(tmp_path, variant, small_image, staging)
    proxy, handler = failing_public
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GPUIMAGES_")},
        **promote_env(tmp_path, auth_registry),
        "GPUIMAGES_PUSH_TRIES": "2",
        "GPUIMAGES_PUSH_BACKOFF_S": "0.1",
    }
    argv = [sys.executable, "-m", "invoke", "-r", str(ROOT), "promote"]
    argv += ["--from", staging, "--to", f"{proxy}/release-half", "--variant", CPU_VARIANT]
    argv += ["--manifest", str(manifest_json)]
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr

    assert r.returncode == 1, out
    assert "Traceback" not in out
    assert f"failed {CPU_VARIANT}" in " ".join(r.stderr.split())
    assert "1 of 1 not promoted" in r.stderr
    assert handler.blobs_done == 1  # it did fail halfway
    [record] = json.loads(manifest_json.read_text())["images"][0]["promotions"]
    assert record["status"] == "failed" and record["pull"] is None
    assert "HTTP 503" in record["reason"]
    api = public_api(auth_registry)
    with pytest.raises(PublishError, match="has no manifest"):
        api.manifest(f"release-half/{REPO}", CPU_VARIANT)
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "0 of 1 promoted" in summary and "**failed**" in summary
    for text in (out, manifest_json.read_text(), summary):
        assert auth_registry.password not in text and KEY not in text
    assert digest in manifest_json.read_text()
