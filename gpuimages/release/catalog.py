"""The catalog of vetted images: catalog.json and catalog.md beside the release manifest.

The release manifest (manifest.py) records everything a publish run did; the catalog is
the part a user choosing an image reads: per published image its tag, repository and
digest, versions, the minimum driver under each policy (from compat.yaml; CPU images need
none), GPU archs, uncompressed and compressed size, the smoke evidence, its SBOM file and
when it was built. It is made from the manifest's own entries, never from a second look
at the images. `invoke resolve --catalog` reads catalogs back (`load_catalog`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuimages.core.errors import UserInputError
from gpuimages.core.reference import shown
from gpuimages.facts.compat import Compat
from gpuimages.facts.registry_address import split_ref
from gpuimages.release.manifest import ReleaseManifest
from gpuimages.release.markdown import cell, image_size
from gpuimages.vet.contents import ABSENT

log = logging.getLogger(__name__)

SCHEMA = 1
KIND = "gpuimages-catalog"
CATALOG_JSON = "catalog.json"
CATALOG_MD = "catalog.md"
VERSION_KEYS = (
    "torch",
    "torchvision",
    "torchaudio",
    "cuda",
    "cudnn",
    "nccl",
    "python",
    "os",
    "flavor",
    "horovod",
    "base",
)


def driver_policies(variant: Mapping[str, Any], compat: Compat) -> dict[str, str | None] | None:
    """Minimum driver per policy (doctor's verdicts); None for a CPU image (no GPU)."""
    if variant.get("cuda") == "cpu":
        return None
    return {
        "supported": variant.get("min_driver"),
        "minor_version_compatibility": variant.get("minor_compat_driver"),
        "container_start": compat.driver_for_cuda(str(variant["cuda"])),
    }


def _found(value: object) -> str | None:
    return None if value in (None, "", ABSENT) else str(value)


def catalog_entry(entry: Mapping[str, Any], compat: Compat, published: str) -> dict[str, Any]:
    """One published release-manifest entry -> its catalog entry."""
    variant = entry["variant"]
    repository, tag = split_ref(entry["registry_tag"])
    inside = (entry.get("contents") or {}).get("versions") or {}
    versions = {k: variant.get(k) for k in VERSION_KEYS}
    versions["nccl"] = _found(inside.get("nccl"))  # the variant has no NCCL key: as found
    smoke = entry.get("smoke") or {}
    sbom = entry.get("sbom") or {}
    return {
        "variant": variant["name"],
        "repository": repository,
        "tags": [tag],
        "reference": entry["registry_tag"],
        "digest": entry["digest"],
        "pull": entry.get("pull") or f"{repository}@{entry['digest']}",
        "image_id": entry.get("image_id"),
        "versions": versions,
        "found": {k: _found(v) for k, v in inside.items()},
        "gpu": variant.get("cuda") != "cpu",
        "min_driver": driver_policies(variant, compat),
        "archs": list(variant.get("archs") or []),
        "size_bytes": entry.get("size_bytes"),
        "compressed_bytes": entry.get("compressed_bytes"),
        "evidence": {
            "smoke": smoke.get("status"),
            "passed": smoke.get("passed", 0),
            "skipped": smoke.get("skipped", 0),
            "failed": smoke.get("failed", 0),
            "report_digest": smoke.get("evidence_digest"),
            "report_signed": bool(smoke.get("signed")),
            "release_signature": (entry.get("evidence") or {}).get("algorithm"),
        },
        "sbom": sbom.get("file"),
        "sbom_note": sbom.get("error") or sbom.get("note"),
        "built": entry.get("image_created"),
        "published": published,
    }


def build_catalog(manifest: ReleaseManifest, compat: Compat) -> dict[str, Any]:
    """The catalog of one release: every image it published, in the manifest's order."""
    images = [
        catalog_entry(e, compat, manifest.created)
        for e in manifest.images
        if e.get("status") == "published" and e.get("digest") and e.get("registry_tag")
    ]
    return {
        "schema": SCHEMA,
        "kind": KIND,
        "created": manifest.created,
        "registry": manifest.registry,
        "revision": manifest.revision,
        "release_manifest": "manifest.json",
        "images": images,
    }


# --- Markdown -------------------------------------------------------------------------------


def _drivers(policies: Mapping[str, str | None] | None) -> str:
    if policies is None:
        return "none (CPU)"
    text = f">= {policies['supported']}"
    if policies.get("minor_version_compatibility"):
        text += f" (minor-version compat. >= {policies['minor_version_compatibility']})"
    return text


def to_markdown(catalog: Mapping[str, Any]) -> str:
    lines = [
        f"## gpuimages catalog {catalog['created']}",
        "",
        f"Registry `{catalog['registry']}` · {len(catalog['images'])} vetted image(s) · "
        f"release manifest: `{catalog['release_manifest']}`",
        "",
        "| tag | digest | torch | CUDA | cuDNN | Python | OS | min driver | archs | size "
        "| smoke | SBOM | built |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for image in catalog["images"]:
        v, ev = image["versions"], image["evidence"]
        size = image_size(image)
        smoke = f"{ev['smoke']}: {ev['passed']} passed, {ev['skipped']} skipped"
        digest = image["digest"]
        cells = [
            f"`{cell(image['reference'])}`",
            f"`{digest.split(':')[0]}:{digest.split(':')[-1][:12]}`",
            cell(v.get("torch")),
            cell(v.get("cuda")),
            cell(v.get("cudnn")),
            cell(v.get("python")),
            cell(v.get("os")),
            cell(_drivers(image.get("min_driver"))),
            cell(" ".join(image.get("archs") or [])),
            cell(size),
            cell(smoke),
            f"`{image['sbom']}`" if image.get("sbom") else "-",
            cell(image.get("built")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [i for i in catalog["images"] if i.get("sbom_note")]
    if notes:
        lines += ["", "### SBOM notes", ""]
        lines += [f"- `{i['variant']}`: {cell(i['sbom_note'])}" for i in notes]
    if catalog["images"]:
        lines += ["", "### Pull by digest", "", "```"]
        lines += [f"docker pull {i['pull']}" for i in catalog["images"]]
        lines.append("```")
    return "\n".join(lines) + "\n"


def write_catalog(catalog: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """out_dir/catalog.json and catalog.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / CATALOG_JSON, out_dir / CATALOG_MD
    json_path.write_text(json.dumps(catalog, indent=2) + "\n")
    md_path.write_text(to_markdown(catalog))
    log.info("catalog: %s", json_path)
    return json_path, md_path


# --- reading catalogs back (invoke resolve --catalog) ----------------------------------------


@dataclass(frozen=True)
class PublishedImage:
    """One catalog entry as `invoke resolve` shows it."""

    variant: str
    reference: str
    digest: str
    pull: str
    published: str
    catalog: Path

    def as_dict(self) -> dict[str, str]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "pull": self.pull,
            "published": self.published,
            "catalog": str(self.catalog),
        }


def _read(path: Path) -> list[PublishedImage]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise UserInputError(f"--catalog {path} cannot be read: {exc.strerror or exc}.") from None
    except ValueError as exc:
        raise UserInputError(f"--catalog {path} is not JSON: {exc}.") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("schema") != SCHEMA:
        raise UserInputError(
            f"--catalog {path} is not a gpuimages catalog (schema {SCHEMA}): use the "
            f"{CATALOG_JSON} `invoke publish` wrote beside its release manifest, or the "
            "folder that holds the releases (reports/release)."
        )
    found = []
    for i, image in enumerate(doc.get("images") or []):
        try:
            found.append(
                PublishedImage(
                    str(image["variant"]),
                    str(image["reference"]),
                    str(image["digest"]),
                    str(image["pull"]),
                    str(doc.get("created") or ""),
                    path,
                )
            )
        except (KeyError, TypeError):
            raise UserInputError(
                f"--catalog {path}: image {i + 1} lacks variant, reference, digest or pull."
            ) from None
    return found


def load_catalog(paths: Iterable[str | Path]) -> dict[str, PublishedImage]:
    """Variant name -> its newest published image, from catalog files or release folders.

    A folder stands for every catalog.json under it (reports/release/<time>/catalog.json).
    """
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(path.rglob(CATALOG_JSON))
            if not found:
                raise UserInputError(
                    f"--catalog {shown(str(given))} holds no {CATALOG_JSON}: publish first "
                    "(`invoke publish`), or name the file."
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserInputError(
                f"--catalog {shown(str(given))} does not exist: name a {CATALOG_JSON} or a "
                "folder of releases (reports/release)."
            )
    newest: dict[str, PublishedImage] = {}
    for path in files:
        for image in _read(path):
            known = newest.get(image.variant)
            if known is None or image.published >= known.published:
                newest[image.variant] = image
    return newest
