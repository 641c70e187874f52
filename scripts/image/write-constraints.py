#!/usr/bin/env python3
"""Writes pip's constraints file for the image: the protected packages, pinned to what
is installed, so that `pip install` of anything else can never swap them.

    write-constraints.py OUT PATTERN [PATTERN ...]     e.g. torch 'nvidia-*'

Run with the venv's Python (standard library only, Python 3.8+); PATTERNs are shell-style
and match normalized distribution names (PEP 503: lower case, '-' for '_' and '.').
The image sets PIP_CONSTRAINT to OUT.
"""

import fnmatch
import re
import sys
from importlib import metadata


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(patterns, dists):
    found = {}
    for dist in dists:
        name = normalize(dist.metadata["Name"] or "")
        if name and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            found[name] = dist.version
    return ["%s==%s" % (name, found[name]) for name in sorted(found)]


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    out, patterns = argv[1], [normalize(p) for p in argv[2:]]
    lines = pins(patterns, metadata.distributions())
    if not any(line.startswith("torch==") for line in lines):
        sys.stderr.write("write-constraints: torch is not installed in this environment\n")
        return 1
    with open(out, "w", encoding="utf-8") as f:
        f.write(
            "# Generated at build time: what this image's torch needs, pinned to what is\n"
            "# installed. pip reads it through PIP_CONSTRAINT; `PIP_CONSTRAINT= pip install ...`\n"
            "# ignores it (and may replace torch with another CUDA build).\n"
        )
        f.write("\n".join(lines) + "\n")
    print("write-constraints: %d pins in %s" % (len(lines), out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
