"""The catalog and the SBOM of a real published image, then `invoke resolve --catalog` on it.

The CPU runtime variant is built under this module's own repository name (a throwaway
matrix that also names a CUDA variant, never built), given a hand-written smoke report
of that exact image id, and published with `invoke publish` to a registry of the
module's own. Everything is removed afterwards: images, registry, release folder.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess

import docker.errors
import jsonschema
import pytest
from referencing import Registry as SchemaRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT7

from gpuimages.facts.matrix import load_matrix
from gpuimages.facts.registry_address import Registry
from gpuimages.release import sbom
from gpuimages.release.registry import RegistryApi

from .conftest import CPU_VARIANT, WORKSPACE, invoke, start_registry, stop_registry
from .test_publish import write_report

REPOSITORY = "gpuimages-test/catalog"
CUDA13 = "2.14.1-cuda13.0-cudnn9-runtime"


@pytest.fixture(scope="module")
def release(docker_cli, client, local_base, wheelhouse, tmp_path_factory):
    """Build, report, publish: (matrix path, image, registry host, release folder)."""
    work = tmp_path_factory.mktemp("catalog")
    matrix = work / "matrix.yaml"
    matrix.write_text(
        f"repository: {REPOSITORY}\n"
        "axes:\n"
        "  - {torch: 2.13.0, cuda: cpu, flavor: runtime, torchvision: none}\n"
        '  - {torch: 2.14.1, cuda: "13.0", os: debian12}\n'
    )
    build_report = work / "build-report.json"
    r = invoke(
        "build", "--matrix", str(matrix), "--variant", CPU_VARIANT, "--local-base",
        "--wheelhouse", str(wheelhouse), "--offline", "--report", str(build_report),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [row] = json.loads(build_report.read_text())["builds"]
    image_id = row["image_id"]
    registry = start_registry(work / "registry")
    folder = None
    try:
        variant = load_matrix(matrix).by_name()[CPU_VARIANT]
        report = write_report(work / "reports", variant, image_id)
        r = invoke(
            "publish", "--matrix", str(matrix), "--variant", CPU_VARIANT,
            "--registry", registry.host, "--report", str(report),
        )  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        found = re.search(r"catalog: (\S+catalog\.json)", r.stdout)
        assert found, r.stdout
        folder = (WORKSPACE / found.group(1)).parent  # the CLI ran in the tests' workspace
        yield matrix, client.images.get(image_id), registry.host, folder
    finally:
        stop_registry(registry)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image_id, force=True)


@pytest.fixture(scope="module")
def catalog(release) -> dict:
    return json.loads((release[3] / "catalog.json").read_text())


@pytest.fixture(scope="module")
def bom(release, catalog) -> dict:
    return json.loads((release[3] / catalog["images"][0]["sbom"]).read_text())


def test_the_catalog_names_the_published_image_and_what_it_is(release, catalog):
    _, image, host, folder = release
    assert catalog["kind"] == "gpuimages-catalog" and catalog["registry"] == host
    [entry] = catalog["images"]
    assert entry["variant"] == CPU_VARIANT and entry["tags"] == [CPU_VARIANT]
    assert entry["repository"] == f"{host}/{REPOSITORY}"
    assert entry["reference"] == f"{host}/{REPOSITORY}:{CPU_VARIANT}"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["digest"])
    assert entry["pull"] == f"{host}/{REPOSITORY}@{entry['digest']}"
    assert entry["image_id"] == image.id
    versions = entry["versions"]
    assert (versions["torch"], versions["cuda"], versions["python"]) == ("2.13.0", "cpu", "3.11")
    assert (versions["os"], versions["flavor"]) == ("debian12", "runtime")
    assert versions["horovod"] is None
    assert entry["found"]["torch"] == "2.13.0+cpu" and entry["found"]["python"].startswith("3.11.")
    assert entry["gpu"] is False and entry["min_driver"] is None and entry["archs"] == []
    assert entry["size_bytes"] == image.attrs["Size"]
    remote = RegistryApi(Registry.parse(host)).manifest(REPOSITORY, CPU_VARIANT)
    assert remote.digest == entry["digest"]
    assert entry["compressed_bytes"] == remote.size_bytes < entry["size_bytes"]
    evidence = entry["evidence"]
    assert evidence["smoke"] == "passed" and (evidence["passed"], evidence["skipped"]) == (4, 2)
    assert evidence["failed"] == 0
    assert entry["built"] == image.attrs["Created"]
    assert entry["sbom"] == f"{CPU_VARIANT}.cdx.json" and (folder / entry["sbom"]).is_file()
    assert entry["sbom_note"] is None

    manifest = json.loads((folder / "manifest.json").read_text())
    [published] = manifest["images"]
    assert published["sbom"]["file"] == entry["sbom"]
    assert published["image_created"] == entry["built"]
    md = (folder / "catalog.md").read_text()
    assert f"| `{entry['reference']}` |" in md and "none (CPU)" in md
    assert f"docker pull {entry['pull']}" in md
    assert f"SBOM: `{entry['sbom']}`" in (folder / "manifest.md").read_text()


def test_the_sbom_lists_torch_from_the_image_and_its_debian_packages(release, catalog, bom):
    _, image, _, _ = release
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert bom["metadata"]["component"]["version"] == catalog["images"][0]["digest"]
    python = {c["name"]: c for c in bom["components"] if sbom.is_pypi(c)}
    assert python["torch"]["version"] == "2.13.0+cpu"
    assert python["torch"]["purl"] == "pkg:pypi/torch@2.13.0%2Bcpu"
    assert "numpy" in python
    # The tool's own packages (bound in read-only) are not part of the analysed venv.
    assert not {"cyclonedx-bom", "cyclonedx-python-lib", "py-serializable"} & set(python)
    debs = {c["name"]: c for c in bom["components"] if sbom.is_deb(c)}
    assert len(debs) > 50 and {"libc6", "python3.11", "dpkg"} <= set(debs)
    assert debs["libc6"]["purl"].startswith("pkg:deb/debian/libc6@")
    assert debs["libc6"]["purl"].endswith("?arch=amd64&distro=debian-12")
    props = {p["name"]: p["value"] for p in bom["metadata"]["properties"]}
    assert props["gpuimages:image-id"] == image.id
    assert props["gpuimages:python-components"].startswith("cyclonedx-py environment")


def test_the_sbom_is_valid_cyclonedx_1_6(bom):
    schemas = sbom.ensure_tool() / "cyclonedx" / "schema" / "_res"
    registry = SchemaRegistry()
    for path in schemas.glob("*.schema.json"):
        resource = Resource.from_contents(
            json.loads(path.read_text()), default_specification=DRAFT7
        )
        registry = registry.with_resource(f"http://cyclonedx.org/schema/{path.name}", resource)
    schema = json.loads((schemas / "bom-1.6.SNAPSHOT.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema, registry=registry)
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(bom)]
    assert errors == []


def test_no_sbom_container_is_left_behind(release, client):
    assert client.containers.list(all=True, filters={"label": "io.gpuimages.purpose=sbom"}) == []


def test_resolve_names_the_published_digest_from_the_catalog(release, catalog):
    matrix, _, _, folder = release
    r = invoke("resolve", "--matrix", str(matrix), "--driver", "none", "--catalog", str(folder),
               "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["best"] == CPU_VARIANT
    assert doc["fits"][0]["published"]["pull"] == catalog["images"][0]["pull"]
    assert doc["others"][0]["variant"] == CUDA13

    # A GPU host: the CUDA variant fits, but it was never published.
    r = invoke("resolve", "--matrix", str(matrix), "--driver", "580.65.06", "--gpu-arch",
               "sm_90", "--catalog", str(folder / "catalog.json"))  # fmt: skip
    assert r.returncode == 1
    assert "not published" in r.stdout and "no published image fits driver 580.65.06" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_sbom_tool_never_enters_the_image(release):
    _, image, _, _ = release
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
         image.id, "-c", "import importlib.util as u; print(u.find_spec('cyclonedx_py'))"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
