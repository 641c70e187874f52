"""What is really inside an image, read by running it: versions, pip freeze, dpkg.

Versions are captured INSIDE the image (one short container, no network): Python,
torch, torchvision, CUDA, cuDNN, NCCL, Horovod as the image's own Python reports them,
`pip freeze`, and a `dpkg -l` summary, like docker-stacks' build manifests: the tag says
what the build meant to install, this says what is there. The release manifest records
it; the SBOM capture reads its own script's output with `sections`.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import docker

from gpuimages.build.engine import SDK_ERRORS, sdk_message
from gpuimages.core.errors import GpuImagesError
from gpuimages.vet.container import tracked

log = logging.getLogger(__name__)

ABSENT = "absent"
VERSION_KEYS = ("python", "torch", "torchvision", "cuda", "cudnn", "nccl", "horovod")
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
