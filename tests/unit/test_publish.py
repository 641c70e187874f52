"""The pure logic of publishing: gate, retries, digests, credentials, Markdown (no Docker).

The registry API tests talk to a tiny HTTP server in a thread, not to a registry.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.matrix import load_matrix
from gpuimages.facts.registry_address import Registry, repository_path
from gpuimages.release.cut import release_dir
from gpuimages.release.manifest import ReleaseManifest, to_markdown, write_manifest
from gpuimages.release.publish import (
    GateDecision,
    PublishResult,
    PushProgress,
    decide,
    read_push_stream,
    smoke_summary,
)
from gpuimages.release.registry import (
    ENV_PASSWORD,
    ENV_USER,
    Credentials,
    CredentialsRejected,
    PublishError,
    RegistryApi,
    RegistryUnavailable,
    RetryPolicy,
    TransientRegistryError,
    classify,
    resolve_credentials,
    same_digest,
    with_retries,
)
from gpuimages.vet.contents import ABSENT, SECTION, ImageContents, parse_capture
from gpuimages.vet.smoke_report import SmokeReport, SmokeReportError, find_report, report_path

ROOT = Path(__file__).resolve().parents[2]
NAME = "2.13.0-cpu-runtime"
IMAGE = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
DIGEST = "sha256:" + "12" * 32


@pytest.fixture(scope="module")
def variant():
    v = load_matrix(ROOT / "matrix.yaml").by_name()[NAME]
    return replace(v, repository="gpuimages-test/publish")


def report(variant, image_id=IMAGE, status="passed", **extra):
    checks = [
        {"name": "torch", "status": "passed"},
        {"name": "ddp", "status": "passed" if status == "passed" else "failed"},
        {"name": "gpu", "status": "skipped"},
        {"name": "cuda", "status": "skipped"},
        {"name": "flavor", "status": "passed"},
        {"name": "labels", "status": "passed"},
    ]
    return {
        "schema": 1,
        "variant": variant.as_dict(),
        "image_id": image_id,
        "status": status,
        "checks": checks,
        **extra,
    }


# ----------------------------------------------------------------------------- gate


def test_gate_passes_only_a_passed_report_for_the_same_image(variant, tmp_path):
    d = decide(variant, tmp_path / "r.json", report(variant), IMAGE)
    assert d.vetted and "smoke passed for image abababababab" in d.reason
    assert d.smoke_counts() == {"passed": 4, "failed": 0, "skipped": 2}


@pytest.mark.parametrize(
    ("doc", "local", "error", "words"),
    [
        (None, None, None, "does not exist locally: build and smoke-test it first"),
        (None, IMAGE, None, "no smoke report at"),
        (None, IMAGE, "is not valid JSON (x)", "is not valid JSON"),
        ("failed", IMAGE, None, "did not pass: status 'failed' (failed checks: ddp)"),
        ("other-image", IMAGE, None, "tested image cdcdcdcdcdcd, but gpuimages-test/publish"),
        ("schema-2", IMAGE, None, "has schema 2"),
        ("other-variant", IMAGE, None, "is for '1.12.0-cuda11.3-cudnn8-runtime'"),
        ("no-status", IMAGE, None, "status None"),
    ],
)
def test_gate_refuses_with_one_line(variant, tmp_path, doc, local, error, words):
    docs = {
        None: None,
        "failed": report(variant, status="failed"),
        "other-image": report(variant, image_id=OTHER),
        "schema-2": {**report(variant), "schema": 2},
        "other-variant": {
            **report(variant),
            "variant": {"name": "1.12.0-cuda11.3-cudnn8-runtime"},
        },
        "no-status": {k: v for k, v in report(variant).items() if k != "status"},
    }
    d = decide(variant, tmp_path / "r.json", docs[doc], local, error)
    assert not d.vetted
    assert words in d.reason
    assert "\n" not in d.reason


def test_gate_refusal_names_the_command_that_fixes_it(variant, tmp_path):
    d = decide(variant, tmp_path / "r.json", None, IMAGE)
    assert f"invoke smoke --variant {NAME} --report {tmp_path / 'r.json'}" in d.reason


def read_report(path):
    """(report, None), (None, None) when missing, or (None, why) when unreadable."""
    try:
        return SmokeReport.read(path), None
    except SmokeReportError as exc:
        return None, None if exc.missing else exc.why


def test_read_report_missing_bad_and_good(tmp_path, variant):
    assert read_report(tmp_path / "none.json") == (None, None)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    doc, error = read_report(bad)
    assert doc is None and error.startswith("is not valid JSON")
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    assert read_report(listed) == (None, "is not a JSON object")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(report(variant)))
    assert read_report(good)[0].status == "passed"


def test_report_path_is_dir_slash_name_or_a_given_file(variant, tmp_path):
    assert report_path(variant, Path("reports/smoke")) == Path(f"reports/smoke/{NAME}.json")
    assert report_path(variant, tmp_path / "one.json") == tmp_path / "one.json"
    assert report_path(variant, tmp_path / "one.json", count=2) == (
        tmp_path / "one.json" / f"{NAME}.json"
    )


def test_publish_finds_the_report_wherever_smoke_wrote_it(variant, tmp_path):
    """`smoke --report out/smoke.json` then `publish --reports out` (or --report FILE)."""
    written = report_path(variant, tmp_path / "smoke.json")
    written.write_text(json.dumps(report(variant, created="2026-01-01T00:00:00+00:00")))
    (tmp_path / "other.json").write_text(json.dumps({**report(variant), "schema": 2}))
    assert find_report(variant, tmp_path) == written
    assert find_report(variant, written) == written
    assert find_report(variant, tmp_path / "empty") == tmp_path / "empty" / f"{NAME}.json"
    named = report_path(variant, tmp_path)
    named.write_text(json.dumps(report(variant)))
    assert find_report(variant, tmp_path) == named  # <name>.json first


def test_a_suite_output_is_not_a_smoke_report(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"schema": 1, "passed": True, "checks": []}))
    with pytest.raises(SmokeReportError, match="in-image suite's output"):
        SmokeReport.read(path)


# -------------------------------------------------------------------------- retries


def test_retry_delays_double_and_are_capped():
    assert RetryPolicy().delays() == (1.0, 2.0, 4.0)
    assert RetryPolicy(tries=6, base_s=10, max_s=30).delays() == (10, 20, 30, 30, 30)
    assert RetryPolicy(tries=1).delays() == ()


def test_retry_policy_from_env_and_options():
    env = {"GPUIMAGES_PUSH_TRIES": "2", "GPUIMAGES_PUSH_BACKOFF_S": "0.5"}
    assert RetryPolicy.from_env(env) == RetryPolicy(tries=2, base_s=0.5)
    assert RetryPolicy.from_env(env, tries=5) == RetryPolicy(tries=5, base_s=0.5)
    assert RetryPolicy.from_env({}) == RetryPolicy()
    with pytest.raises(UserInputError, match="GPUIMAGES_PUSH_TRIES must be a whole number"):
        RetryPolicy.from_env({"GPUIMAGES_PUSH_TRIES": "many"})
    with pytest.raises(UserInputError, match="tries >= 1"):
        RetryPolicy(tries=0)


def test_transient_errors_are_retried_then_succeed():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientRegistryError("connection refused")
        return "ok"

    assert with_retries(flaky, RetryPolicy(), "push", sleep=waits.append) == "ok"
    assert len(calls) == 3 and waits == [1.0, 2.0]


def test_a_registry_that_stays_down_gives_up_after_the_bounded_tries():
    waits = []

    def down():
        raise TransientRegistryError("http://127.0.0.1:1 did not answer (Connection refused)")

    with pytest.raises(RegistryUnavailable, match="push of x failed after 4 tries: http"):
        with_retries(down, RetryPolicy(), "push of x", sleep=waits.append)
    assert waits == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("error", [CredentialsRejected("no"), PublishError("manifest invalid")])
def test_auth_and_fatal_errors_are_not_retried(error):
    calls, waits = [], []

    def fails():
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        with_retries(fails, RetryPolicy(), "push", sleep=waits.append)
    assert len(calls) == 1 and waits == []


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ('Get "http://127.0.0.1:5999/v2/": dial tcp: connect: connection refused', "transient"),
        ("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer", "transient"),
        ("received unexpected HTTP status: 503 Service Unavailable", "transient"),
        ("net/http: TLS handshake timeout", "transient"),
        ("unauthorized: authentication required", "auth"),
        ("no basic auth credentials", "auth"),
        ("denied: requested access to the resource is denied", "auth"),
        ("manifest invalid: manifest invalid", "fatal"),
        ("name unknown: repository name not known to registry", "fatal"),
    ],
)
def test_classify_registry_messages(message, kind):
    assert classify(message) == kind


# -------------------------------------------------------------------- push stream


def test_push_stream_yields_the_aux_digest():
    chunks = [
        {"status": "The push refers to repository [127.0.0.1:5000/x]"},
        {"status": "Pushed", "progressDetail": {}, "id": "d12a71d2f96c"},
        {"status": f"t: digest: {DIGEST} size: 529"},
        {"progressDetail": {}, "aux": {"Tag": "t", "Digest": DIGEST, "Size": 529}},
    ]
    pushed = read_push_stream(chunks)
    assert pushed.digest == DIGEST and pushed.manifest_bytes == 529


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("unauthorized: authentication required", CredentialsRejected),
        ('Get "http://127.0.0.1:9/v2/": connect: connection refused', TransientRegistryError),
        ("blob upload invalid", PublishError),
    ],
)
def test_push_stream_errors_become_typed_exceptions(message, error):
    chunks = [{"status": "Preparing"}, {"errorDetail": {"message": message}, "error": message}]
    with pytest.raises(error) as info:
        read_push_stream(chunks)
    assert type(info.value) is error


def test_push_stream_reports_layers_and_bytes_as_they_go():
    """The engine's per-layer lines (as docker 20.10 prints them) become progress lines:
    one when each layer is done, and the bytes sent so far."""
    a, b, c = "5f70bf18a086", "a3ed95caeb02", "0123456789ab"
    chunks = [
        {"status": "The push refers to repository [127.0.0.1:5000/gpuimages/pytorch]"},
        {"status": "Preparing", "progressDetail": {}, "id": a},
        {"status": "Preparing", "progressDetail": {}, "id": b},
        {"status": "Preparing", "progressDetail": {}, "id": c},
        {"status": "Layer already exists", "progressDetail": {}, "id": c},
        {"status": "Pushing", "progressDetail": {"current": 512, "total": 2_000_000}, "id": a},
        {"status": "Pushing", "progressDetail": {"current": 10**6, "total": 2_000_000}, "id": a},
        {
            "status": "Pushing",
            "progressDetail": {"current": 3 * 10**6, "total": 4 * 10**6},
            "id": b,
        },
        {"status": "Pushed", "progressDetail": {}, "id": a},
        {"status": "Pushed", "progressDetail": {}, "id": b},
        {"status": "2.13.0-cpu-runtime: digest: sha256:x size: 529"},
        {"progressDetail": {}, "aux": {"Tag": "t", "Digest": DIGEST, "Size": 529}},
    ]
    lines: list[str] = []
    pushed = read_push_stream(chunks, on_progress=lines.append, every_s=3600)
    assert pushed.digest == DIGEST
    assert lines == ["1/3 layers", "2/3 layers, 5 of 6 MB", "3/3 layers, 6 of 6 MB"]


def test_push_progress_ignores_lines_that_are_not_layers():
    progress = PushProgress()
    assert not progress.update({"status": "Pushed", "id": "2.13.0-cpu-runtime"})
    assert not progress.update({"status": "Preparing"})
    assert progress.line() == "0/0 layers"


def test_push_stream_without_digest_is_an_error_and_secrets_are_masked():
    with pytest.raises(PublishError, match="without reporting a manifest digest"):
        read_push_stream([{"status": "Pushed"}])
    with pytest.raises(PublishError) as info:
        read_push_stream([{"error": "odd failure mentioning hunter2"}], secrets=("hunter2",))
    assert "hunter2" not in str(info.value)


def test_digests_compare_exactly():
    assert same_digest(DIGEST, DIGEST)
    assert same_digest(DIGEST.upper().replace("SHA256", "sha256"), DIGEST)
    assert not same_digest(DIGEST, "sha256:" + "13" * 32)
    assert not same_digest(None, DIGEST)
    assert not same_digest(DIGEST.removeprefix("sha256:"), DIGEST)


# ------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("text", "host", "namespace", "scheme"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000", "", "http"),
        ("localhost:5000/team", "localhost:5000", "team", "http"),
        ("ghcr.io/my-org", "ghcr.io", "my-org", "https"),
        ("https://registry.example.com:8443/a/b/", "registry.example.com:8443", "a/b", "https"),
        ("http://mirror.lan:5000", "mirror.lan:5000", "", "http"),
    ],
)
def test_registry_parse(text, host, namespace, scheme):
    r = Registry.parse(text)
    assert (r.host, r.namespace, r.scheme) == (host, namespace, scheme)


@pytest.mark.parametrize("text", ["", "a b", "user:pw@ghcr.io", "/x", "bad_host!:5000"])
def test_registry_parse_refuses_bad_values(text):
    with pytest.raises(UserInputError, match="HOST\\[:PORT\\]\\[/NAMESPACE\\]"):
        Registry.parse(text)


def test_registry_tags_and_api_repository(variant):
    ref = Registry.parse("ghcr.io/my-org").tag_for(variant)
    assert ref == f"ghcr.io/my-org/gpuimages-test/publish:{NAME}"
    assert repository_path(ref) == "my-org/gpuimages-test/publish"
    assert repository_path(f"127.0.0.1:5000/gpuimages/pytorch:{NAME}") == "gpuimages/pytorch"


# ---------------------------------------------------------------------- credentials


def _config(tmp_path, doc) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


def test_credentials_from_env_win(tmp_path):
    cfg = _config(tmp_path, {"auths": {"ghcr.io": {"auth": base64.b64encode(b"a:b").decode()}}})
    env = {ENV_USER: "ci", ENV_PASSWORD: "s3cret"}
    creds = resolve_credentials("ghcr.io", env, cfg)
    assert (creds.user, creds.password) == ("ci", "s3cret")
    assert "s3cret" not in repr(creds) and "s3cret" not in str(creds)
    assert "GPUIMAGES_REGISTRY_USER" in creds.source


@pytest.mark.parametrize("given", [ENV_USER, ENV_PASSWORD])
def test_half_the_env_credentials_is_refused_without_echoing_them(given, tmp_path):
    with pytest.raises(UserInputError) as info:
        resolve_credentials("ghcr.io", {given: "only-this-one"}, tmp_path / "none.json")
    missing = ENV_PASSWORD if given == ENV_USER else ENV_USER
    assert f"{missing} is not set" in str(info.value)
    assert "only-this-one" not in str(info.value)


@pytest.mark.parametrize(
    "key", ["127.0.0.1:5000", "http://127.0.0.1:5000", "https://127.0.0.1:5000/v1/"]
)
def test_credentials_from_docker_config_auths(tmp_path, key):
    auth = base64.b64encode(b"alice:pa:ss").decode()
    cfg = _config(tmp_path, {"auths": {key: {"auth": auth}, "other:1": {"auth": "eDp5"}}})
    creds = resolve_credentials("127.0.0.1:5000", {}, cfg)
    assert (creds.user, creds.password) == ("alice", "pa:ss")
    assert str(cfg) in creds.source


def test_docker_hub_config_key_matches_docker_io(tmp_path):
    auth = base64.b64encode(b"bob:pw").decode()
    cfg = _config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": auth}}})
    assert resolve_credentials("docker.io", {}, cfg).user == "bob"


def test_no_login_means_anonymous(tmp_path):
    assert resolve_credentials("ghcr.io", {}, tmp_path / "missing.json") is None
    assert resolve_credentials("ghcr.io", {}, _config(tmp_path, {"auths": {}})) is None
    assert resolve_credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path / "nope")}) is None


@pytest.mark.parametrize(
    "doc",
    [
        {"credHelpers": {"ghcr.io": "gh"}},
        {"credsStore": "desktop", "auths": {"ghcr.io": {}}},
    ],
)
def test_credential_helpers_get_a_clear_message(tmp_path, doc):
    with pytest.raises(UserInputError, match="kept by docker-credential-") as info:
        resolve_credentials("ghcr.io", {}, _config(tmp_path, doc))
    assert ENV_USER in str(info.value)


def test_bad_docker_config_entries(tmp_path):
    bad = _config(tmp_path, {"auths": {"ghcr.io": {"auth": "bm9jb2xvbg=="}}})  # "nocolon"
    with pytest.raises(UserInputError, match="not base64 of USER:PASSWORD"):
        resolve_credentials("ghcr.io", {}, bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(UserInputError, match="not readable JSON"):
        resolve_credentials("ghcr.io", {}, broken)


# ----------------------------------------------------------- registry HTTP API (fake)


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"size": 100, "digest": "sha256:" + "0" * 64},
        "layers": [{"size": 1000, "digest": "sha256:" + "1" * 64}],
    }
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class FakeRegistry(BaseHTTPRequestHandler):
    """Serves /v2/ and one manifest; auth 'none', 'basic' or 'bearer'; scripted failures."""

    auth = "none"
    failures: ClassVar[list[int]] = []
    header_digest: ClassVar[str | None] = None
    seen: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        self.seen.append((self.path, auth))
        if self.path.startswith("/token"):
            if auth != "Basic " + base64.b64encode(b"u:p").decode():
                return self._send(401)
            return self._send(200, json.dumps({"token": "tok"}).encode())
        if self.failures:
            return self._send(self.failures.pop(0))
        port = self.server.server_address[1]
        ok = {"none": True, "basic": auth.startswith("Basic "), "bearer": auth == "Bearer tok"}
        if self.auth == "basic" and ok["basic"]:
            ok["basic"] = auth == "Basic " + base64.b64encode(b"u:p").decode()
        if not ok[self.auth]:
            challenge = (
                'Basic realm="r"'
                if self.auth == "basic"
                else f'Bearer realm="http://127.0.0.1:{port}/token",service="fake"'
            )
            return self._send(401, b"{}", {"WWW-Authenticate": challenge})
        if self.path == "/v2/":
            return self._send(200, b"{}", {"Docker-Distribution-Api-Version": "registry/2.0"})
        if self.path == "/v2/team/app/manifests/v1":
            digest = self.header_digest or MANIFEST_DIGEST
            return self._send(200, MANIFEST, {"Docker-Content-Digest": digest})
        return self._send(404, b"{}")


@pytest.fixture
def fake(request):
    handler = type("Handler", (FakeRegistry,), {"failures": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, Registry.parse(f"127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


def test_api_reads_the_manifest_digest_and_compressed_size(fake):
    _, registry = fake
    remote = RegistryApi(registry).manifest("team/app", "v1")
    assert remote.digest == MANIFEST_DIGEST and remote.size_bytes == 1100
    with pytest.raises(PublishError, match="has no manifest team/app:v2"):
        RegistryApi(registry).manifest("team/app", "v2")


def test_api_refuses_a_digest_header_that_does_not_match_the_content(fake):
    handler, registry = fake
    handler.header_digest = "sha256:" + "9" * 64
    with pytest.raises(PublishError, match="does not match its Docker-Content-Digest"):
        RegistryApi(registry).manifest("team/app", "v1")


def test_api_basic_auth_right_wrong_and_missing(fake):
    handler, registry = fake
    handler.auth = "basic"
    RegistryApi(registry, Credentials("u", "p", "test")).ping()
    with pytest.raises(CredentialsRejected) as info:
        RegistryApi(registry, Credentials("u", "wrong-pw", "test")).ping()
    assert str(info.value) == (
        f"registry rejected the credentials for u@{registry.host} (from test)."
    )
    assert "wrong-pw" not in str(info.value)
    with pytest.raises(CredentialsRejected, match="asks for credentials and none were given"):
        RegistryApi(registry).ping()


def test_api_bearer_token_flow(fake):
    handler, registry = fake
    handler.auth = "bearer"
    api = RegistryApi(registry, Credentials("u", "p", "test"))
    api.ping()
    assert api.manifest("team/app", "v1").digest == MANIFEST_DIGEST
    tokens = [path for path, _ in handler.seen if path.startswith("/token")]
    assert tokens and "service=fake" in tokens[0]
    with pytest.raises(CredentialsRejected, match="rejected the credentials for x@"):
        RegistryApi(registry, Credentials("x", "y", "test")).ping()


def test_api_5xx_is_transient_and_retried(fake):
    handler, registry = fake
    handler.failures.extend([503, 502])
    api = RegistryApi(registry)
    waits = []
    with_retries(api.ping, RetryPolicy(), "ping", sleep=waits.append)
    assert waits == [1.0, 2.0]


def test_api_connection_refused_is_transient():
    with pytest.raises(TransientRegistryError, match="did not answer"):
        RegistryApi(Registry.parse("127.0.0.1:9"), timeout=2).ping()


# ------------------------------------------------------------------------- manifest


def capture_output(python: bool) -> str:
    lines = [f"{SECTION}versions"]
    if python:
        versions = {"python": "3.11.2", "torch": "2.13.0+cpu", "cuda": None, "nccl": None}
        lines.append(json.dumps(versions))
    lines.append(f"{SECTION}pip")
    if python:
        lines += ["source: pip freeze", "numpy==2.4.1", "torch==2.13.0+cpu"]
    lines.append(f"{SECTION}dpkg")
    lines += [
        "ii \tlibc6\t2.36-9",
        "ii \tlibssl3:amd64\t3.0.22",
        "rc \tremoved-pkg\t1.0",
        "ii \tlibcudnn8\t8.9.2",
        "ii \tzlib1g\t1:1.2",
    ]
    lines.append(f"{SECTION}end")
    return "\n".join(lines) + "\n"


def test_parse_capture_with_python():
    c = parse_capture(capture_output(python=True))
    assert c.versions["torch"] == "2.13.0+cpu" and c.versions["python"] == "3.11.2"
    assert c.versions["cuda"] == ABSENT and c.versions["horovod"] == ABSENT
    assert c.pip_freeze == ("numpy==2.4.1", "torch==2.13.0+cpu")
    assert c.pip_source == "pip freeze"
    assert c.dpkg_count == 4
    assert c.key_packages == {"libc6": "2.36-9", "libssl3": "3.0.22", "libcudnn8": "8.9.2"}
    assert c.error is None


def test_parse_capture_without_python_records_absent():
    c = parse_capture(capture_output(python=False))
    assert set(c.versions.values()) == {ABSENT}
    assert c.pip_freeze == () and c.pip_source == ABSENT and c.dpkg_count == 4
    assert parse_capture("garbage").error == "the capture script did not finish"


def _manifest(variant) -> ReleaseManifest:
    ok = PublishResult(
        variant,
        "published",
        "pushed and verified at 127.0.0.1:5000",
        image_id=IMAGE,
        registry_tag=f"127.0.0.1:5000/gpuimages-test/publish:{NAME}",
        digest=DIGEST,
        size_bytes=1_110_000_000,
        compressed_bytes=412_000_000,
    )
    decision = GateDecision(
        variant, True, "", IMAGE, Path("r.json"), SmokeReport.from_dict(report(variant))
    )
    ok.smoke = smoke_summary(decision)
    refused = PublishResult(
        replace(variant, flavor="devel"), "refused", "no smoke report at x | y: run it\nplease"
    )
    contents = ImageContents(
        {"python": "3.11.2", "torch": "2.13.0+cpu", "cuda": ABSENT},
        ("numpy==2.4.1", "torch==2.13.0+cpu"),
        "pip freeze",
        109,
        {"libc6": "2.36-9"},
    )
    images = (
        {**ok.as_dict(), "contents": contents.as_dict()},
        {**refused.as_dict(), "contents": None},
    )
    return ReleaseManifest("2026-11-23T04:30:00+00:00", "127.0.0.1:5000", "a" * 40, images)


def test_markdown_table_versions_and_collapsed_freeze(variant):
    md = to_markdown(_manifest(variant))
    assert md.startswith("## gpuimages release 2026-11-23T04:30:00+00:00\n")
    assert "1 published, 1 refused, 0 failed" in md
    assert "| variant | status | tag | digest | size | smoke |" in md
    row = next(line for line in md.splitlines() if line.startswith(f"| {NAME} |"))
    assert "**published**" in row and "`sha256:121212121212`" in row
    assert "1.11 GB (412.00 MB compressed)" in row
    assert "passed: 4 passed, 0 failed, 2 skipped" in row
    assert "| 2.13.0-cpu-devel | **refused** |" in md and "no report" in md
    assert "no smoke report at x \\| y: run it please" in md  # escaped, one line
    assert f"`docker pull 127.0.0.1:5000/gpuimages-test/publish@{DIGEST}`" in md
    assert "| 3.11.2 | 2.13.0+cpu | - | absent |" in md
    assert "Debian packages: 109 installed; libc6 2.36-9." in md
    assert "<details><summary>pip freeze (2 packages)</summary>" in md
    assert "```\nnumpy==2.4.1\ntorch==2.13.0+cpu\n```" in md


def test_write_manifest_json_md_and_step_summary(variant, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    json_path, md_path = write_manifest(
        _manifest(variant), tmp_path / "r", step_summary=str(summary)
    )
    doc = json.loads(json_path.read_text())
    assert doc["schema"] == 1 and doc["counts"] == {"published": 1, "refused": 1, "failed": 0}
    assert doc["images"][0]["contents"]["pip_freeze"] == ["numpy==2.4.1", "torch==2.13.0+cpu"]
    assert summary.read_text().startswith("earlier step\n## gpuimages release")
    assert md_path.read_text() in summary.read_text()


def test_release_dir_is_a_utc_timestamp_and_never_reused(tmp_path):
    when = dt.datetime(2026, 11, 23, 4, 30, 5, tzinfo=dt.timezone.utc)
    first = release_dir(tmp_path, when)
    assert first.name == "20261123T043005Z"
    first.mkdir()
    assert release_dir(tmp_path, when).name == "20261123T043005Z-2"
