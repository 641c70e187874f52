"""`SmokeReport`: what `invoke smoke` found about one image id, as one typed value.

smoke.py makes it and writes it (JSON, and JUnit XML beside it for CI test views);
publish.py reads it back through `SmokeReport.read`, which validates and raises one
error type. One path rule (`report_path`) says where a report goes, and `find_report`
finds it again wherever `invoke smoke --report` put it, so a user never needs to know
the file naming.

Not to be confused with the in-image suite's own JSON (scripts/smoke/suite.py, which has
`passed` and no image id): the host wraps that into this report.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from xml.etree import ElementTree as ET

from gpuimages.core.errors import GpuImagesError
from gpuimages.core.paths import SMOKE_REPORTS
from gpuimages.facts.variant import Variant

log = logging.getLogger(__name__)

SCHEMA = 1
CheckStatus = Literal["passed", "failed", "skipped"]
ReportStatus = Literal["passed", "failed"]
CHECK_STATUSES: tuple[str, ...] = get_args(CheckStatus)
REPORT_STATUSES: tuple[str, ...] = get_args(ReportStatus)
EVIDENCE_KEY_ENV = "GPUIMAGES_EVIDENCE_KEY"  # a CI secret: reports are signed and verified
SIGNATURE = "signature"
# Checks every report must carry (not failed); MUST_PASS may not be skipped either.
SUITE_CHECKS = ("gpu", "torch", "cuda", "ddp", "flavor")
MUST_PASS = ("torch", "ddp", "flavor", "labels")


def required_checks(variant: Mapping[str, Any]) -> tuple[str, ...]:
    """The checks a report of this variant must hold for its verdict to count."""
    horovod = variant.get("horovod") not in (None, "none")
    return (*SUITE_CHECKS, *(("horovod_gloo", "horovod_mpi") if horovod else ()), "labels")


def evidence_digest(doc: Mapping[str, Any]) -> str:
    """sha256 of a report's content (its signature left out), as canonical JSON."""
    body = {k: v for k, v in doc.items() if k != SIGNATURE}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def sign(digest: str, key: str) -> str:
    """HMAC-SHA256 of an evidence digest under the CI's evidence key."""
    return "hmac-sha256:" + hmac.new(key.encode(), digest.encode(), hashlib.sha256).hexdigest()


class SmokeReportError(GpuImagesError):
    """A smoke report that is missing or cannot be trusted; `why` completes 'smoke report P'."""

    def __init__(self, path: Path | str, why: str, *, missing: bool = False) -> None:
        super().__init__(f"smoke report {path} {why}")
        self.path, self.why, self.missing = Path(path), why, missing


@dataclass(frozen=True)
class SmokeCheck:
    """One check of the suite (or of the host: labels, multi-node)."""

    name: str
    status: CheckStatus
    reason: str = ""
    duration_s: float = 0.0
    figures: Mapping[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    nccl_debug_log: str | None = None  # a failed GPU DDP check, rerun with NCCL_DEBUG=INFO

    @classmethod
    def from_dict(cls, doc: Any, where: str = "a check") -> SmokeCheck:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("name"), str):
            raise ValueError(f"has {where} without a name")
        if doc.get("status") not in CHECK_STATUSES:
            raise ValueError(f"has check {doc['name']!r} with status {doc.get('status')!r}")
        return cls(
            name=doc["name"],
            status=doc["status"],
            reason=str(doc.get("reason") or ""),
            duration_s=float(doc.get("duration_s") or 0.0),
            figures=dict(doc.get("figures") or {}),
            log_tail=str(doc.get("log_tail") or ""),
            nccl_debug_log=doc.get("nccl_debug_log"),
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "duration_s": self.duration_s,
            "figures": dict(self.figures),
            "log_tail": self.log_tail,
        }
        if self.nccl_debug_log is not None:
            out["nccl_debug_log"] = self.nccl_debug_log
        return out


@dataclass(frozen=True)
class SmokeReport:
    """Every check run against one image id, and the verdict publish trusts."""

    variant: Mapping[str, Any]  # Variant.as_dict() of the variant tested
    image_id: str
    status: ReportStatus
    checks: tuple[SmokeCheck, ...]
    tag: str = ""
    created: str = ""
    duration_s: float = 0.0
    host: Mapping[str, Any] = field(default_factory=dict)
    found: Mapping[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA
    digest: str = ""  # evidence_digest of the document as read (or as written)
    signature: str | None = None  # sign(digest, key) when GPUIMAGES_EVIDENCE_KEY was set

    @property
    def derived_status(self) -> ReportStatus:
        """The verdict the checks give, whatever the `status` field says."""
        return "failed" if self.failed_checks else "passed"

    def missing_checks(self) -> list[str]:
        """Required checks absent from the report, or skipped where they must pass."""
        missing = []
        for name in required_checks(self.variant):
            check = self.check(name)
            if check is None or (name in MUST_PASS and check.status != "passed"):
                missing.append(name)
        return missing

    def signed_by(self, key: str) -> bool:
        return bool(self.signature) and hmac.compare_digest(
            str(self.signature), sign(self.digest, key)
        )

    @property
    def variant_name(self) -> str:
        return str(self.variant.get("name"))

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "failed"]

    def counts(self) -> dict[str, int]:
        """How many checks passed, failed, were skipped."""
        counts = dict.fromkeys(CHECK_STATUSES, 0)
        for check in self.checks:
            counts[check.status] += 1
        return counts

    def check(self, name: str) -> SmokeCheck | None:
        return next((c for c in self.checks if c.name == name), None)

    @classmethod
    def from_dict(cls, doc: Any) -> SmokeReport:
        """Validate a parsed report; ValueError says what is wrong ('has schema 2; ...')."""
        if not isinstance(doc, Mapping):
            raise ValueError("is not a JSON object")
        if "passed" in doc and "status" not in doc and "image_id" not in doc:
            raise ValueError(
                "is the in-image suite's output, not a report of `invoke smoke` (which adds "
                "the variant and the image id tested)"
            )
        if doc.get("schema") != SCHEMA:
            raise ValueError(
                f"has schema {doc.get('schema')!r}; this gpuimages reads schema {SCHEMA}"
            )
        variant = doc.get("variant")
        if not isinstance(variant, Mapping) or not isinstance(variant.get("name"), str):
            raise ValueError("names no variant")
        if doc.get("status") not in REPORT_STATUSES:
            raise ValueError(f"has status {doc.get('status')!r}, not 'passed' or 'failed'")
        if not isinstance(doc.get("image_id"), str) or not doc["image_id"]:
            raise ValueError("names no image id")
        checks = doc.get("checks")
        if not isinstance(checks, list):
            raise ValueError("has no list of checks")
        return cls(
            variant=dict(variant),
            image_id=doc["image_id"],
            status=doc["status"],
            checks=tuple(SmokeCheck.from_dict(c, f"check #{i}") for i, c in enumerate(checks)),
            tag=str(doc.get("tag") or variant.get("tag") or ""),
            created=str(doc.get("created") or ""),
            duration_s=float(doc.get("duration_s") or 0.0),
            host=dict(doc.get("host") or {}),
            found=dict(doc.get("found") or {}),
            digest=evidence_digest(doc),
            signature=doc.get(SIGNATURE) if isinstance(doc.get(SIGNATURE), str) else None,
        )

    @classmethod
    def read(cls, path: Path) -> SmokeReport:
        """The report at path, validated; SmokeReportError (missing=True if absent)."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SmokeReportError(path, "does not exist", missing=True) from None
        except OSError as exc:
            raise SmokeReportError(path, f"cannot be read ({exc.strerror})") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            why = f"is not valid JSON ({exc.msg} at line {exc.lineno})"
            raise SmokeReportError(path, why) from None
        try:
            return cls.from_dict(doc)
        except ValueError as exc:
            raise SmokeReportError(path, str(exc)) from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "variant": dict(self.variant),
            "tag": self.tag,
            "image_id": self.image_id,
            "status": self.status,
            "failed_checks": self.failed_checks,
            "created": self.created,
            "duration_s": self.duration_s,
            "host": dict(self.host),
            "checks": [c.as_dict() for c in self.checks],
            "found": dict(self.found),
        }

    def junit(self) -> ET.ElementTree:
        """The checks as a JUnit <testsuite> (failures with their log tail, figures as out)."""
        counts = self.counts()
        suite = ET.Element(
            "testsuite",
            name=f"smoke.{self.variant_name}",
            tests=str(len(self.checks)),
            failures=str(counts["failed"]),
            skipped=str(counts["skipped"]),
            time=f"{self.duration_s:.2f}",
        )
        for check in self.checks:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"smoke.{self.variant_name}",
                name=check.name,
                time=f"{check.duration_s:.2f}",
            )
            if check.status == "failed":
                failure = ET.SubElement(case, "failure", message=check.reason[:500])
                failure.text = check.log_tail
            elif check.status == "skipped":
                ET.SubElement(case, "skipped", message=check.reason[:500])
            if check.figures:
                out = ET.SubElement(case, "system-out")
                out.text = json.dumps(dict(check.figures), sort_keys=True)
        return ET.ElementTree(suite)

    def write(self, path: Path, key: str | None = None) -> tuple[Path, Path]:
        """The JSON report at path and its JUnit XML beside it (same stem); signed with
        `key` (default: $GPUIMAGES_EVIDENCE_KEY) when there is one."""
        key = key if key is not None else os.environ.get(EVIDENCE_KEY_ENV)
        doc = self.as_dict()
        if key:
            doc[SIGNATURE] = sign(evidence_digest(doc), key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        junit = path.with_suffix(".xml")
        self.junit().write(junit, encoding="utf-8", xml_declaration=True)
        return path, junit


def report_path(variant: Variant, given: str | Path | None = None, count: int = 1) -> Path:
    """Where a variant's report goes: --report FILE for one image, else DIR/<name>.json.

    Default DIR is reports/smoke/; a path without a suffix, an existing folder, or any
    path when several images are tested is a folder.
    """
    if given is None:
        return SMOKE_REPORTS / f"{variant.name}.json"
    path = Path(given)
    if count == 1 and path.suffix and not path.is_dir():
        return path
    return path / f"{variant.name}.json"


def find_report(variant: Variant, given: str | Path | None = None, count: int = 1) -> Path:
    """Where `invoke smoke --report` put this variant's report, under the same rule.

    In a folder, <name>.json first, else the newest report there that names this variant
    (e.g. `--report out/smoke.json` then `publish --reports out`); else <name>.json, for
    the refusal to name.
    """
    expected = report_path(variant, given, count)
    folder = expected.parent
    if expected.exists() or expected.name != f"{variant.name}.json" or not folder.is_dir():
        return expected
    found: list[tuple[str, float, Path]] = []
    for candidate in sorted(folder.glob("*.json")):
        try:
            report = SmokeReport.read(candidate)
        except SmokeReportError as exc:
            log.debug("skipping %s", exc)
            continue
        if report.variant_name == variant.name:
            found.append((report.created, candidate.stat().st_mtime, candidate))
    return max(found)[2] if found else expected
