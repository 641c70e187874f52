"""Evidence that an image digest was smoke-tested: what promotion trusts in a release manifest.

`invoke publish` records, per image, the digest it pushed and verified and the smoke
report of that exact image id. A release manifest travels between CI jobs as an artifact,
so with a key (GPUIMAGES_EVIDENCE_KEY, a CI secret) publish signs each published entry's
claims with HMAC-SHA256, and promotion accepts only entries whose signature holds: a
manifest edited on the way cannot promote an untested digest. The key never enters a
manifest, a log line or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

ENV_EVIDENCE_KEY = "GPUIMAGES_EVIDENCE_KEY"
ALGORITHM = "hmac-sha256"


def evidence_key(env: Mapping[str, str] = os.environ) -> bytes | None:
    """The signing key from the environment; None when unset or empty."""
    key = env.get(ENV_EVIDENCE_KEY) or ""
    return key.encode() if key else None


def claims(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What an entry vouches for: which image, at which digest, tested how."""
    smoke = entry.get("smoke") or {}
    return {
        "variant": (entry.get("variant") or {}).get("name"),
        "status": entry.get("status"),
        "registry_tag": entry.get("registry_tag"),
        "image_id": entry.get("image_id"),
        "digest": entry.get("digest"),
        "smoke": {k: smoke.get(k) for k in ("status", "image_id", "passed", "failed", "skipped")},
    }


def _mac(entry: Mapping[str, Any], key: bytes) -> str:
    canonical = json.dumps(claims(entry), sort_keys=True, separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def sign(entry: Mapping[str, Any], key: bytes) -> dict[str, str]:
    """The `evidence` block publish adds to a published entry."""
    return {"algorithm": ALGORITHM, "signature": _mac(entry, key)}


def refusal(entry: Mapping[str, Any], digest: str, key: bytes | None) -> str | None:
    """Why entry is no evidence that `digest` passed its smoke tests; None when it is."""
    smoke = entry.get("smoke") or {}
    if entry.get("status") != "published":
        reason = " ".join(str(entry.get("reason") or "").split())
        return f"the release manifest records it {entry.get('status')!r}: {reason}"
    if smoke.get("status") != "passed" or smoke.get("failed"):
        return f"its smoke report says {smoke.get('status')!r}, not 'passed'"
    if not smoke.get("image_id") or smoke.get("image_id") != entry.get("image_id"):
        return "its smoke report tested another image id than the one published"
    if (entry.get("digest") or "").lower() != digest.lower():
        return f"the release manifest vouches for {entry.get('digest')}, not {digest}"
    if key is not None:
        block = entry.get("evidence") or {}
        if block.get("algorithm") != ALGORITHM or not block.get("signature"):
            return f"the entry is not signed and {ENV_EVIDENCE_KEY} asks for signed evidence"
        if not hmac.compare_digest(str(block["signature"]), _mac(entry, key)):
            return (
                f"the entry's signature does not hold under {ENV_EVIDENCE_KEY} (edited after "
                "publish, or signed with another key)"
            )
    return None
