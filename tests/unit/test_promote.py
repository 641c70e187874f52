"""Promotion logic without Docker: evidence, manifests, the copy against an in-memory registry."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.registry_address import Registry
from gpuimages.release.imagecopy import Repository, copy_image
from gpuimages.release.promote import (
    ENV_FROM_PASSWORD,
    ENV_FROM_USER,
    evidence_for,
    promote,
    record,
    source_credentials,
)
from gpuimages.release.registry import (
    ENV_PASSWORD,
    ENV_USER,
    PublishError,
    RegistryApi,
    RetryPolicy,
)
from gpuimages.vet import evidence
from tests.helpers import invoke

FAST = RetryPolicy(tries=2, base_s=0)
DIGEST = "sha256:" + "a" * 64
KEY = b"k" * 32


def entry(**over) -> dict:
    base = {
        "variant": {"name": "2.13.0-cpu-runtime", "tag": "gpuimages/pytorch:2.13.0-cpu-runtime"},
        "status": "published",
        "reason": "pushed and verified",
        "registry_tag": "reg:5000/staging/gpuimages/pytorch:2.13.0-cpu-runtime",
        "image_id": "sha256:" + "1" * 64,
        "digest": DIGEST,
        "smoke": {
            "status": "passed",
            "image_id": "sha256:" + "1" * 64,
            "passed": 5,
            "failed": 0,
            "skipped": 2,
        },
    }
    base.update(over)
    return base


# ------------------------------------------------------------------------- evidence


def test_signed_evidence_holds_and_edits_break_it():
    e = entry()
    e["evidence"] = evidence.sign(e, KEY)
    assert evidence.refusal(e, DIGEST, KEY) is None
    assert evidence.refusal(e, DIGEST.upper().replace("SHA256", "sha256"), KEY) is None
    assert "signature does not hold" in evidence.refusal(e, DIGEST, b"another key")
    edited = {**e, "smoke": {**e["smoke"], "failed": 0, "passed": 9}}
    assert "signature does not hold" in evidence.refusal(edited, DIGEST, KEY)
    assert "not signed" in evidence.refusal(entry(), DIGEST, KEY)
    assert evidence.refusal(entry(), DIGEST, None) is None  # no key: trusted unsigned


@pytest.mark.parametrize(
    ("over", "words"),
    [
        (
            {"status": "refused", "reason": "no smoke\nreport"},
            "records it 'refused': no smoke report",
        ),
        ({"smoke": {"status": "failed", "failed": 1}}, "says 'failed'"),
        ({"image_id": "sha256:" + "2" * 64}, "tested another image id"),
        ({"digest": "sha256:" + "b" * 64}, "vouches for sha256:bbb"),
    ],
)
def test_evidence_refusals(over, words):
    assert words in evidence.refusal(entry(**over), DIGEST, None)


def test_the_key_comes_from_the_environment_only_when_set():
    assert evidence.evidence_key({}) is None
    assert evidence.evidence_key({evidence.ENV_EVIDENCE_KEY: ""}) is None
    assert evidence.evidence_key({evidence.ENV_EVIDENCE_KEY: "s3"}) == b"s3"


# ------------------------------------------------------------------------ manifests


def write_manifest(path: Path, registry: str, created: str, *entries: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": 1, "created": created, "registry": registry, "revision": None}
    path.write_text(json.dumps({**doc, "counts": {}, "images": list(entries)}))
    return path


def test_evidence_is_read_from_manifests_of_the_source_registry_oldest_first(tmp_path):
    old = write_manifest(
        tmp_path / "a" / "manifest.json", "reg:5000/staging", "2025-01-02", entry()
    )
    new = write_manifest(
        tmp_path / "b" / "manifest.json", "reg:5000/staging", "2025-01-03", entry()
    )
    write_manifest(tmp_path / "c" / "manifest.json", "other:5000", "2025-01-04", entry())
    found = evidence_for([tmp_path], Registry.parse("reg:5000/staging"))
    assert [e.manifest for e in found["2.13.0-cpu-runtime"]] == [old, new]
    assert found["2.13.0-cpu-runtime"][0].repository == "gpuimages/pytorch"
    with pytest.raises(UserInputError, match="no such file or folder"):
        evidence_for([tmp_path / "missing"], Registry.parse("reg:5000"))


def test_unknown_variant_is_refused_before_any_request(tmp_path):
    write_manifest(tmp_path / "m" / "manifest.json", "reg:5000/staging", "t", entry())
    api = RegistryApi(Registry.parse("127.0.0.1:9"))  # nothing listens: never asked
    with pytest.raises(UserInputError, match=r"records 2\.13\.0-cpu-runtme \(did you mean"):
        promote(
            ["2.13.0-cpu-runtme"],
            source=Registry.parse("reg:5000/staging"),
            dest=Registry.parse("pub:5000"),
            manifests=[tmp_path],
            source_api=api,
            dest_api=api,
            policy=FAST,
            key=None,
        )


def test_source_credentials_are_their_own_variables(tmp_path):
    env = {
        ENV_USER: "dest-user",
        ENV_PASSWORD: "dest-pw",
        "DOCKER_CONFIG": str(tmp_path),
    }
    assert source_credentials("reg:5000", env) is None  # the destination's are not used
    env |= {ENV_FROM_USER: "src", ENV_FROM_PASSWORD: "src-pw"}
    creds = source_credentials("reg:5000", env)
    assert creds.user == "src" and creds.password == "src-pw"
    with pytest.raises(UserInputError, match=ENV_FROM_PASSWORD):
        source_credentials("reg:5000", {ENV_FROM_USER: "src", "DOCKER_CONFIG": str(tmp_path)})


# ---------------------------------------------------------------- copy, in memory


class MemoryRegistry(BaseHTTPRequestHandler):
    """Blobs and manifests per repository; monolithic uploads; cross-repo mounts."""

    blobs: ClassVar[dict[str, bytes]] = {}
    links: ClassVar[set[tuple[str, str]]] = set()
    manifests: ClassVar[dict[tuple[str, str], tuple[str, bytes]]] = {}
    fail_manifest_put = False

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _parts(self):
        url = urllib.parse.urlsplit(self.path)
        return url.path, dict(urllib.parse.parse_qsl(url.query))

    def do_HEAD(self):
        path, _ = self._parts()
        repo, _, digest = path[4:].partition("/blobs/")
        ok = (repo, digest) in self.links
        self._reply(200 if ok else 404)

    def do_GET(self):
        path, _ = self._parts()
        if path == "/v2/":
            return self._reply(200, b"{}")
        if "/blobs/" in path:
            repo, _, digest = path[4:].partition("/blobs/")
            if (repo, digest) not in self.links:
                return self._reply(404)
            return self._reply(200, self.blobs[digest])
        repo, _, ref = path[4:].partition("/manifests/")
        found = self.manifests.get((repo, ref))
        if not found:
            return self._reply(404)
        media, body = found
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self._reply(200, body, {"Content-Type": media, "Docker-Content-Digest": digest})

    def do_POST(self):
        path, query = self._parts()
        repo = path[4:].split("/blobs/uploads/")[0]
        if "mount" in query and (query["from"], query["mount"]) in self.links:
            self.links.add((repo, query["mount"]))
            return self._reply(201)
        self._reply(202, headers={"Location": f"/v2/{repo}/blobs/uploads/u1?_state=x"})

    def do_PUT(self):
        path, query = self._parts()
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if "/blobs/uploads/" in path:
            repo = path[4:].split("/blobs/uploads/")[0]
            if "sha256:" + hashlib.sha256(body).hexdigest() != query["digest"]:
                return self._reply(400)
            self.blobs[query["digest"]] = body
            self.links.add((repo, query["digest"]))
            return self._reply(201)
        if self.fail_manifest_put:
            return self._reply(503)
        repo, _, ref = path[4:].partition("/manifests/")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.manifests[(repo, ref)] = self.manifests[(repo, digest)] = (
            self.headers["Content-Type"],
            body,
        )
        self._reply(201, headers={"Docker-Content-Digest": digest})


@pytest.fixture
def registries():
    servers = []

    def start():
        handler = type("Reg", (MemoryRegistry,), {"blobs": {}, "links": set(), "manifests": {}})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return handler, RegistryApi(Registry.parse(f"127.0.0.1:{server.server_address[1]}"))

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def seed(handler, repo: str, tag: str) -> str:
    config, layer = b'{"config": {}}', b"layer-bytes" * 1000
    descriptors = []
    for blob in (config, layer):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        handler.blobs[digest] = blob
        handler.links.add((repo, digest))
        descriptors.append({"digest": digest, "size": len(blob)})
    media = "application/vnd.oci.image.manifest.v1+json"
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media,
            "config": descriptors[0],
            "layers": descriptors[1:],
        },
        indent=3,  # unusual formatting: the bytes must travel unchanged
    ).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    handler.manifests[(repo, tag)] = handler.manifests[(repo, digest)] = (media, body)
    return digest


def test_copy_streams_between_registries_and_keeps_the_digest(registries):
    src_h, src = registries()
    _, dst = registries()
    digest = seed(src_h, "staging/app", "v1")
    stats = copy_image(Repository(src, "staging/app"), Repository(dst, "app"), digest, "v1", FAST)
    assert (stats.streamed, stats.mounted, stats.present) == (2, 0, 0)
    assert stats.bytes_streamed == len(b'{"config": {}}') + 11000
    assert dst.manifest_bytes("app", "v1").digest == digest
    again = copy_image(Repository(src, "staging/app"), Repository(dst, "app"), digest, "v1", FAST)
    assert again.present == 2 and again.streamed == 0


def test_copy_within_a_registry_mounts(registries):
    h, api = registries()
    digest = seed(h, "staging/app", "v1")
    stats = copy_image(Repository(api, "staging/app"), Repository(api, "app"), digest, "v1", FAST)
    assert (stats.mounted, stats.streamed, stats.bytes_streamed) == (2, 0, 0)
    assert api.manifest_bytes("app", "v1").digest == digest


def test_copy_fails_when_the_manifest_put_fails_and_no_tag_appears(registries):
    src_h, src = registries()
    dst_h, dst = registries()
    dst_h.fail_manifest_put = True
    digest = seed(src_h, "staging/app", "v1")
    with pytest.raises(PublishError, match="failed after 2 tries"):
        copy_image(Repository(src, "staging/app"), Repository(dst, "app"), digest, "v1", FAST)
    assert ("app", "v1") not in dst_h.manifests
    assert len(dst_h.links) == 2  # the blobs made it; the tag did not


def test_promotion_is_recorded_in_the_manifest_that_held_the_evidence(registries, tmp_path):
    src_h, src = registries()
    _, dst = registries()
    repo = "staging/gpuimages/pytorch"
    digest = seed(src_h, repo, "2.13.0-cpu-runtime")
    signed = entry(digest=digest)
    signed["evidence"] = evidence.sign(signed, KEY)
    path = write_manifest(tmp_path / "m" / "manifest.json", f"{src.registry}/staging", "t", signed)
    promotions = promote(
        [],
        source=Registry.parse(f"{src.registry}/staging"),
        dest=Registry.parse(f"{dst.registry}/public"),
        manifests=[tmp_path],
        source_api=RegistryApi(Registry.parse(f"{src.registry}/staging")),
        dest_api=RegistryApi(Registry.parse(f"{dst.registry}/public")),
        policy=FAST,
        key=KEY,
    )
    assert [p.status for p in promotions] == ["promoted"], promotions[0].reason
    assert record(promotions) == [path]
    doc = json.loads(path.read_text())
    [rec] = doc["images"][0]["promotions"]
    assert rec["pull"] == f"{dst.registry.host}/public/gpuimages/pytorch@{digest}"
    assert rec["blobs_streamed"] == 2
    assert "### Promotions" in path.with_name("manifest.md").read_text()


def test_promote_task_needs_both_registries():
    r = invoke("promote", "--to", "127.0.0.1:5000/public")
    assert r.returncode == 2
    assert "--from REGISTRY/NS and --to REGISTRY/NS are both required" in r.stderr
