#!/usr/bin/env bash
# Makes .venv with gpuimages and its dev/test tools. Idempotent; used by the quickstart,
# the test script and CI. Needs Python >= 3.10 (python3) and, on a bare Debian/Ubuntu,
# root to apt-get install python3-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${GPUIMAGES_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    echo "bootstrap: python3 -m venv failed; installing python3-venv" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
fi
stamp="$venv/.gpuimages-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # Progress on stderr: stdout is the venv's path, for the callers' $(...).
  echo "bootstrap: installing gpuimages and its dev tools into $venv ..." >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
# The smoke suite's host tests run the real checks on a CPU torch. Where pip is set up to
# find a CPU wheel (as on this project's CI machines) this is the small CPU build;
# elsewhere add --index-url https://download.pytorch.org/whl/cpu through PIP_INDEX_URL.
# GPUIMAGES_HOST_TORCH=none skips it: the quickstart runs torch only inside its image.
host_torch=${GPUIMAGES_HOST_TORCH:-2.13.0}
torch_stamp="$venv/.gpuimages-host-torch-$host_torch"
if [ "$host_torch" != none ] && [ ! -f "$torch_stamp" ]; then
  echo "bootstrap: installing torch $host_torch for the host smoke tests (about 30 s) ..." >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==$host_torch"
  touch "$torch_stamp"
fi
echo "$venv"
