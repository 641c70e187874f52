#!/usr/bin/env bash
# The test command: unit tests, render drift, lint, and (with an engine) the Docker
# integration tests. Extra arguments go to pytest, e.g. `scripts/test.sh -m "not docker"`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(bash scripts/bootstrap.sh)
export PATH="$PWD/$venv/bin:$PATH"

# The integration tests' registries are compose services (pytest-docker, Debian's
# docker-compose v1): install it now when missing (root), or the fixture says what to do.
bash scripts/install-compose.sh >/dev/null \
    || echo "test.sh: no docker-compose: the registry-service tests will skip or fail" >&2

ruff check .
ruff format --check .
invoke render --check
hadolint dockerfiles/*/Dockerfile tests/integration/registry/Dockerfile
python -m pytest "$@"
