#!/usr/bin/env bash
# Make a local Debian base image without a registry: debootstrap + docker import.
#
# Usage: scripts/make-base-image.sh [--force] [NAME [SUITE]]
#   NAME   image name (default: gpuimages-local/debian:bookworm)
#   SUITE  Debian suite (default: bookworm)
#   --force  rebuild even if NAME already exists
#
# Environment:
#   DOCKER                  docker client (default: /usr/bin/docker, else `docker`)
#   GPUIMAGES_DEBIAN_MIRROR Debian mirror (default: http://deb.debian.org/debian)
#   GPUIMAGES_DEBIAN_SECURITY  1 (default) adds SUITE-updates and SUITE-security to
#                           sources.list for stable suites; 0 keeps only SUITE
#   GPUIMAGES_DEBIAN_SECURITY_MIRROR  (default: the mirror with /debian -> /debian-security)
#
# Prints the image id on stdout (progress goes to stderr). Needs root for debootstrap.
set -euo pipefail

log() { printf 'make-base-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; }

force=0
args=()
while (($#)); do
    case "$1" in
        --force) force=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; args+=("$@"); break ;;
        -*) usage; die "unknown option: $1" ;;
        *) args+=("$1") ;;
    esac
    shift
done
((${#args[@]} <= 2)) || { usage; die "too many arguments"; }

name="${args[0]:-gpuimages-local/debian:bookworm}"
suite="${args[1]:-bookworm}"
mirror="${GPUIMAGES_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
with_security="${GPUIMAGES_DEBIAN_SECURITY:-1}"

if [[ -n "${DOCKER:-}" ]]; then
    docker_cli="$DOCKER"
elif [[ -x /usr/bin/docker ]]; then
    docker_cli=/usr/bin/docker
else
    docker_cli=docker
fi

"$docker_cli" info >/dev/null 2>&1 || die "Docker engine not reachable with '$docker_cli' (run scripts/start-docker.sh)"

if ((force == 0)) && "$docker_cli" image inspect "$name" >/dev/null 2>&1; then
    log "$name already exists (use --force to rebuild)"
    "$docker_cli" image inspect -f '{{.Id}}' "$name"
    exit 0
fi

[[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root: run 'sudo $0 $*'"

if ! command -v debootstrap >/dev/null 2>&1; then
    log "debootstrap not found: installing it"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/gpuimages-rootfs.XXXXXX")"
cleanup() {
    # debootstrap may leave mounts (proc, sys) behind on failure; never follow them.
    local m
    for m in $(awk -v d="$workdir" 'index($2, d) == 1 {print $2}' /proc/mounts 2>/dev/null | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT
rootfs="$workdir/rootfs"

log "debootstrap --variant=minbase $suite ($mirror) into $rootfs"
start=$SECONDS
if ! debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1; then
    tail -n 30 "$workdir/debootstrap.log" >&2
    [[ -f "$rootfs/debootstrap/debootstrap.log" ]] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi

# Sources: security and point-release updates for stable suites, like the official images.
case "$suite" in
    sid|unstable|experimental) with_security=0 ;;
esac
if [[ "$with_security" == 1 ]]; then
    security_mirror="${GPUIMAGES_DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}"
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
fi

# Keep the image small and free of host state: no downloaded debs, no package lists.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
: >"$rootfs/etc/hostname"
rm -f "$rootfs/etc/resolv.conf" && : >"$rootfs/etc/resolv.conf"
# Reproducible-ish: a fixed machine-id would be shared by all containers, so leave it empty.
[[ -f "$rootfs/etc/machine-id" ]] && : >"$rootfs/etc/machine-id"

log "importing as $name"
tar --numeric-owner -C "$rootfs" -c . | "$docker_cli" import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.opencontainers.image.title=\"debian $suite minbase (local, debootstrap)\"" \
    --change "LABEL org.opencontainers.image.base.name=\"debian:$suite\"" \
    --message "debootstrap --variant=minbase $suite $mirror" \
    - "$name" >/dev/null

log "done in $((SECONDS - start))s: $name ($("$docker_cli" image inspect -f '{{.Size}}' "$name") bytes)"
"$docker_cli" image inspect -f '{{.Id}}' "$name"
