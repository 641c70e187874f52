#!/usr/bin/env bash
# Start a Docker engine on a machine without systemd (CI sandboxes, dev containers).
#
# - If the engine already answers `docker info`, do nothing (exit 0).
# - Otherwise (root only): install Debian's docker.io if dockerd is missing, start
#   dockerd detached in the background with its log in a file, and wait for it.
#
# Environment:
#   DOCKER                      docker client to use (default: /usr/bin/docker, else `docker`)
#   GPUIMAGES_DOCKERD_LOG       dockerd log file (default: /var/log/gpuimages-dockerd.log)
#   GPUIMAGES_DOCKERD_TIMEOUT   seconds to wait for the engine (default: 60)
#   GPUIMAGES_DOCKERD_PIDFILE   dockerd pid file (default: /var/run/docker.pid)
#   GPUIMAGES_DOCKERD_ARGS      extra arguments for dockerd (word-split), e.g. "--data-root /big/docker"
#
# Idempotent: running it twice starts at most one dockerd.
set -euo pipefail

log() { printf 'start-docker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -n "${DOCKER:-}" ]]; then
    docker_cli="$DOCKER"
elif [[ -x /usr/bin/docker ]]; then
    # Debian's client (20.10) has BuildKit built in; a newer client elsewhere on PATH
    # may lack the buildx plugin.
    docker_cli=/usr/bin/docker
else
    docker_cli=docker
fi
log_file="${GPUIMAGES_DOCKERD_LOG:-/var/log/gpuimages-dockerd.log}"
timeout_s="${GPUIMAGES_DOCKERD_TIMEOUT:-60}"
pid_file="${GPUIMAGES_DOCKERD_PIDFILE:-/var/run/docker.pid}"

[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "GPUIMAGES_DOCKERD_TIMEOUT must be a whole number of seconds, got '$timeout_s'"

engine_up() {
    command -v "$docker_cli" >/dev/null 2>&1 || return 1
    timeout 10 "$docker_cli" info >/dev/null 2>&1
}

any_dockerd() {
    dockerd_alive && return 0
    command -v pgrep >/dev/null 2>&1 && pgrep -x dockerd >/dev/null 2>&1
}

dockerd_alive() {
    # A dockerd we (or someone) started earlier that may still be coming up.
    [[ -f "$pid_file" ]] || return 1
    local pid
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

if engine_up; then
    log "engine already running ($("$docker_cli" version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    if [[ -S /var/run/docker.sock ]]; then
        die "a Docker socket exists at /var/run/docker.sock but '$docker_cli info' fails for user $(id -un): add the user to the 'docker' group or run as root"
    fi
    die "no Docker engine is running and starting one needs root: run 'sudo $0'"
fi

if ! command -v dockerd >/dev/null 2>&1; then
    log "dockerd not found: installing Debian's docker.io"
    command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and apt-get is not available: install a Docker engine by hand"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH"
fi
if ! command -v "$docker_cli" >/dev/null 2>&1; then
    die "docker client '$docker_cli' not found (set DOCKER=/path/to/docker)"
fi

if dockerd_alive; then
    log "dockerd already started (pid $(cat "$pid_file")), waiting for it"
else
    if [[ -f "$pid_file" ]]; then
        log "removing stale $pid_file"
        rm -f "$pid_file"
    fi
    mkdir -p "$(dirname "$log_file")"
    log "starting dockerd (log: $log_file)"
    # shellcheck disable=SC2086  # GPUIMAGES_DOCKERD_ARGS is meant to be word-split
    setsid nohup dockerd --pidfile "$pid_file" ${GPUIMAGES_DOCKERD_ARGS:-} </dev/null >>"$log_file" 2>&1 &
    disown || true
fi

deadline=$((SECONDS + timeout_s))
until engine_up; do
    if ((SECONDS >= deadline)); then
        log "engine did not answer within ${timeout_s}s; last lines of $log_file:"
        tail -n 30 "$log_file" >&2 2>/dev/null || true
        exit 1
    fi
    if ! any_dockerd; then
        # It may not have written its pid file yet; give it a moment before giving up.
        sleep 1
        if ! any_dockerd; then
            log "dockerd exited; last lines of $log_file:"
            tail -n 30 "$log_file" >&2 2>/dev/null || true
            exit 1
        fi
    fi
    sleep 1
done
log "engine ready ($("$docker_cli" version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
