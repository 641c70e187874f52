#!/usr/bin/env bash
# Make this host able to build images: a docker client that builds with BuildKit, and a
# running Docker engine. Works on machines without systemd (CI sandboxes, dev containers).
#
#   bash scripts/start-docker.sh                # client + engine
#   bash scripts/start-docker.sh --client-only  # client only (what `invoke build` asks for)
#
# The client: the first of $DOCKER, every `docker` on PATH, /usr/bin/docker that has the
# buildx plugin, or is older than 23 (BuildKit built in, DOCKER_BUILDKIT=1). A Docker 23+
# client without buildx cannot build with BuildKit. When none fits and we are root on
# Debian/Ubuntu, Debian's docker.io is installed (plus docker-buildx where the release
# packages it); elsewhere one paragraph says what to install. Nothing is installed when a
# client already fits, and nothing is half-installed: a failed apt-get stops here.
#
# The engine: if `docker info` answers, nothing is started. Otherwise (root only) dockerd
# is installed when missing (docker.io), started detached with its log in a file, and
# waited for.
#
# Environment:
#   DOCKER                      docker client to use (it is then the only candidate)
#   GPUIMAGES_DOCKERD_LOG       dockerd log file (default: /var/log/gpuimages-dockerd.log)
#   GPUIMAGES_DOCKERD_TIMEOUT   seconds to wait for the engine (default: 60)
#   GPUIMAGES_DOCKERD_PIDFILE   dockerd pid file (default: /var/run/docker.pid)
#   GPUIMAGES_DOCKERD_ARGS      extra arguments for dockerd (word-split), e.g. "--data-root /big/docker"
#
# Idempotent: running it twice installs nothing twice and starts at most one dockerd.
set -euo pipefail

log() { printf 'start-docker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

client_only=0
case "${1:-}" in
    "") ;;
    --client-only) client_only=1 ;;
    -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (valid: --client-only, --help)" ;;
esac

log_file="${GPUIMAGES_DOCKERD_LOG:-/var/log/gpuimages-dockerd.log}"
timeout_s="${GPUIMAGES_DOCKERD_TIMEOUT:-60}"
pid_file="${GPUIMAGES_DOCKERD_PIDFILE:-/var/run/docker.pid}"

[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "GPUIMAGES_DOCKERD_TIMEOUT must be a whole number of seconds, got '$timeout_s'"

candidates() {
    if [[ -n "${DOCKER:-}" ]]; then
        command -v "$DOCKER" 2>/dev/null || echo "$DOCKER"
        return
    fi
    type -aP docker 2>/dev/null || true
    [[ -x /usr/bin/docker ]] && echo /usr/bin/docker
    return 0
}

# Why CLIENT can build with BuildKit (on stdout), or a non-zero exit saying it cannot.
buildkit_reason() {
    local client=$1 banner major
    [[ -x "$client" ]] || return 1
    if timeout 20 "$client" buildx version >/dev/null 2>&1; then
        echo "has the buildx plugin"
        return 0
    fi
    # `docker --version` answers without an engine: "Docker version 20.10.24+dfsg1, ..."
    banner=$(timeout 20 "$client" --version 2>/dev/null) || return 1
    major=$(sed -nE 's/^Docker version ([0-9]+)\..*/\1/p' <<<"$banner")
    if [[ -n "$major" ]] && ((major < 23)); then
        echo "client ${major} has BuildKit built in (DOCKER_BUILDKIT=1)"
        return 0
    fi
    return 1
}

tried=()
choose_client() {
    local c reason
    tried=()
    while IFS= read -r c; do
        [[ -n "$c" ]] || continue
        if reason=$(buildkit_reason "$c"); then
            docker_cli=$c
            client_reason=$reason
            return 0
        fi
        tried+=("$c ($(timeout 20 "$c" --version 2>/dev/null | sed -nE 's/^Docker version ([0-9.]+).*/\1/p' || true), no buildx)")
    done < <(candidates | awk '!seen[$0]++')
    return 1
}

have_apt_package() { apt-cache show "$1" >/dev/null 2>&1; }

install_client() {
    local tried_text="${tried[*]:-no docker client on PATH}"
    local what="No docker client here can build with BuildKit (tried: ${tried_text})."
    if [[ "$(id -u)" -ne 0 ]]; then
        die "$what Run this script as root (sudo bash $0) to install Debian's docker.io (its 20.10 client has BuildKit built in), or install Docker's buildx plugin (docker-buildx-plugin) for your client, or set DOCKER=/path/to/a/client."
    fi
    command -v apt-get >/dev/null 2>&1 \
        || die "$what This host has no apt-get, so nothing was installed: install Docker with its buildx plugin from your distribution (or https://docs.docker.com/engine/install/), or set DOCKER=/path/to/a/client."
    if dpkg -s docker-ce-cli >/dev/null 2>&1; then
        # Debian's docker.io conflicts with Docker's own packages: add the plugin instead.
        apt-get update -qq
        have_apt_package docker-buildx-plugin \
            || die "$what Docker's docker-ce-cli is installed without its buildx plugin, and no apt source offers docker-buildx-plugin: add Docker's apt repository and run apt-get install docker-buildx-plugin."
        log "installing docker-buildx-plugin for Docker's docker-ce-cli"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-buildx-plugin >&2
        return
    fi
    log "$what Installing Debian's docker.io"
    apt-get update -qq
    local packages=(docker.io)
    # Releases after Debian 12 / Ubuntu 22.04 ship a 23+ docker.io whose BuildKit is the
    # separate docker-buildx package.
    have_apt_package docker-buildx && packages+=(docker-buildx)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >&2
}

docker_cli=""
client_reason=""
if ! choose_client; then
    # A client the user named is theirs to fix: installing another would not change it.
    [[ -z "${DOCKER:-}" ]] \
        || die "DOCKER=$DOCKER cannot build with BuildKit (${tried[*]}): install its buildx plugin (docker-buildx-plugin), or unset DOCKER to let this script choose (and, as root, install) a client."
    install_client
    choose_client || die "a docker client was installed, but none of ${tried[*]} can build with BuildKit: install the buildx plugin (docker-buildx) by hand."
fi
skipped=""
((${#tried[@]})) && skipped="; skipped ${tried[*]}"
log "client: $docker_cli ($client_reason$skipped)"
((client_only)) && exit 0

engine_up() { timeout 10 "$docker_cli" info >/dev/null 2>&1; }

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
    die "no Docker engine is running and starting one needs root: run 'sudo bash $0'"
fi

if ! command -v dockerd >/dev/null 2>&1; then
    log "dockerd not found: installing Debian's docker.io"
    command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and apt-get is not available: install a Docker engine by hand"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH"
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
