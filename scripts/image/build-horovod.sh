#!/bin/bash
# Builds Horovod VERSION from its sdist against the torch already in /opt/venv, applies
# the named fixes from the compatibility data, and installs the wheel into /opt/venv.
# Usage: build-horovod.sh VERSION [FIX ...]     fixes: cxx17, cxx20
# HOROVOD_* build switches come from the environment (set by the Dockerfile);
# GPUIMAGES_VENV and GPUIMAGES_WHEELHOUSE default to the image's /opt/venv and /wheelhouse.
set -euo pipefail
umask 0002  # the venv stays group-writable (pip-install.sh)
version=$1
shift
# shellcheck source=scripts/image/pip-env.sh
. "$(dirname "$0")/pip-env.sh"
venv=${GPUIMAGES_VENV:-/opt/venv}
wheelhouse=${GPUIMAGES_WHEELHOUSE:-/wheelhouse}
pip=("$venv/bin/python" -m pip)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sdist=$wheelhouse/horovod-${version}.tar.gz
if [ ! -f "$sdist" ]; then
  "${pip[@]}" download "${PIP_ARGS[@]}" --no-deps --no-binary horovod -d "$work" "horovod==${version}"
  sdist=$work/horovod-${version}.tar.gz
fi
tar -xzf "$sdist" -C "$work"
src=$work/horovod-${version}

for fix in "$@"; do
  case "$fix" in
    cxx17|cxx20)
      # torch >= 2.1 headers need C++17, torch >= 2.14 C++20; Horovod 0.28.1 asks CMake
      # for C++14 in these two files.
      std=${fix#cxx}
      files=("$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt")
      sed -i "s/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD $std)/" "${files[@]}"
      if grep -q 'set(CMAKE_CXX_STANDARD 14)' "${files[@]}"; then
        echo "build-horovod: fix $fix did not apply" >&2; exit 1
      fi
      echo "build-horovod: applied fix $fix (CMAKE_CXX_STANDARD 14 -> $std)"
      ;;
    *) echo "build-horovod: unknown fix '$fix'" >&2; exit 2 ;;
  esac
done

log=$work/build.log
if ! (cd "$src" && MAKEFLAGS="-j$(nproc)" "${pip[@]}" wheel "${PIP_ARGS[@]}" \
        --no-build-isolation --no-deps -w "$work/dist" . ) >"$log" 2>&1; then
  tail -n 60 "$log"
  # The tail of a CMake/make run rarely shows the cause: print the compiler's own lines.
  echo "==== build-horovod: compiler errors ====" >&2
  grep -E '(error|Error)( [0-9]+)?:|fatal error|undefined reference|CMake Error|\*\*\* .*Error [0-9]+' "$log" \
    | grep -v -E '^\s*$' | head -n 40 >&2 || true
  exit 1
fi
tail -n 5 "$log"
"${pip[@]}" install "${PIP_ARGS[@]}" --no-deps "$work"/dist/horovod-*.whl
"$venv/bin/horovodrun" --check-build
find "$venv" ! -perm -g+w -exec chmod g+w {} +
