"""An SBOM per published image: CycloneDX JSON of its Python environment and OS packages.

The Python side is cyclonedx-bom's own `cyclonedx-py environment`, run INSIDE a throwaway
container of the image (no network, entrypoint bypassed, removed afterwards) against the
image's venv (/opt/venv/bin/python). The tool is not installed into the image: it is
pip-installed on the host, as the pure-Python wheels pinned in data/sbom-tool.txt, into
build/sbom-tool/<key>/ and bound read-only into the container. It runs under `python -I`
with its folder put on sys.path by a one-line bootstrap, so no PYTHONPATH reaches the
interpreter it asks for the analysed sys.path: the tool's own packages are not listed.

The same container lists the Debian/Ubuntu packages (`dpkg-query -W`) and reads
/etc/os-release; they become components with purls
`pkg:deb/<debian|ubuntu>/<name>@<version>?arch=<arch>&distro=<id>-<version id>`. The
document is checked on the host (format, spec version, torch at the variant's version,
OS packages present) and any URL's user:password@ part is dropped before it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import docker
from packaging.version import InvalidVersion, Version

from gpuimages import __version__
from gpuimages.core.errors import GpuImagesError
from gpuimages.core.paths import WORK_DIR
from gpuimages.core.runner import run
from gpuimages.vet.container import tracked
from gpuimages.vet.contents import SECTION, sections

log = logging.getLogger(__name__)

TOOL_LOCK = "sbom-tool.txt"
TOOL_CACHE = WORK_DIR / "sbom-tool"
TOOL_MOUNT = "/opt/gpuimages-sbom-tool"
TOOL_MIN_PYTHON = "3.9"  # cyclonedx-bom 7.5.0: Requires-Python >=3.9,<4
IMAGE_PYTHON = "/opt/venv/bin/python"
SPEC_VERSION = "1.6"
SBOM_SUFFIX = ".cdx.json"
RUN_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 600

_BOOTSTRAP = (
    f"import sys; sys.path.insert(0, {TOOL_MOUNT!r}); "
    "from cyclonedx_py._internal.cli import run; sys.exit(run(argv=sys.argv[1:]))"
)
_TOOL_ARGS = (
    "environment",
    "--no-validate",  # validation needs compiled extras; checked on the host instead
    "--output-format",
    "JSON",
    "--spec-version",
    SPEC_VERSION,
    "--output-reproducible",
    IMAGE_PYTHON,
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"']+@")


class SbomError(GpuImagesError):
    """The SBOM of an image could not be made or is not a sound CycloneDX document."""


# --- the tool, on the host ---------------------------------------------------------------


def tool_lock() -> str:
    return (resources.files("gpuimages") / "data" / TOOL_LOCK).read_text()


def tool_requirements(lock: str | None = None) -> tuple[str, ...]:
    lines = (line.split("#")[0].strip() for line in (lock or tool_lock()).splitlines())
    return tuple(line for line in lines if line)


def tool_version(lock: str | None = None) -> str:
    """The pinned cyclonedx-bom version ('7.5.0')."""
    for req in tool_requirements(lock):
        name, _, version = req.partition("==")
        if name.strip().lower() == "cyclonedx-bom":
            return version.strip()
    raise SbomError(f"gpuimages/data/{TOOL_LOCK} pins no cyclonedx-bom")


def ensure_tool(cache: Path = TOOL_CACHE) -> Path:
    """The tool's folder, installed once per lock content (pip --target, pure wheels)."""
    lock = tool_lock()
    key = hashlib.sha256(lock.encode()).hexdigest()[:12]
    dest = cache / f"cyclonedx-bom-{tool_version(lock)}-{key}"
    if (dest / ".complete").is_file():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{dest.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    requirements = cache / f".{dest.name}.txt"
    requirements.write_text(lock)
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(staging),
        "--no-deps",
        "--no-compile",
        "--only-binary=:all:",
        "--platform",
        "any",
        "--implementation",
        "py",
        "--abi",
        "none",
        "--python-version",
        TOOL_MIN_PYTHON,
        "-r",
        str(requirements),
    ]
    try:
        run(
            argv,
            what=f"installing cyclonedx-bom {tool_version(lock)} for the SBOMs",
            timeout=INSTALL_TIMEOUT_S,
            log_path=cache / f"{dest.name}.log",
        )
    except GpuImagesError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SbomError(
            f"could not install the SBOM tool (pip install --target {staging}): {exc}"
        ) from None
    for path in [staging, *staging.rglob("*")]:  # readable by the image's own user
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    (dest / ".complete").write_text(lock)
    return dest


def python_supported(python: str) -> str | None:
    """None when the tool runs on this Python; else why not, in one sentence."""
    try:
        ok = Version(python) >= Version(TOOL_MIN_PYTHON)
    except InvalidVersion:
        ok = False
    if ok:
        return None
    return (
        f"Python packages are not listed: the image's Python {python} is older than "
        f"cyclonedx-bom {tool_version()} runs on (>= {TOOL_MIN_PYTHON}); the release "
        "manifest's pip freeze names them"
    )


# --- inside the image --------------------------------------------------------------------


def capture_script(with_python: bool) -> str:
    """/bin/sh script: os-release, dpkg packages, and (optionally) the tool's JSON."""
    tool = " ".join(["-I", "-c", f'"{_BOOTSTRAP}"', *_TOOL_ARGS])
    python = (
        f"if [ -x {IMAGE_PYTHON} ]; then {IMAGE_PYTHON} {tool}; else echo '{SECTION}no-venv'; fi"
        if with_python
        else ":"
    )
    fmt = "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n"
    return "\n".join(
        [
            f"echo '{SECTION}os-release'",
            "cat /etc/os-release 2>/dev/null || true",
            f"echo '{SECTION}dpkg'",
            f"dpkg-query -W -f='{fmt}' 2>/dev/null || true",
            f"echo '{SECTION}python'",
            python,
            "echo",  # the tool's JSON ends without a newline
            f"echo '{SECTION}end'",
        ]
    )


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class Captured:
    os_release: dict[str, str]
    debs: tuple[DebPackage, ...]
    python_bom: dict[str, Any] | None
    complete: bool
    no_venv: bool = False  # the image has no /opt/venv/bin/python to analyse


def parse_os_release(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def parse_dpkg(lines: list[str]) -> tuple[DebPackage, ...]:
    """Installed packages ('ii') from `dpkg-query -W -f=status\\tname\\tversion\\tarch`."""
    found = {}
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 4 and parts[0].startswith("ii"):
            name = parts[1].split(":")[0]
            found[(name, parts[3])] = DebPackage(name, parts[2], parts[3])
    return tuple(found[k] for k in sorted(found))


def parse_capture(output: str) -> Captured:
    parts = sections(output)
    python_bom = None
    text = "\n".join(parts.get("python", []))
    if text.strip():
        try:
            python_bom = json.loads(text)
        except ValueError as exc:
            raise SbomError(f"cyclonedx-py printed no JSON document ({exc})") from None
    return Captured(
        parse_os_release(parts.get("os-release", [])),
        parse_dpkg(parts.get("dpkg", [])),
        python_bom,
        "end" in parts,
        "no-venv" in parts,
    )


def capture(
    client: docker.DockerClient,
    image: str,
    tool: Path | None,
    timeout: float = RUN_TIMEOUT_S,
) -> Captured:
    """Run the capture script in a throwaway container of image (no network, tool ro)."""
    volumes = {str(tool.resolve()): {"bind": TOOL_MOUNT, "mode": "ro"}} if tool else {}
    with tracked(client, {"io.gpuimages.purpose": "sbom"}) as box:
        container = box.start(
            image,
            ["-c", capture_script(with_python=tool is not None)],
            entrypoint=["/bin/sh"],
            network_disabled=True,
            volumes=volumes,
        )
        code = box.wait(container, timeout)
        out = box.logs(container, stderr=False)
        err = box.logs(container, stdout=False)
    if code != 0:
        why = f"did not finish in {timeout:.0f} s" if code is None else f"exited {code}"
        tail = "\n".join(err.strip().splitlines()[-8:])
        raise SbomError(f"the SBOM capture in {image} {why}: {tail}")
    captured = parse_capture(out)
    if not captured.complete:
        raise SbomError(f"the SBOM capture in {image} did not finish its script")
    if tool is not None and captured.python_bom is None and not captured.no_venv:
        tail = "\n".join(err.strip().splitlines()[-8:])
        raise SbomError(f"cyclonedx-py printed nothing in {image}: {tail}")
    return captured


# --- the document ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """What the SBOM describes: a variant's image, as published."""

    variant: str
    image_id: str
    reference: str | None = None  # host/repo:tag
    digest: str | None = None


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def deb_purl(pkg: DebPackage, os_release: Mapping[str, str]) -> str:
    """pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12 (purl spec)."""
    distro_id = (os_release.get("ID") or "debian").lower()
    qualifiers = [f"arch={_quote(pkg.arch)}"]
    if os_release.get("VERSION_ID"):
        qualifiers.append(f"distro={_quote(distro_id + '-' + os_release['VERSION_ID'])}")
    return f"pkg:deb/{distro_id}/{_quote(pkg.name)}@{_quote(pkg.version)}?{'&'.join(qualifiers)}"


def deb_components(
    debs: tuple[DebPackage, ...], os_release: Mapping[str, str]
) -> list[dict[str, Any]]:
    distro = os_release.get("PRETTY_NAME") or os_release.get("ID") or "unknown"
    return [
        {
            "bom-ref": deb_purl(p, os_release),
            "type": "library",
            "name": p.name,
            "version": p.version,
            "purl": deb_purl(p, os_release),
            "properties": [
                {"name": "gpuimages:package-manager", "value": "dpkg"},
                {"name": "gpuimages:distro", "value": distro},
            ],
        }
        for p in debs
    ]


def image_component(ref: ImageRef) -> dict[str, Any]:
    component: dict[str, Any] = {
        "bom-ref": f"image:{ref.variant}",
        "type": "container",
        "name": ref.reference.rsplit(":", 1)[0] if ref.reference else ref.variant,
        "version": ref.digest or ref.image_id,
    }
    if ref.reference and ref.digest:
        repo, tag = ref.reference.rsplit(":", 1)
        component["purl"] = (
            f"pkg:oci/{_quote(repo.rsplit('/', 1)[-1].lower())}@{_quote(ref.digest)}"
            f"?repository_url={_quote(repo)}&tag={_quote(tag)}"
        )
    return component


def scrub(value: Any) -> Any:
    """Every string with a URL's user:password@ part removed (no credentials in an SBOM)."""
    if isinstance(value, str):
        return _USERINFO.sub(r"\1", value)
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    return value


def assemble(captured: Captured, ref: ImageRef, python_note: str | None = None) -> dict[str, Any]:
    """One CycloneDX document: the tool's Python BOM plus the image and its OS packages."""
    bom = dict(captured.python_bom or {})
    bom.setdefault("$schema", f"http://cyclonedx.org/schema/bom-{SPEC_VERSION}.schema.json")
    bom.setdefault("bomFormat", "CycloneDX")
    bom.setdefault("specVersion", SPEC_VERSION)
    bom.setdefault("version", 1)
    metadata = dict(bom.get("metadata") or {})
    tools = dict(metadata.get("tools") or {})
    tools["components"] = [
        *(tools.get("components") or []),
        {"type": "application", "name": "gpuimages", "version": __version__},
    ]
    metadata["tools"] = tools
    metadata["component"] = image_component(ref)
    python = (
        f"cyclonedx-py environment {IMAGE_PYTHON} (cyclonedx-bom {tool_version()})"
        if captured.python_bom is not None
        else (python_note or "not listed")
    )
    metadata["properties"] = [
        *(metadata.get("properties") or []),
        {"name": "gpuimages:variant", "value": ref.variant},
        {"name": "gpuimages:image-id", "value": ref.image_id},
        {"name": "gpuimages:python-components", "value": python},
        {"name": "gpuimages:os", "value": captured.os_release.get("PRETTY_NAME", "unknown")},
    ]
    bom["metadata"] = metadata
    bom["components"] = [
        *(bom.get("components") or []),
        *deb_components(captured.debs, captured.os_release),
    ]
    bom.setdefault("dependencies", [])
    return scrub(bom)


def is_deb(component: Mapping[str, Any]) -> bool:
    return str(component.get("purl", "")).startswith("pkg:deb/")


def is_pypi(component: Mapping[str, Any]) -> bool:
    return str(component.get("purl", "")).startswith("pkg:pypi/")


def problems(bom: Mapping[str, Any], *, torch: str | None) -> list[str]:
    """What makes the document unsound; torch: the version that must be listed, if any."""
    found = []
    if bom.get("bomFormat") != "CycloneDX":
        found.append(f"bomFormat is {bom.get('bomFormat')!r}, not 'CycloneDX'")
    if not re.fullmatch(r"1\.[0-9]+", str(bom.get("specVersion", ""))):
        found.append(f"specVersion {bom.get('specVersion')!r} is not a CycloneDX 1.x version")
    components = bom.get("components")
    if not isinstance(components, list):
        return [*found, "components is not a list"]
    refs = [c.get("bom-ref") for c in components if c.get("bom-ref")]
    if len(refs) != len(set(refs)):
        found.append("two components share a bom-ref")
    unnamed = [c for c in components if not c.get("name") or not c.get("type")]
    if unnamed:
        found.append(f"{len(unnamed)} component(s) without a name or type")
    if not any(is_deb(c) for c in components):
        found.append("no Debian/Ubuntu package is listed")
    if torch is not None:
        listed = [c.get("version", "") for c in components if c.get("name") == "torch"]
        if not any(v == torch or v.startswith(f"{torch}+") for v in listed):
            found.append(f"torch {torch} is not listed (found: {', '.join(listed) or 'none'})")
    if _USERINFO.search(json.dumps(bom)):
        found.append("a URL carries user:password@")
    return found


# --- one image -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SbomOutcome:
    variant: str
    path: Path | None
    python_components: int = 0
    deb_components: int = 0
    note: str | None = None  # e.g. Python too old for the tool: OS packages only
    error: str | None = None  # no SBOM was written

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.path.name if self.path else None,
            "format": f"CycloneDX {SPEC_VERSION} JSON",
            "tool": f"cyclonedx-bom {tool_version()}",
            "components": {"python": self.python_components, "deb": self.deb_components},
            "note": self.note,
            "error": self.error,
        }


def sbom_name(variant: str) -> str:
    return f"{variant}{SBOM_SUFFIX}"


def write_sbom(
    client: docker.DockerClient,
    ref: ImageRef,
    *,
    python: str,
    torch: str | None,
    out_dir: Path,
    tool: Path | None = None,
) -> SbomOutcome:
    """Capture, assemble, check and write <out_dir>/<variant>.cdx.json; SbomError if not."""
    note = python_supported(python)
    if note is None and tool is None:
        tool = ensure_tool()
    captured = capture(client, ref.image_id, None if note else tool)
    if captured.no_venv:
        note = f"Python packages are not listed: the image has no {IMAGE_PYTHON}"
    bom = assemble(captured, ref, note)
    wrong = problems(bom, torch=None if note else torch)
    if wrong:
        raise SbomError(f"the SBOM of {ref.variant} is not sound: {'; '.join(wrong)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / sbom_name(ref.variant)
    path.write_text(json.dumps(bom, indent=2, sort_keys=True) + "\n")
    components = bom["components"]
    log.info("SBOM of %s: %s (%d components)", ref.variant, path, len(components))
    return SbomOutcome(
        ref.variant,
        path,
        python_components=sum(1 for c in components if is_pypi(c)),
        deb_components=sum(1 for c in components if is_deb(c)),
        note=note,
    )


def try_write_sbom(client: docker.DockerClient, ref: ImageRef, **kw: Any) -> SbomOutcome:
    """write_sbom, its failure recorded (with the reason) instead of raised: the images
    are already pushed when SBOMs are made, so a missing SBOM must not hide them."""
    try:
        return write_sbom(client, ref, **kw)
    except GpuImagesError as exc:
        log.warning("no SBOM for %s: %s", ref.variant, exc)
        with contextlib.suppress(OSError):
            (kw["out_dir"] / sbom_name(ref.variant)).unlink()
        return SbomOutcome(ref.variant, None, error=str(exc))
