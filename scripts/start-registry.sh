#!/usr/bin/env bash
# Start a local Docker registry (Debian's docker-registry: distribution v2.8) on
# 127.0.0.1:PORT in the background, for `invoke publish` and the publish tests.
#
# Usage: scripts/start-registry.sh [--port PORT] [--dir DIR] [--user USER --password-stdin]
#        scripts/start-registry.sh --stop [--port PORT] [--dir DIR]
#   --port PORT       port on 127.0.0.1 (default 5000)
#   --dir DIR         state folder: config.yml, data/, htpasswd, pid and log
#                     (default ${TMPDIR:-/tmp}/gpuimages-registry-PORT)
#   --user USER       require HTTP basic auth (htpasswd, bcrypt); the password is read
#   --password-stdin  from stdin, never from the command line
#   --stop            stop the registry started for PORT/DIR (its data is kept)
#
# Installs docker-registry (and apache2-utils for htpasswd) with apt-get when missing
# (root), without letting the package start its own service. Waits until /v2/ answers,
# then prints the registry's URL (http://127.0.0.1:PORT) on stdout; progress goes to
# stderr. Idempotent: a registry already running for PORT/DIR with the same settings is
# left alone; changed settings restart it; an open registry that someone else runs on
# PORT is used as it is.
#
# Environment: GPUIMAGES_REGISTRY_TIMEOUT  seconds to wait for /v2/ (default 30)
set -euo pipefail

log() { printf 'start-registry: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; }

port=5000
dir=""
user=""
password_stdin=0
stop=0
while (($#)); do
    case "$1" in
        --port) port="${2:-}"; shift ;;
        --port=*) port="${1#*=}" ;;
        --dir) dir="${2:-}"; shift ;;
        --dir=*) dir="${1#*=}" ;;
        --user) user="${2:-}"; shift ;;
        --user=*) user="${1#*=}" ;;
        --password-stdin) password_stdin=1 ;;
        --stop) stop=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done

if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    die "--port must be a TCP port number, got '$port'"
fi
dir="${dir:-${TMPDIR:-/tmp}/gpuimages-registry-$port}"
timeout_s="${GPUIMAGES_REGISTRY_TIMEOUT:-30}"
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "GPUIMAGES_REGISTRY_TIMEOUT must be a whole number of seconds, got '$timeout_s'"
if [[ -n "$user" && "$password_stdin" -eq 0 ]] || [[ -z "$user" && "$password_stdin" -eq 1 ]]; then
    die "--user and --password-stdin go together (the password is read from stdin)"
fi
if [[ -n "$user" && ! "$user" =~ ^[A-Za-z0-9._-]+$ ]]; then
    die "--user '$user' may hold only letters, digits, '.', '_' and '-'"
fi

url="http://127.0.0.1:$port"
pid_file="$dir/registry.pid"
log_file="$dir/registry.log"
config="$dir/config.yml"

registry_pid() {
    local pid
    [[ -f "$pid_file" ]] || return 1
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Only our registry: a recycled pid of another program is not ours to stop.
    grep -q docker-registry "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

# Status line and headers of GET /v2/ (nothing when nothing answers); curl where it is
# installed, else bash's /dev/tcp (minimal hosts have neither curl nor python).
v2_head() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -m 3 -D - -o /dev/null "$url/v2/" 2>/dev/null || true
    else
        # shellcheck disable=SC2016  # $1 expands in the inner bash
        timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
            printf "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n" "$1" >&3
            cat <&3' _ "$port" 2>/dev/null | tr -d '\r' | sed '/^$/q' || true
    fi
}

# HTTP status of GET /v2/ ("000" when nothing answers).
v2_status() {
    local status
    status="$(v2_head | head -n 1 | awk '{print $2}')"
    echo "${status:-000}"
}

# Does /v2/ answer with distribution's API version header?
is_registry() {
    v2_head | grep -qi '^docker-distribution-api-version: registry/2'
}

stop_registry() {
    local pid
    if ! pid="$(registry_pid)"; then
        rm -f "$pid_file"
        return 1
    fi
    log "stopping registry (pid $pid) on $url"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
}

if ((stop)); then
    stop_registry || log "no registry of ours runs for $dir"
    exit 0
fi

apt_install() {
    # Install packages without letting their init scripts start services (Debian's
    # docker-registry would start one on :5000 with its stock config otherwise).
    [[ "$(id -u)" -eq 0 ]] || die "$* missing and installing needs root: sudo apt-get install $*"
    command -v apt-get >/dev/null 2>&1 || die "$* missing and apt-get is not available: install it by hand"
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        own_policy=1
    fi
    log "installing $* (apt-get)"
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } >&2 || rc=$?
    ((own_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install $* failed (exit $rc)"
}

registry_bin=/usr/bin/docker-registry
[[ -x "$registry_bin" ]] || apt_install docker-registry
[[ -x "$registry_bin" ]] || die "docker-registry installed but $registry_bin is missing"

mkdir -p "$dir/data"
chmod 700 "$dir"

password=""
if [[ -n "$user" ]]; then
    command -v htpasswd >/dev/null 2>&1 || apt_install apache2-utils
    IFS= read -r password || [[ -n "$password" ]] || die "--password-stdin: no password on stdin"
    [[ -n "$password" ]] || die "--password-stdin: the password is empty"
fi

# The settings this run asks for; a running registry with other settings is restarted.
auth_block=""
if [[ -n "$user" ]]; then
    auth_block="auth:
  htpasswd:
    realm: gpuimages-registry
    path: $dir/htpasswd"
fi
wanted="version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  headers:
    X-Content-Type-Options: [nosniff]
$auth_block"
fingerprint="$(printf '%s\n%s' "$wanted" "$user" | sha256sum | cut -c1-16)"

same_password() {
    # The running registry's htpasswd already accepts this password (bcrypt check).
    [[ -z "$user" ]] || printf '%s\n' "$password" | htpasswd -iv "$dir/htpasswd" "$user" >/dev/null 2>&1
}

if pid="$(registry_pid)"; then
    if [[ "$(cat "$dir/fingerprint" 2>/dev/null || true)" == "$fingerprint" && "$(v2_status)" != 000 ]] \
        && same_password; then
        log "registry already running (pid $pid) on $url"
        echo "$url"
        exit 0
    fi
    log "registry on $url runs with other settings: restarting it"
    stop_registry || true
fi

status="$(v2_status)"
if [[ "$status" == 200 && -z "$user" ]] && is_registry; then
    # An open registry someone else started (another checkout, a service): use it.
    log "an open registry (not started for $dir) already answers on $url: using it"
    echo "$url"
    exit 0
fi
if [[ "$status" != 000 ]]; then
    die "something else already answers on 127.0.0.1:$port (HTTP $status, not a registry started for $dir with these settings); pick another --port or stop it"
fi

if [[ -n "$user" ]]; then
    # bcrypt (-B) is the only hash distribution's htpasswd auth accepts.
    printf '%s\n' "$password" | htpasswd -iBc "$dir/htpasswd" "$user" 2>/dev/null \
        || die "htpasswd failed to write $dir/htpasswd"
    chmod 600 "$dir/htpasswd"
else
    rm -f "$dir/htpasswd"
fi
printf '%s\n' "$wanted" >"$config"
printf '%s\n' "$fingerprint" >"$dir/fingerprint"

log "starting docker-registry on $url (config: $config, log: $log_file)"
# A fresh random secret per start (distribution warns without one; it signs upload state).
REGISTRY_HTTP_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    setsid nohup "$registry_bin" serve "$config" </dev/null >>"$log_file" 2>&1 &
started=$!
echo "$started" >"$pid_file"
disown || true

deadline=$((SECONDS + timeout_s))
while :; do
    status="$(v2_status)"
    # 200 open, 401 when auth is on: either way the registry answers.
    if [[ "$status" == 200 || "$status" == 401 ]]; then
        break
    fi
    # kill -0, not registry_pid: right after the fork the process may not be exec'd yet.
    if ! kill -0 "$started" 2>/dev/null; then
        log "docker-registry exited; last lines of $log_file:"
        tail -n 20 "$log_file" >&2 2>/dev/null || true
        rm -f "$pid_file"
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        log "registry did not answer $url/v2/ within ${timeout_s}s; last lines of $log_file:"
        tail -n 20 "$log_file" >&2 2>/dev/null || true
        stop_registry || true
        exit 1
    fi
    sleep 0.2
done
log "registry ready on $url$([[ -n "$user" ]] && echo " (htpasswd auth, user $user)")"
echo "$url"
