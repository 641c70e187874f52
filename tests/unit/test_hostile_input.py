"""Hostile values are refused where they enter, and echoed back bounded (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.core.reference import check_repository, check_tag, shown, tamed
from gpuimages.facts.matrix import parse_matrix
from gpuimages.facts.registry_address import Registry

ENTRY = {"axes": [{"torch": "2.13.0", "cuda": "cpu"}]}


@pytest.mark.parametrize(
    "name",
    ["gpuimages/pytorch", "ghcr.io/my-team/pytorch", "localhost:5000/a/b", "a__b/c-d", "x--y"],
)
def test_repository_names_that_docker_accepts(name):
    assert check_repository(name) == name


@pytest.mark.parametrize(
    "name",
    [
        'x"\nRUN echo pwned',
        "GpuImages/PyTorch",
        "../../etc/pytorch",
        "gpuimages//pytorch",
        "gpuimages/pytorch:tag",
        "a" * 300,
        "x/-y",
    ],
)
def test_repository_names_that_docker_refuses_are_refused_at_matrix_read(name, compat, tmp_path):
    with pytest.raises(UserInputError, match="not an image repository name"):
        parse_matrix({"repository": name, **ENTRY}, tmp_path / "m.yaml", compat)


@pytest.mark.parametrize("tag", ["bad alias", ".x", "-x", "a" * 129, "x:y", "a/b", ""])
def test_tags_outside_the_grammar(tag):
    with pytest.raises(UserInputError, match="not a tag name"):
        check_tag(tag)


def test_registry_namespace_follows_the_repository_grammar():
    assert Registry.parse("ghcr.io/my-team").namespace == "my-team"
    with pytest.raises(UserInputError, match="namespace"):
        Registry.parse("ghcr.io/My-Team/../x")


def test_echoed_input_is_bounded_and_has_no_terminal_escapes():
    text = shown("\x1b[31mred\x1b[0m\x1b]0;title\x07" + "9" * 5000)
    assert "\x1b" not in text and len(text) < 140 and "5022 characters" in text
    assert shown("a\nb") == "'a\\x0ab'"
    assert len(shown(list(range(10**5)))) < 100


# --- 1. authenticated mirrors: the login travels only as a BuildKit secret -------------


def test_every_error_message_is_tamed_at_the_cli_edge():
    text = tamed("bad \x1b[31mred\x1b]0;title\x07 \x00 " + "9" * 3000 + "\nnext\tline")
    assert "\x1b" not in text and "\\x00" in text and "\nnext\tline" in text
    assert "...(3,000 characters)..." in text and len(text) < 200
    path = "/home/user/" + "x" * 200 + "/build/logs/2.13.0-cpu-runtime.log"
    assert tamed(path) == path  # a long path stays whole


@pytest.mark.parametrize(
    "args",
    [
        ("--driver", "9" * 3000, "--gpu-arch", "sm_90"),
        ("--driver", "580.65.06", "--gpu-arch", "sm_90\x1b[31m"),
        ("--driver", "580.65.06", "--gpu-arch", "sm_90", "--python", "\x1b]0;x\x07" + "3" * 999),
    ],
)
def test_resolve_echoes_hostile_values_bounded(args):
    from tests.helpers import invoke

    r = invoke("resolve", *args)
    assert r.returncode == 2, r.stderr
    assert "\x1b" not in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr) < 600, r.stderr


def test_a_mirror_login_is_split_off_and_never_a_build_argument(tmp_path):
    from gpuimages.facts.matrix import load_matrix
    from gpuimages.facts.sources import PackageSources

    cpu = load_matrix().by_name()["2.13.0-cpu-runtime"]
    src = PackageSources.merged(
        {},
        apt_mirror="http://user:pa%40ss@mirror.example:8081/debian",
        pip_index_url="https://bob:tok3n@nexus.example/simple",
    )
    assert "pa@ss" not in repr(src) and "tok3n" not in repr(src)
    args = src.build_args(cpu)
    assert args["APT_MIRROR"] == "http://mirror.example:8081/debian"
    assert args["PIP_INDEX_URL"] == "https://nexus.example/simple"
    assert "pa@ss" not in str(args) and "tok3n" not in str(args)
    with src.secret_files() as argv:
        files = dict(a.split(",src=") for a in argv if a.startswith("id="))
        apt = Path(files["id=apt-auth"]).read_text()
        assert apt == ("machine http://mirror.example:8081/debian\nlogin user\npassword pa@ss\n")
        netrc = Path(files["id=pip-netrc"]).read_text()
        assert "machine nexus.example\nlogin bob\npassword tok3n" in netrc
        assert oct(Path(files["id=apt-auth"]).stat().st_mode & 0o777) == "0o600"
    assert not Path(files["id=apt-auth"]).exists()


@pytest.mark.parametrize(
    "url",
    ["https://host/simple?token=abc", "https://host/simple#tok", "http://user@host/x"],
)
def test_tokens_outside_a_login_are_refused(url):
    from gpuimages.facts.sources import PackageSources

    with pytest.raises(UserInputError):
        PackageSources.merged({}, pip_index_url=url)
    with pytest.raises(UserInputError):
        PackageSources.merged({}, apt_mirror=url)


# --- 2. the publish gate re-derives the verdict and wants complete, fresh evidence -----

IMAGE = "sha256:" + "ab" * 32


def _report(variant, **changes):
    checks = [
        {"name": n, "status": "skipped" if n in ("gpu", "cuda") else "passed"}
        for n in ("gpu", "torch", "cuda", "ddp", "flavor", "labels")
    ]
    doc = {
        "schema": 1,
        "variant": variant.as_dict(),
        "image_id": IMAGE,
        "status": "passed",
        "created": "2030-01-01T00:00:00+00:00",
        "checks": checks,
    }
    doc.update(changes)
    return doc


@pytest.fixture()
def cpu_variant():
    from gpuimages.facts.matrix import load_matrix

    return load_matrix().by_name()["2.13.0-cpu-runtime"]


def test_a_status_edited_to_passed_over_a_failed_check_is_refused(cpu_variant, tmp_path):
    from gpuimages.release.publish import decide

    doc = _report(cpu_variant)
    doc["checks"][1]["status"] = "failed"
    d = decide(cpu_variant, tmp_path / "r.json", doc, IMAGE)
    assert not d.vetted and "inconsistent" in d.reason


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"checks": [{"name": "torch", "status": "passed"}]}, "incomplete"),
        ({"created": "2020-01-01T00:00:00+00:00"}, "older than image"),
        ({"created": ""}, "older than image"),
    ],
)
def test_incomplete_or_stale_evidence_is_refused(cpu_variant, tmp_path, change, words):
    from gpuimages.release.publish import decide

    d = decide(
        cpu_variant,
        tmp_path / "r.json",
        _report(cpu_variant, **change),
        IMAGE,
        image_created="2025-06-01T10:00:00.123456789Z",
    )
    assert not d.vetted and words in d.reason


def test_a_report_of_another_variant_is_refused(cpu_variant, tmp_path):
    from gpuimages.release.publish import decide

    doc = _report(cpu_variant)
    doc["variant"] = {**doc["variant"], "python": "3.12"}
    d = decide(cpu_variant, tmp_path / "r.json", doc, IMAGE)
    assert not d.vetted and "another variant (python" in d.reason


def test_with_an_evidence_key_only_a_signed_report_passes(cpu_variant, tmp_path):
    from gpuimages.release.publish import decide
    from gpuimages.vet.smoke_report import SmokeReport

    path = tmp_path / "r.json"
    SmokeReport.from_dict(_report(cpu_variant)).write(path, key="k1")
    signed = SmokeReport.read(path)
    assert signed.signature and signed.signed_by("k1") and not signed.signed_by("k2")
    assert decide(cpu_variant, path, signed, IMAGE, evidence_key="k1").vetted
    assert "does not match" in decide(cpu_variant, path, signed, IMAGE, evidence_key="k2").reason
    forged = json.loads(path.read_text())
    forged["checks"][1]["reason"] = "edited"
    d = decide(cpu_variant, path, forged, IMAGE, evidence_key="k1")
    assert not d.vetted and "does not match" in d.reason
    unsigned = _report(cpu_variant)
    assert (
        "carries no signature"
        in decide(cpu_variant, path, unsigned, IMAGE, evidence_key="k1").reason
    )
