#!/bin/bash
# Creates /opt/venv with the given Python (once) and installs exact requirements into it.
# Package sources: PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (build args) and pip-env.sh.
# The venv is group-writable (group 0): the image's user and arbitrary UIDs in group 0
# (OpenShift) can pip-install into it.
set -euo pipefail
umask 0002
python=$1
shift
# shellcheck source=scripts/image/pip-env.sh
. "$(dirname "$0")/pip-env.sh"

[ -x /opt/venv/bin/python ] || "$python" -m venv /opt/venv
/opt/venv/bin/python -m pip install "${PIP_ARGS[@]}" --no-warn-script-location "$@"
# Files a wheel brings with its own modes: group-writable too (only those that are not,
# so files of earlier layers are not copied up again).
find /opt/venv ! -perm -g+w -exec chmod g+w {} +
