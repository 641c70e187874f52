#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine (as root), with no GPU and no registry
# access needed: start a Docker engine if none answers, make a local Debian base, fill
# a wheelhouse, build the CPU variant from them, smoke-test that exact image and publish
# it to a registry (a local one on 127.0.0.1:5000 unless matrix.yaml names one).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(bash scripts/bootstrap.sh)
export PATH="$PWD/$venv/bin:$PATH"
variant=${GPUIMAGES_VARIANT:-2.13.0-cpu-runtime}

# Before anything asks for a client: on a host whose only docker is a 23+ client without
# buildx (or none at all) this installs one that builds with BuildKit, then starts dockerd.
bash scripts/start-docker.sh

invoke render --check
invoke wheelhouse --variant "$variant"
invoke build --variant "$variant" --local-base --wheelhouse wheelhouse --offline
invoke smoke --variant "$variant"
# No registry in matrix.yaml: publish starts one on 127.0.0.1:5000 and pushes there.
invoke publish --variant "$variant"
