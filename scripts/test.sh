#!/usr/bin/env bash
# The test command: unit tests, render drift, lint, and (with an engine) the Docker
# integration tests. Extra arguments go to pytest, e.g. `scripts/test.sh -m "not docker"`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(bash scripts/bootstrap.sh)
export PATH="$PWD/$venv/bin:$PATH"

ruff check .
ruff format --check .
invoke render --check
hadolint dockerfiles/*/Dockerfile
python -m pytest "$@"
