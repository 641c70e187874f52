#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine (as root): validate the matrix, render
# the Dockerfiles and plan the CPU variant's build.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(bash scripts/bootstrap.sh)
export PATH="$PWD/$venv/bin:$PATH"

invoke matrix
invoke render
invoke build --torch 2.13.0 --cuda cpu --dry-run
