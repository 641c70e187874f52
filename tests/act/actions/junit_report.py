"""Count the test cases of JUnit XML files and write them to the job summary.

The act stand-in for mikepenz/action-junit-report (tests/act/README.md). Standard
library only; inputs as INPUT_REPORT_PATHS (a glob) and INPUT_CHECK_NAME.
"""

from __future__ import annotations

import glob
import os
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def outcome(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def count(files: list[Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in files:
        for case in ET.parse(path).getroot().iter("testcase"):
            counts[outcome(case)] += 1
    return counts


def summary(name: str, files: list[Path], counts: Counter[str]) -> str:
    total = sum(counts.values())
    return (
        f"### {name}\n\n"
        "| files | tests | passed | skipped | failed |\n|---|---|---|---|---|\n"
        f"| {len(files)} | {total} | {counts['passed']} | {counts['skipped']} "
        f"| {counts['failed']} |\n"
    )


def main() -> int:
    pattern = os.environ.get("INPUT_REPORT_PATHS", "")
    name = os.environ.get("INPUT_CHECK_NAME") or "JUnit Test Report"
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    if not files:
        print(f"::warning::no JUnit files match {pattern!r}")
    try:
        counts = count(files)
    except ET.ParseError as exc:
        print(f"::error::junit-report (act stand-in): not JUnit XML: {exc}")
        return 1
    text = summary(name, files, counts)
    print(text)
    outputs = {
        "total": sum(counts.values()),
        "passed": counts["passed"],
        "skipped": counts["skipped"],
        "failed": counts["failed"],
    }
    for variable, lines in (
        ("GITHUB_STEP_SUMMARY", [text]),
        ("GITHUB_OUTPUT", [f"{k}={v}\n" for k, v in outputs.items()]),
    ):
        if os.environ.get(variable):
            with open(os.environ[variable], "a", encoding="utf-8") as fh:
                fh.writelines(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
