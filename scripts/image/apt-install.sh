#!/bin/bash
# Installs Debian/Ubuntu packages inside a build step, with the apt caches on BuildKit
# cache mounts (so nothing of apt's stays in the layer). APT_MIRROR, when set, replaces
# the archive host in the sources (corporate mirrors, air-gapped sites).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if [ -n "${APT_MIRROR:-}" ]; then
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    sed -i -E "s#https?://(deb\.debian\.org|archive\.ubuntu\.com|security\.ubuntu\.com|security\.debian\.org)#${APT_MIRROR%/}#g" "$f"
  done
fi
# Debian's docker-clean hook would empty the cache mount after every install.
rm -f /etc/apt/apt.conf.d/docker-clean
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >/etc/apt/apt.conf.d/keep-cache

apt-get update
apt-get install -y --no-install-recommends "$@"
rm -rf /var/log/apt/* /var/log/dpkg.log
