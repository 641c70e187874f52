#!/bin/bash
# Creates /opt/venv with the given Python (once) and installs exact requirements into it.
# Package sources: PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (build args) and pip-env.sh.
set -euo pipefail
python=$1
shift
# shellcheck source=scripts/image/pip-env.sh
. "$(dirname "$0")/pip-env.sh"

[ -x /opt/venv/bin/python ] || "$python" -m venv /opt/venv
/opt/venv/bin/python -m pip install "${PIP_ARGS[@]}" --no-warn-script-location "$@"
