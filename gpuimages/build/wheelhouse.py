"""A wheelhouse for offline builds: `pip download` of exactly what a variant installs.

Made on the host (which may reach an index through a proxy or a mirror) and bound into
the build, so the build itself needs no index, no proxy and no CA bundle.
"""

from __future__ import annotations

import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

from gpuimages.core.runner import run
from gpuimages.facts.variant import Variant

log = logging.getLogger(__name__)

# pip matches manylinux tags exactly, so every tag up to the glibc the images need is
# listed (the CUDA wheels use many: nccl 2_18, cusparse 2_17, cupti 2_25, cudnn 2_27, ...).
# glibc 2.28 is torch >= 2.7's own floor (manylinux_2_28); the OS images have newer.
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether an index answers at all (pip would otherwise retry it for every package)."""
    try:
        with urllib.request.urlopen(url + "/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError, ValueError):
        return False


def download(variant: Variant, dest: Path, *, log_dir: Path | None = None) -> Path:
    """Fill dest with the wheels (and Horovod's sdist) the variant's build installs."""
    dest.mkdir(parents=True, exist_ok=True)
    log_path = (log_dir or dest) / f"wheelhouse-{variant.name}.log"
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
    ]
    target = ["--only-binary=:all:", "--python-version", variant.python, "--implementation", "cp"]
    for platform in PLATFORMS:
        target += ["--platform", platform]
    index: list[str] = ["--extra-index-url", variant.index_url]
    if not reachable(variant.index_url):
        log.warning(
            "PyTorch's wheel index %s does not answer; using only pip's configured indexes "
            "and find-links (they must hold %s)",
            variant.index_url,
            variant.pip_pins[0],
        )
        index = []
    # A standalone Python is installed by the pinned uv (a py3-none wheel); its CPython
    # archive is not on any package index: docs/python.md says where to mirror it from.
    uv = (f"uv=={variant.uv}",) if variant.uv else ()
    run(
        [*base, *target, *index, *variant.requirements, *uv],
        log_path=log_path,
        what=f"pip download for {variant.name}",
    )
    if variant.horovod:
        # Horovod ships no wheels: its sdist is compiled in the image's builder stage.
        run(
            [*base, "--no-deps", "--no-binary", "horovod", f"horovod=={variant.horovod}"],
            log_path=log_path.with_suffix(".horovod.log"),
            what="pip download of Horovod",
        )
    log.info("wheelhouse %s: %d files", dest, sum(1 for _ in dest.iterdir()))
    return dest
