#!/bin/bash
# Creates /opt/venv with the given Python (once) and installs exact requirements into it.
# Package sources: PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (build args); a wheelhouse bound at
# /wheelhouse (offline when GPUIMAGES_OFFLINE=1); a CA bundle as the BuildKit secret
# "ca-bundle", read from /run/secrets and never written to a layer.
set -euo pipefail
python=$1
shift

[ -x /opt/venv/bin/python ] || "$python" -m venv /opt/venv

args=(--disable-pip-version-check --no-warn-script-location)
if [ -s /run/secrets/ca-bundle ]; then
  export PIP_CERT=/run/secrets/ca-bundle
fi
if [ "${GPUIMAGES_OFFLINE:-0}" = 1 ]; then
  args+=(--no-index --find-links /wheelhouse)
elif compgen -G '/wheelhouse/*.whl' >/dev/null; then
  args+=(--find-links /wheelhouse)
fi
/opt/venv/bin/python -m pip install "${args[@]}" "$@"
