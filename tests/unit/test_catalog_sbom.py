"""The catalog of published images and the per-image SBOM: their pure parts (no Docker)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.compat import load_compat
from gpuimages.facts.matrix import load_matrix
from gpuimages.release import sbom
from gpuimages.release.catalog import build_catalog, driver_policies, load_catalog, write_catalog
from gpuimages.release.cut import with_sboms
from gpuimages.release.manifest import ReleaseManifest
from gpuimages.release.publish import PublishResult
from gpuimages.vet.contents import SECTION

ROOT = Path(__file__).resolve().parents[2]
CPU = "2.13.0-cpu-runtime"
GPU = "2.14.1-cuda13.0-cudnn9-runtime"
IMAGE = "sha256:" + "ab" * 32
DIGEST = "sha256:" + "12" * 32


@pytest.fixture(scope="module")
def matrix():
    return load_matrix(ROOT / "matrix.yaml").by_name()


def published(variant, *, name_suffix="") -> dict:
    result = PublishResult(
        variant,
        "published",
        "pushed and verified",
        image_id=IMAGE,
        registry_tag=f"127.0.0.1:5000/gpuimages/pytorch:{variant.name}",
        digest=DIGEST,
        size_bytes=1_110_000_000,
        compressed_bytes=412_000_000,
        smoke={"status": "passed", "passed": 4, "skipped": 2, "failed": 0, "signed": True,
               "evidence_digest": "sha256:" + "ee" * 32},
    )  # fmt: skip
    return {
        **result.as_dict(),
        "contents": {"versions": {"torch": "2.13.0+cpu", "nccl": "absent", "python": "3.11.2"}},
        "image_created": "2026-11-23T09:00:00.123456789Z",
        "evidence": {"algorithm": "hmac-sha256", "signature": "x"},
    }


def manifest(*entries) -> ReleaseManifest:
    return ReleaseManifest("2026-11-23T10:00:00+00:00", "127.0.0.1:5000", "a" * 40, entries)


# --- catalog ----------------------------------------------------------------------------------


def test_catalog_lists_only_published_images_with_every_field(matrix):
    refused = {**published(matrix["2.13.0-cpu-devel"]), "status": "refused", "digest": None}
    m = manifest(published(matrix[CPU]), refused)
    outcome = sbom.SbomOutcome(CPU, Path("r") / f"{CPU}.cdx.json", 12, 109)
    catalog = build_catalog(with_sboms(m, {CPU: outcome}), load_compat())
    assert catalog["kind"] == "gpuimages-catalog" and catalog["schema"] == 1
    [image] = catalog["images"]
    assert image["variant"] == CPU and image["tags"] == [CPU]
    assert image["repository"] == "127.0.0.1:5000/gpuimages/pytorch"
    assert image["pull"] == f"127.0.0.1:5000/gpuimages/pytorch@{DIGEST}"
    assert image["versions"] == {
        "torch": "2.13.0", "torchvision": None, "torchaudio": matrix[CPU].torchaudio,
        "cuda": "cpu", "cudnn": None, "nccl": None, "python": "3.11", "os": "debian12",
        "flavor": "runtime", "horovod": None, "base": "os",
    }  # fmt: skip
    assert image["found"]["torch"] == "2.13.0+cpu" and image["found"]["nccl"] is None
    assert image["gpu"] is False and image["min_driver"] is None and image["archs"] == []
    assert (image["size_bytes"], image["compressed_bytes"]) == (1_110_000_000, 412_000_000)
    assert image["evidence"] == {
        "smoke": "passed", "passed": 4, "skipped": 2, "failed": 0,
        "report_digest": "sha256:" + "ee" * 32, "report_signed": True,
        "release_signature": "hmac-sha256",
    }  # fmt: skip
    assert image["sbom"] == f"{CPU}.cdx.json" and image["sbom_note"] is None
    assert image["built"] == "2026-11-23T09:00:00.123456789Z"
    assert image["published"] == "2026-11-23T10:00:00+00:00"


def test_min_driver_under_each_policy_from_the_compat_data(matrix):
    compat = load_compat()
    gpu = matrix[GPU].as_dict()
    assert driver_policies(gpu, compat) == {
        "supported": "580.65.06",
        "minor_version_compatibility": "580",
        "container_start": "580.65.06",
    }
    assert compat.driver_for_cuda("12.4") == "550.54.14"
    assert driver_policies(matrix[CPU].as_dict(), compat) is None


def test_catalog_markdown_and_files(matrix, tmp_path):
    failed_sbom = sbom.SbomOutcome(GPU, None, error="cyclonedx-py printed nothing")
    m = with_sboms(manifest(published(matrix[GPU])), {GPU: failed_sbom})
    json_path, md_path = write_catalog(build_catalog(m, load_compat()), tmp_path)
    assert json.loads(json_path.read_text())["images"][0]["sbom"] is None
    md = md_path.read_text()
    assert md.startswith("## gpuimages catalog 2026-11-23T10:00:00+00:00\n")
    row = next(line for line in md.splitlines() if line.startswith("| `127.0.0.1:5000/"))
    assert ">= 580.65.06 (minor-version compat. >= 580)" in row
    assert "sm_75 sm_80" in row and "1.11 GB (412.00 MB compressed)" in row
    assert "passed: 4 passed, 2 skipped" in row
    assert f"- `{GPU}`: cyclonedx-py printed nothing" in md
    assert f"docker pull 127.0.0.1:5000/gpuimages/pytorch@{DIGEST}" in md


def test_load_catalog_newest_release_wins_and_bad_input_is_refused(matrix, tmp_path):
    old, new = tmp_path / "20261101T000000Z", tmp_path / "20261123T000000Z"
    for folder, created, digest in (
        (old, "2026-11-01", "sha256:" + "0" * 64),
        (new, "2026-11-23", DIGEST),
    ):
        m = replace(manifest({**published(matrix[CPU]), "digest": digest}), created=created)
        write_catalog(build_catalog(m, load_compat()), folder)
    found = load_catalog([tmp_path])
    assert found[CPU].digest == DIGEST and found[CPU].catalog == new / "catalog.json"
    assert load_catalog([old / "catalog.json"])[CPU].digest.endswith("0" * 64)

    (tmp_path / "x.json").write_text('{"kind": "other"}')
    with pytest.raises(UserInputError, match="is not a gpuimages catalog"):
        load_catalog([tmp_path / "x.json"])
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(UserInputError, match="is not JSON"):
        load_catalog([tmp_path / "y.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=r"holds no catalog\.json"):
        load_catalog([tmp_path / "empty"])


# --- SBOM -------------------------------------------------------------------------------------

OS_RELEASE = ['PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"', "ID=debian", 'VERSION_ID="12"']
DPKG = [
    "ii \tlibc6\t2.36-9+deb12u4\tamd64",
    "ii \tlibgcc-s1:amd64\t1:12.2.0-14\tamd64",
    "rc \tgone\t1.0\tamd64",
    "ii \ttzdata\t2024a-0+deb12u1\tall",
]
PYTHON_BOM = {
    "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "version": 1,
    "metadata": {"tools": {"components": [{"name": "cyclonedx-py", "type": "application"}]}},
    "components": [
        {"bom-ref": "torch==2.13.0+cpu", "type": "library", "name": "torch",
         "version": "2.13.0+cpu", "purl": "pkg:pypi/torch@2.13.0%2Bcpu"},
        {"bom-ref": "mylib==1.0", "type": "library", "name": "mylib", "version": "1.0",
         "externalReferences": [{"type": "distribution",
                                 "url": "https://ci-user:s3cret@pypi.corp.example/simple/mylib"}]},
    ],
    "dependencies": [{"ref": "torch==2.13.0+cpu"}],
}  # fmt: skip


def capture_output(python_bom: dict | None) -> str:
    out = [f"{SECTION}os-release", *OS_RELEASE, f"{SECTION}dpkg", *DPKG, f"{SECTION}python"]
    text = "\n".join(out) + "\n"
    if python_bom is not None:
        text += json.dumps(python_bom, indent=2)  # the tool ends without a newline
    return text + f"\n{SECTION}end\n"


def test_capture_output_parses_os_release_dpkg_and_the_tool_json():
    captured = sbom.parse_capture(capture_output(PYTHON_BOM))
    assert captured.complete and captured.python_bom["specVersion"] == "1.6"
    assert captured.os_release["ID"] == "debian" and captured.os_release["VERSION_ID"] == "12"
    assert [(p.name, p.version, p.arch) for p in captured.debs] == [
        ("libc6", "2.36-9+deb12u4", "amd64"),
        ("libgcc-s1", "1:12.2.0-14", "amd64"),
        ("tzdata", "2024a-0+deb12u1", "all"),
    ]
    with pytest.raises(sbom.SbomError, match="printed no JSON"):
        sbom.parse_capture(
            capture_output(None).replace(f"{SECTION}end", "{oops\n### gpuimages:end")
        )


def test_deb_purls_encode_the_version_and_name_the_distro():
    debian = {"ID": "debian", "VERSION_ID": "12"}
    libc = sbom.DebPackage("libc6", "2.36-9+deb12u4", "amd64")
    assert sbom.deb_purl(libc, debian) == (
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
    )
    gcc = sbom.DebPackage("libgcc-s1", "1:12.2.0-14", "amd64")
    ubuntu = {"ID": "ubuntu", "VERSION_ID": "22.04"}
    assert sbom.deb_purl(gcc, ubuntu) == (
        "pkg:deb/ubuntu/libgcc-s1@1%3A12.2.0-14?arch=amd64&distro=ubuntu-22.04"
    )


def test_assembled_document_has_the_image_the_debs_and_no_credentials():
    ref = sbom.ImageRef(CPU, IMAGE, f"127.0.0.1:5000/gpuimages/pytorch:{CPU}", DIGEST)
    bom = sbom.assemble(sbom.parse_capture(capture_output(PYTHON_BOM)), ref)
    assert sbom.problems(bom, torch="2.13.0") == []
    component = bom["metadata"]["component"]
    assert component["type"] == "container" and component["version"] == DIGEST
    assert component["purl"].startswith("pkg:oci/pytorch@sha256%3A1212")
    assert "tag=2.13.0-cpu-runtime" in component["purl"]
    tools = [t["name"] for t in bom["metadata"]["tools"]["components"]]
    assert tools == ["cyclonedx-py", "gpuimages"]
    props = {p["name"]: p["value"] for p in bom["metadata"]["properties"]}
    assert props["gpuimages:variant"] == CPU and props["gpuimages:image-id"] == IMAGE
    assert props["gpuimages:os"] == "Debian GNU/Linux 12 (bookworm)"
    debs = [c for c in bom["components"] if sbom.is_deb(c)]
    assert [c["name"] for c in debs] == ["libc6", "libgcc-s1", "tzdata"]
    text = json.dumps(bom)
    assert "s3cret" not in text and "ci-user" not in text
    assert "https://pypi.corp.example/simple/mylib" in text


def test_without_the_python_part_the_document_stands_on_the_os_packages():
    ref = sbom.ImageRef(CPU, IMAGE)
    note = sbom.python_supported("3.8")
    assert note and "Python 3.8 is older than cyclonedx-bom" in note and ">= 3.9" in note
    assert sbom.python_supported("3.11") is None and sbom.python_supported("3.9") is None
    bom = sbom.assemble(sbom.parse_capture(capture_output(None)), ref, note)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert sbom.problems(bom, torch=None) == []
    props = {p["name"]: p["value"] for p in bom["metadata"]["properties"]}
    assert props["gpuimages:python-components"] == note


@pytest.mark.parametrize(
    ("change", "torch", "words"),
    [
        ({"bomFormat": "SPDX"}, None, "bomFormat is 'SPDX'"),
        ({"specVersion": "2"}, None, "specVersion '2' is not"),
        ({"components": {}}, None, "components is not a list"),
        ({"components": []}, None, "no Debian/Ubuntu package is listed"),
        ({}, "2.12.0", "torch 2.12.0 is not listed (found: 2.13.0+cpu)"),
    ],
)
def test_problems_name_what_is_wrong(change, torch, words):
    bom = sbom.assemble(sbom.parse_capture(capture_output(PYTHON_BOM)), sbom.ImageRef(CPU, IMAGE))
    assert any(words in p for p in sbom.problems({**bom, **change}, torch=torch))


def test_the_tool_runs_isolated_so_its_own_path_is_not_analysed():
    script = sbom.capture_script(with_python=True)
    assert f"{sbom.IMAGE_PYTHON} -I -c" in script and "PYTHONPATH" not in script
    assert f"sys.path.insert(0, '{sbom.TOOL_MOUNT}')" in script
    assert "environment --no-validate" in script and script.rstrip().endswith(f"{SECTION}end'")
    assert "cyclonedx" not in sbom.capture_script(with_python=False)


def test_the_tool_lock_is_pinned_and_matches_pyproject():
    reqs = sbom.tool_requirements()
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", r) for r in reqs)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"cyclonedx-bom=={sbom.tool_version()}"' in pyproject


def test_an_image_without_the_venv_gets_an_sbom_of_its_os_packages():
    out = capture_output(None).replace(f"{SECTION}end", f"{SECTION}no-venv\n{SECTION}end")
    captured = sbom.parse_capture(out)
    assert captured.no_venv and captured.python_bom is None and len(captured.debs) == 3
