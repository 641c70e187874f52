#!/usr/bin/env bash
# Install what the integration tests' registries need: Debian's docker-compose (v1), which
# pytest-docker drives through its `docker_compose_command` fixture. No Docker Hub: the
# registry image itself is built locally (tests/integration/registry/Dockerfile).
#
# Usage: scripts/install-compose.sh
#   Prints the compose command on stdout (docker-compose). Installs it with apt-get when
#   missing (root); without root it names the command to run and exits 1.
set -euo pipefail

log() { printf 'install-compose: %s\n' "$*" >&2; }
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; }

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) usage; log "error: unknown argument: $1"; exit 2 ;;
esac

if ! command -v docker-compose >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        log "error: docker-compose is missing: sudo apt-get install docker-compose"
        exit 1
    fi
    log "installing docker-compose (apt-get)"
    { apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            docker-compose; } >&2
fi
command -v docker-compose
