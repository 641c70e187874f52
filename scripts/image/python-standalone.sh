#!/bin/bash
# Installs CPython PYTHON (major.minor) from python-build-standalone into /opt/python with
# uv UV_VERSION, and makes /opt/venv from it (pip-install.sh then fills the venv).
#   python-standalone.sh 3.14 0.13.8
# uv itself comes through pip like every other package (the wheelhouse, or the index),
# into a throwaway venv of the OS's python3 that never reaches the final image.
# Where the CPython archive comes from, first match wins:
#   UV_PYTHON_INSTALL_MIRROR (build arg): a mirror of python-build-standalone's release
#     downloads, laid out as <mirror>/<release tag>/<archive>; file:// works;
#   cpython-*.tar.gz archives in the wheelhouse (an air gap): laid out as such a mirror;
#   else uv's default download location.
set -euo pipefail
umask 0002
python=$1
uv_version=$2
# shellcheck source=scripts/image/pip-env.sh
. "$(dirname "$0")/pip-env.sh"

tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool/venv"
"$tool/venv/bin/python" -m pip install "${PIP_ARGS[@]}" --no-warn-script-location "uv==$uv_version"
uv="$tool/venv/bin/uv"

if [ -z "${UV_PYTHON_INSTALL_MIRROR:-}" ] && compgen -G "$wheelhouse/cpython-*.tar.gz" >/dev/null; then
  # cpython-3.14.0+20251014-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz lives
  # under the release tag 20251014 in the project's download layout.
  for archive in "$wheelhouse"/cpython-*.tar.gz; do
    name=$(basename "$archive")
    release=${name#*+}
    release=${release%%-*}
    mkdir -p "$tool/mirror/$release"
    ln -s "$archive" "$tool/mirror/$release/$name"
  done
  export UV_PYTHON_INSTALL_MIRROR="file://$tool/mirror"
fi
if [ -s /run/secrets/ca-bundle ]; then
  export SSL_CERT_FILE=/run/secrets/ca-bundle  # uv's own TLS trusts the proxy's CA too
fi

export UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed UV_NO_CACHE=1
"$uv" python install "$python"
interpreter=$("$uv" python find "$python")
"$interpreter" -m venv /opt/venv
"$interpreter" -c 'import sys; print("standalone Python", sys.version.split()[0], "at", sys.base_prefix)'
find /opt/python /opt/venv ! -perm -g+w -exec chmod g+w {} +
