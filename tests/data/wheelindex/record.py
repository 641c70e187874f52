"""Re-record the PyPI excerpts in this folder from the live sources (see README.md).

    python tests/data/wheelindex/record.py

Writes pypi/torch/json, pypi-simple-torch.html and metadata/*.metadata. Each is cut to
what the tests read; the README says how. download.pytorch.org is not reachable from the
machines this project is developed on, so the index pages here are not recorded but
constructed (README).
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from gpuimages.facts.compatsync import fetch_wheel_metadata  # noqa: E402

PYPI_JSON = "https://pypi.org/pypi/torch/json"
PYPI_SIMPLE = "https://pypi.org/simple/torch/"
JSON_RELEASES = ("2.14.0", "2.14.1", "2.15.0")
SIMPLE_FILES = re.compile(r"torch-2\.1[45]\.0-cp31[12]-cp31[12]-manylinux_2_28_x86_64\.whl")
METADATA_OF = (  # one wheel per way a torch wheel names its CUDA
    "torch-1.13.1-cp311-cp311-manylinux1_x86_64.whl",  # nvidia-cuda-runtime-cu11 (==11.7.99)
    "torch-2.5.1-cp313-cp313-manylinux1_x86_64.whl",  # nvidia-cuda-runtime-cu12 (==12.4.127)
    "torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl",  # cuda-toolkit[...]==13.2.2
)


def get(url: str, accept: str | None = None) -> str:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.read().decode("utf-8")


def linux_x86_64(name: str) -> bool:
    return "linux" in name and name.endswith("x86_64.whl")


def record_json(data: dict) -> None:
    keep = ("filename", "requires_python", "upload_time", "url")
    releases = {
        v: [{k: f[k] for k in keep} for f in data["releases"][v] if linux_x86_64(f["filename"])]
        for v in JSON_RELEASES
    }
    out = {"info": {"name": data["info"]["name"]}, "releases": releases}
    path = HERE / "pypi" / "torch" / "json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


def record_simple() -> None:
    page = get(PYPI_SIMPLE, accept="text/html")
    anchors = [a for a in re.findall(r"<a [^>]*>[^<]*</a>", page) if SIMPLE_FILES.search(a)]
    head = "<!DOCTYPE html>\n<html>\n<head><title>Links for torch</title></head>\n<body>\n"
    body = "<h1>Links for torch</h1>\n" + "".join(f"{a}<br/>\n" for a in anchors)
    (HERE / "pypi-simple-torch.html").write_text(head + body + "</body>\n</html>\n")


def record_metadata(data: dict) -> None:
    urls = {f["filename"]: f["url"] for files in data["releases"].values() for f in files}
    folder = HERE / "metadata"
    folder.mkdir(exist_ok=True)
    for name in METADATA_OF:
        text = fetch_wheel_metadata(urllib.parse.urljoin(PYPI_JSON, urls[name]))
        headers = text.split("\n\n", 1)[0]  # the long description after it is cut
        (folder / f"{name}.metadata").write_text(headers + "\n", encoding="utf-8")


if __name__ == "__main__":
    pypi = json.loads(get(PYPI_JSON))
    record_json(pypi)
    record_simple()
    record_metadata(pypi)
