"""Copy one image by digest from a repository of one registry to another: HTTP API v2 only.

No Docker engine, no pull, no rebuild: every blob the manifest names (config and layers;
for an index, its child manifests' blobs) is already there at the destination, mounted
from the source repository (same registry) or streamed from the source registry (another
one, sha256-checked on the way); then the manifest's bytes are put unchanged, so the
destination serves the same digest. The copy is verified by reading the tag back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from gpuimages.release.registry import (
    PublishError,
    RawManifest,
    RegistryApi,
    RetryPolicy,
    with_retries,
)

log = logging.getLogger(__name__)

INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
# Layers that registries may not serve (Windows base layers): never copied.
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Repository:
    """A repository of one registry, as the API names it ('team/gpuimages/pytorch')."""

    api: RegistryApi
    name: str

    @property
    def where(self) -> str:
        return f"{self.api.registry.host}/{self.name}"

    def scope(self, actions: str = "pull") -> str:
        return f"repository:{self.name}:{actions}"


@dataclass
class CopyStats:
    """What a copy did to each blob; bytes_streamed counts what crossed between registries."""

    present: int = 0
    mounted: int = 0
    streamed: int = 0
    bytes_streamed: int = 0

    @property
    def blobs(self) -> int:
        return self.present + self.mounted + self.streamed

    def as_dict(self) -> dict[str, int]:
        return {
            "blobs_present": self.present,
            "blobs_mounted": self.mounted,
            "blobs_streamed": self.streamed,
            "bytes_streamed": self.bytes_streamed,
        }


class _Sha256Reader:
    """A response body read through sha256, so a corrupt stream is caught on our side too."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        block = self.raw.read(CHUNK if size is None or size < 0 else size)
        self.hash.update(block)
        self.count += len(block)
        return block

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def blob_exists(repo: Repository, digest: str) -> bool:
    status, _, _ = repo.api.request(
        "HEAD", f"/v2/{repo.name}/blobs/{digest}", scope=repo.scope("pull,push")
    )
    if status not in (200, 404):
        raise PublishError(f"HEAD blob {digest} in {repo.where} answered HTTP {status}")
    return status == 200


def _upload_url(repo: Repository, location: str | None) -> str:
    if not location:
        raise PublishError(f"{repo.where} started an upload without a Location")
    return urllib.parse.urljoin(repo.api.registry.url + "/", location)


def _with_digest(url: str, digest: str) -> str:
    return url + ("&" if "?" in url else "?") + "digest=" + urllib.parse.quote(digest, safe="")


def start_upload(repo: Repository, mount_from: Repository | None, digest: str) -> str | None:
    """POST an upload: None when the registry mounted the blob, else the upload URL."""
    query = ""
    if mount_from is not None:
        query = "?" + urllib.parse.urlencode({"mount": digest, "from": mount_from.name})
    status, headers, _ = repo.api.request(
        "POST", f"/v2/{repo.name}/blobs/uploads/{query}", scope=repo.scope("pull,push")
    )
    if status == 201:
        return None
    if status != 202:
        raise PublishError(f"{repo.where} refused to start a blob upload (HTTP {status})")
    return _upload_url(repo, headers.get("Location"))


def stream_blob(source: Repository, dest: Repository, digest: str, size: int, url: str) -> int:
    """GET the blob from source and PUT it to the upload URL in one pass; bytes sent."""
    status, headers, resp = source.api.request(
        "GET", f"/v2/{source.name}/blobs/{digest}", scope=source.scope(), stream=True
    )
    if status != 200:
        raise PublishError(f"{source.where} has no blob {digest} (HTTP {status})")
    with resp:
        length = int(headers.get("Content-Length") or size)
        if size and length != size:
            raise PublishError(
                f"{source.where} serves blob {digest} with {length} bytes; its manifest says {size}"
            )
        reader = _Sha256Reader(resp)
        status, _, body = dest.api.request(
            "PUT",
            _with_digest(url, digest),
            {"Content-Type": "application/octet-stream", "Content-Length": str(length)},
            data=reader,  # type: ignore[arg-type]
            scope=dest.scope("pull,push"),
        )
    if reader.count != length or reader.digest != digest:
        raise PublishError(
            f"blob {digest} from {source.where} arrived as {reader.digest} ({reader.count} "
            "bytes): the source sent something else"
        )
    if status != 201:
        detail = body[:300].decode(errors="replace") if isinstance(body, bytes) else ""
        raise PublishError(f"{dest.where} did not take blob {digest} (HTTP {status}) {detail}")
    return length


def copy_blob(source: Repository, dest: Repository, descriptor: dict[str, Any]) -> str:
    """'present', 'mounted' or 'streamed'."""
    digest, size = descriptor["digest"], int(descriptor.get("size") or 0)
    if blob_exists(dest, digest):
        return "present"
    same = source.api.registry.url == dest.api.registry.url
    url = start_upload(dest, source if same else None, digest)
    if url is None:
        return "mounted"
    stream_blob(source, dest, digest, size, url)
    return "streamed"


def put_manifest(dest: Repository, reference: str, raw: RawManifest) -> str:
    """PUT the manifest's bytes unchanged; the digest the destination computed."""
    status, headers, body = dest.api.request(
        "PUT",
        f"/v2/{dest.name}/manifests/{reference}",
        {"Content-Type": raw.media_type},
        data=raw.body,
        scope=dest.scope("pull,push"),
    )
    if status != 201:
        detail = body[:300].decode(errors="replace") if isinstance(body, bytes) else ""
        raise PublishError(
            f"{dest.where} refused manifest {reference} (HTTP {status}) {' '.join(detail.split())}"
        )
    stored = headers.get("Docker-Content-Digest") or raw.digest
    if stored != raw.digest:
        raise PublishError(
            f"{dest.where} stored manifest {reference} as {stored}, not {raw.digest}"
        )
    return stored


def copy_image(
    source: Repository,
    dest: Repository,
    digest: str,
    tag: str,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> CopyStats:
    """Copy source@digest to dest:tag and read it back; PublishError when anything differs."""
    stats = CopyStats()

    def retried(what: str, action: Callable[[], Any]) -> Any:
        return with_retries(action, policy, what, sleep=sleep)

    def copy_manifest(reference_digest: str, put_as: str) -> None:
        raw = retried(
            f"manifest {source.where}@{reference_digest}",
            lambda: source.api.manifest_bytes(source.name, reference_digest),
        )
        doc = json.loads(raw.body)
        if raw.media_type in INDEX_TYPES or "manifests" in doc:
            for child in doc.get("manifests") or []:
                copy_manifest(child["digest"], child["digest"])
        else:
            for descriptor in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                if not descriptor.get("digest"):
                    continue
                if str(descriptor.get("mediaType", "")).startswith(FOREIGN_LAYER):
                    continue
                how = retried(
                    f"blob {descriptor['digest']} to {dest.where}",
                    lambda d=descriptor: copy_blob(source, dest, d),
                )
                setattr(stats, how, getattr(stats, how) + 1)
                if how == "streamed":
                    stats.bytes_streamed += int(descriptor.get("size") or 0)
                log.debug("%s %s -> %s", how, descriptor["digest"], dest.where)
        retried(f"manifest put to {dest.where}:{put_as}", lambda: put_manifest(dest, put_as, raw))

    copy_manifest(digest, tag)
    served = retried(
        f"manifest lookup of {dest.where}:{tag}", lambda: dest.api.manifest_bytes(dest.name, tag)
    )
    if served.digest != digest:
        raise PublishError(
            f"{dest.where}:{tag} is {served.digest} after the copy, not {digest} (another push "
            "to the same tag?)"
        )
    return stats
