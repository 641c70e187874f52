"""The release manifest: what a publish run pushed, and what is really inside each image.

What is inside comes from the vet stage (vet/contents.py runs the image to read it): the
tag says what the build meant to install, the manifest says what is there. Written as
JSON (for tools) and Markdown (a GitHub release body or `$GITHUB_STEP_SUMMARY`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from gpuimages.core.paths import git_revision
from gpuimages.facts.registry_address import Registry
from gpuimages.release.markdown import cell, image_size
from gpuimages.release.publish import PublishResult
from gpuimages.vet import evidence
from gpuimages.vet.contents import (
    VERSION_KEYS,
    capture_contents,
    image_created,
)

log = logging.getLogger(__name__)

SCHEMA = 1
VERSION_TITLES = {
    "python": "Python",
    "torch": "torch",
    "torchvision": "torchvision",
    "cuda": "CUDA",
    "cudnn": "cuDNN",
    "nccl": "NCCL",
    "horovod": "Horovod",
}
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
                    cell(image["variant"]["name"]),
                    f"**{cell(image['status'])}**",
                    f"`{cell(tag)}`",
                    _short(image.get("digest")),
                    cell(image_size(image)),
                    cell(_smoke(image.get("smoke"))),
                ]
            )
            + " |"
        )
    not_published = [i for i in manifest.images if i["status"] != "published"]
    if not_published:
        lines += ["", "### Not published", ""]
        for image in not_published:
            lines.append(
                f"- `{image['variant']['name']}` ({image['status']}): {cell(image['reason'])}"
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
            "| " + " | ".join(cell(versions.get(k)) for k in VERSION_KEYS) + " |",
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
            lines.append(f"Capture incomplete: {cell(contents['error'])}.")
        sbom = image.get("sbom") or {}
        if sbom.get("file") or sbom.get("error"):
            lines.append(
                f"SBOM: `{sbom['file']}` ({sbom.get('format')})."
                if sbom.get("file")
                else f"SBOM: none ({cell(sbom['error'])})."
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
