#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine (as root), with no GPU and no registry
# access needed: make sure a docker client that builds with BuildKit and an engine are
# here, make a local Debian base, fill a wheelhouse, build the CPU variant from them,
# smoke-test that exact image and publish it to a registry (a local one on
# 127.0.0.1:5000 unless matrix.yaml names one).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '\nquickstart: [%s] %s (at %ss)\n' "$1" "$2" "$((SECONDS - started))" >&2; }
variant=${GPUIMAGES_VARIANT:-2.13.0-cpu-runtime}

# The engine and the local base come from Debian's archive, the venv from PyPI: fetch both
# at once. The engine step runs first on its own line of work so that a host whose only
# docker is a 23+ client without buildx (or none) gets a client that builds before
# anything asks for one.
step 1/6 "docker client, engine and local Debian base (in the background)"
engine_log=$(mktemp)
(bash scripts/start-docker.sh && bash scripts/make-base-image.sh >/dev/null) >"$engine_log" 2>&1 &
engine_pid=$!
step 2/6 "gpuimages and its tools in .venv"
venv=$(GPUIMAGES_HOST_TORCH=${GPUIMAGES_HOST_TORCH:-none} bash scripts/bootstrap.sh)
export PATH="$PWD/$venv/bin:$PATH"
invoke render --check
step 3/6 "wheelhouse for $variant"
invoke wheelhouse --variant "$variant"
if ! wait "$engine_pid"; then
    cat "$engine_log" >&2
    echo "quickstart: the Docker client/engine or the local base could not be set up (above)." >&2
    exit 1
fi
grep -E '^(start-docker|make-base-image):' "$engine_log" >&2 || true
rm -f "$engine_log"

step 4/6 "build"
invoke build --variant "$variant" --local-base --wheelhouse wheelhouse --offline
step 5/6 "smoke test of that exact image"
invoke smoke --variant "$variant"
# No registry in matrix.yaml: publish starts one on 127.0.0.1:5000 and pushes there.
step 6/6 "publish"
invoke publish --variant "$variant"
step done "the main job took $((SECONDS - started)) s"
