"""The release manifest: what a publish run pushed, and what is really inside each image.

Versions are captured INSIDE the image (one short container, no network): Python,
torch, torchvision, CUDA, cuDNN, NCCL, Horovod as the image's own Python reports them,
`pip freeze`, and a `dpkg -l` summary, like docker-stacks' build manifests: the tag says
what the build meant to install, the manifest says what is there. Written as JSON (for
tools) and Markdown (a GitHub release body or `$GITHUB_STEP_SUMMARY`).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import docker

from gpuimages.build.engine import SDK_ERRORS, sdk_message
from gpuimages.core.errors import GpuImagesError
from gpuimages.core.paths import git_revision
from gpuimages.facts.registry_address import Registry
from gpuimages.release.publish import PublishResult
from gpuimages.vet import evidence
from gpuimages.vet.container import tracked

log = logging.getLogger(__name__)

SCHEMA = 1
ABSENT = "absent"
VERSION_KEYS = ("python", "torch", "torchvision", "cuda", "cudnn", "nccl", "horovod")
VERSION_TITLES = {
    "python": "Python",
    "torch": "torch",
    "torchvision": "torchvision",
    "cuda": "CUDA",
    "cudnn": "cuDNN",
    "nccl": "NCCL",
    "horovod": "Horovod",
}
# Debian/Ubuntu packages worth naming in the summary (fnmatch patterns, in this order).
KEY_PACKAGES = (
    "libc6",
    "python3.[0-9]*",
    "libssl3",
    "libssl1.1",
    "openssl",
    "ca-certificates",
    "cuda-cudart-[0-9]*",
    "libcublas-[0-9]*",
    "libcudnn[0-9]",
    "libnccl2",
    "libopenmpi3*",
    "openmpi-bin",
)
CAPTURE_TIMEOUT_S = 300
SECTION = "### gpuimages:"

# Runs inside the image with /bin/sh; python may be missing (then only dpkg is read).
_PROBE = r"""
import json, platform
out = {"python": platform.python_version()}
def attempt(fn):
    try:
        value = fn()
    except Exception:
        return None
    return None if value is None else str(value)
try:
    import torch
except Exception:
    torch = None
if torch is not None:
    out["torch"] = torch.__version__
    out["cuda"] = attempt(lambda: torch.version.cuda)
    out["cudnn"] = attempt(lambda: torch.backends.cudnn.version())
    out["nccl"] = attempt(lambda: ".".join(map(str, torch.cuda.nccl.version())))
for name in ("torchvision", "horovod"):
    try:
        out[name] = str(__import__(name).__version__)
    except Exception:
        pass
print(json.dumps(out))
"""
_FREEZE_FALLBACK = (
    "import importlib.metadata as m; "
    "print('\\n'.join(sorted(d.metadata['Name'] + '==' + d.version for d in m.distributions())))"
)
_PROBE_QUOTED = _PROBE.replace("'", "'\"'\"'")  # for a single-quoted sh word
CAPTURE_SCRIPT = f"""
PY="$(command -v python || command -v python3 || true)"
echo '{SECTION}versions'
if [ -n "$PY" ]; then "$PY" -c '{_PROBE_QUOTED}' 2>/dev/null; fi
echo '{SECTION}pip'
if [ -n "$PY" ]; then
  if "$PY" -m pip --version >/dev/null 2>&1; then
    echo 'source: pip freeze'; "$PY" -m pip freeze --all 2>/dev/null
  else
    echo 'source: importlib.metadata'; "$PY" -c "{_FREEZE_FALLBACK}" 2>/dev/null
  fi
fi
echo '{SECTION}dpkg'
dpkg-query -W -f='${{db:Status-Abbrev}}\\t${{Package}}\\t${{Version}}\\n' 2>/dev/null || true
echo '{SECTION}end'
"""


@dataclass(frozen=True)
class ImageContents:
    """What is inside one image, as captured by running it."""

    versions: dict[str, str]
    pip_freeze: tuple[str, ...] = ()
    pip_source: str = ABSENT
    dpkg_count: int = 0
    key_packages: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "versions": self.versions,
            "pip_freeze": list(self.pip_freeze),
            "pip_source": self.pip_source,
            "dpkg": {"installed": self.dpkg_count, "key_packages": self.key_packages},
            "error": self.error,
        }


def sections(output: str) -> dict[str, list[str]]:
    """A capture script's output, split at its `### gpuimages:NAME` lines (blank lines
    dropped); the SBOM capture (sbom.py) reads its output the same way."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(SECTION):
            current = found.setdefault(line[len(SECTION) :].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return found


def parse_capture(output: str) -> ImageContents:
    """The capture script's output -> ImageContents; anything missing is 'absent'."""
    by_section = sections(output)
    found: dict[str, Any] = {}
    for line in by_section.get("versions", []):
        try:
            found = json.loads(line)
            break
        except ValueError:
            continue
    versions = {
        k: str(found[k]) if found.get(k) not in (None, "") else ABSENT for k in VERSION_KEYS
    }

    pip_lines = by_section.get("pip", [])
    pip_source = ABSENT
    if pip_lines and pip_lines[0].startswith("source: "):
        pip_source = pip_lines[0].removeprefix("source: ")
        pip_lines = pip_lines[1:]

    installed: dict[str, str] = {}
    for line in by_section.get("dpkg", []):
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].startswith("ii"):
            installed[parts[1].split(":")[0]] = parts[2]
    key: dict[str, str] = {}
    for pattern in KEY_PACKAGES:
        for name in sorted(installed):
            if fnmatch.fnmatchcase(name, pattern) and name not in key:
                key[name] = installed[name]
    error = None if "end" in by_section else "the capture script did not finish"
    return ImageContents(versions, tuple(pip_lines), pip_source, len(installed), key, error)


def capture_contents(
    client: docker.DockerClient, image: str, timeout: float = CAPTURE_TIMEOUT_S
) -> ImageContents:
    """Run the capture script in a throwaway container (no network) of image."""
    try:
        with tracked(client, {"io.gpuimages.purpose": "release-manifest"}) as box:
            container = box.start(
                image, ["-c", CAPTURE_SCRIPT], entrypoint=["/bin/sh"], network_disabled=True
            )
            code = box.wait(container, timeout)
            output = box.logs(container, stderr=False)
    except GpuImagesError as exc:
        log.warning("could not capture versions inside %s: %s", image, exc)
        return ImageContents({k: ABSENT for k in VERSION_KEYS}, error=f"capture failed: {exc}")
    contents = parse_capture(output)
    if code != 0 and contents.error is None:
        why = f"did not finish in {timeout:.0f} s" if code is None else f"exited {code}"
        contents = replace(contents, error=f"capture script {why}")
    return contents


def image_created(client: docker.DockerClient, image_id: str) -> str | None:
    """When the image was built (the engine's `Created`), or None when it cannot say."""
    try:
        return client.images.get(image_id).attrs.get("Created") or None
    except SDK_ERRORS as exc:
        log.warning("could not inspect image %s: %s", image_id, sdk_message(exc))
        return None


# ------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class ReleaseManifest:
    created: str
    registry: str
    revision: str | None
    images: tuple[dict[str, Any], ...]

    def counts(self) -> dict[str, int]:
        out = {"published": 0, "refused": 0, "failed": 0}
        for image in self.images:
            out[image["status"]] = out.get(image["status"], 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "registry": self.registry,
            "revision": self.revision,
            "counts": self.counts(),
            "images": list(self.images),
        }


def build_manifest(
    results: Iterable[PublishResult],
    *,
    registry: Registry,
    client: docker.DockerClient | None,
    now: dt.datetime | None = None,
    evidence_key: bytes | None = None,
) -> ReleaseManifest:
    """One entry per image; contents captured for every vetted image (published or not).

    With an evidence key, each published entry is signed (gpuimages/vet/evidence.py).
    """
    images = []
    for result in results:
        entry = result.as_dict()
        if evidence_key and result.status == "published":
            entry["evidence"] = evidence.sign(entry, evidence_key)
        if client is not None and result.status in ("published", "failed") and result.image_id:
            entry["contents"] = capture_contents(client, result.image_id).as_dict()
            entry["image_created"] = image_created(client, result.image_id)
        else:
            entry["contents"] = None
        images.append(entry)
    now = now or dt.datetime.now(dt.timezone.utc)
    created = now.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()
    return ReleaseManifest(created, str(registry), git_revision(), tuple(images))


# ------------------------------------------------------------------------- Markdown


def _cell(value: object) -> str:
    text = "-" if value in (None, "") else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def human_size(size: int | None) -> str:
    if not size:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def _short(digest: str | None) -> str:
    if not digest:
        return "-"
    algo, _, hexpart = digest.partition(":")
    return f"`{algo}:{hexpart[:12]}`"


def _smoke(smoke: Mapping[str, Any] | None) -> str:
    if not smoke or smoke.get("status") is None:
        return "no report"
    return (
        f"{smoke.get('status')}: {smoke.get('passed', 0)} passed, {smoke.get('failed', 0)} "
        f"failed, {smoke.get('skipped', 0)} skipped"
    )


def _size(image: Mapping[str, Any]) -> str:
    size = human_size(image.get("size_bytes"))
    if image.get("compressed_bytes"):
        size += f" ({human_size(image['compressed_bytes'])} compressed)"
    return size


def to_markdown(manifest: ReleaseManifest) -> str:
    """A GitHub-flavoured summary: one table, then per image its versions and pip freeze."""
    counts = manifest.counts()
    revision = f" · revision `{manifest.revision[:12]}`" if manifest.revision else ""
    lines = [
        f"## gpuimages release {manifest.created}",
        "",
        f"Registry `{manifest.registry}`{revision} · {counts['published']} published, "
        f"{counts['refused']} refused, {counts['failed']} failed",
        "",
        "| variant | status | tag | digest | size | smoke |",
        "|---|---|---|---|---|---|",
    ]
    for image in manifest.images:
        tag = image.get("registry_tag") or image.get("local_tag")
        lines.append(
            "| "
            + " | ".join(
                [
                    _cell(image["variant"]["name"]),
                    f"**{_cell(image['status'])}**",
                    f"`{_cell(tag)}`",
                    _short(image.get("digest")),
                    _cell(_size(image)),
                    _cell(_smoke(image.get("smoke"))),
                ]
            )
            + " |"
        )
    not_published = [i for i in manifest.images if i["status"] != "published"]
    if not_published:
        lines += ["", "### Not published", ""]
        for image in not_published:
            lines.append(
                f"- `{image['variant']['name']}` ({image['status']}): {_cell(image['reason'])}"
            )
    for image in manifest.images:
        contents = image.get("contents")
        if not contents:
            continue
        lines += ["", f"### {image['variant']['name']}", ""]
        if image.get("pull"):
            lines += [f"`docker pull {image['pull']}`", ""]
        versions = contents["versions"]
        lines += [
            "| " + " | ".join(VERSION_TITLES[k] for k in VERSION_KEYS) + " |",
            "|" + "---|" * len(VERSION_KEYS),
            "| " + " | ".join(_cell(versions.get(k)) for k in VERSION_KEYS) + " |",
            "",
        ]
        dpkg = contents["dpkg"]
        if dpkg["installed"]:
            key = ", ".join(f"{n} {v}" for n, v in dpkg["key_packages"].items())
            lines.append(
                f"Debian packages: {dpkg['installed']} installed"
                + (f"; {key}" if key else "")
                + "."
            )
        if contents.get("error"):
            lines.append(f"Capture incomplete: {_cell(contents['error'])}.")
        sbom = image.get("sbom") or {}
        if sbom.get("file") or sbom.get("error"):
            lines.append(
                f"SBOM: `{sbom['file']}` ({sbom.get('format')})."
                if sbom.get("file")
                else f"SBOM: none ({_cell(sbom['error'])})."
            )
        freeze = contents["pip_freeze"]
        if freeze:
            lines += [
                "",
                f"<details><summary>{contents['pip_source']} ({len(freeze)} packages)</summary>",
                "",
                "```",
                *freeze,
                "```",
                "",
                "</details>",
            ]
        else:
            lines.append(f"Python packages: {contents['pip_source']}.")
    return "\n".join(lines) + "\n"


def write_manifest(
    manifest: ReleaseManifest, out_dir: Path, *, step_summary: str | None = None
) -> tuple[Path, Path]:
    """out_dir/manifest.json and manifest.md; the Markdown is appended to step_summary too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "manifest.json", out_dir / "manifest.md"
    json_path.write_text(json.dumps(manifest.as_dict(), indent=2) + "\n")
    markdown = to_markdown(manifest)
    md_path.write_text(markdown)
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
        log.info("release summary appended to $GITHUB_STEP_SUMMARY")
    log.info("release manifest: %s", json_path)
    return json_path, md_path
