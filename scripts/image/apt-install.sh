#!/bin/bash
# Installs Debian/Ubuntu packages inside a build step, with the apt caches on BuildKit
# cache mounts (so nothing of apt's stays in the layer). APT_MIRROR, when set, replaces
# the archive host for this install (corporate mirrors, air-gapped sites); the image's
# own sources are left as they were.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt_opts=()
if [ -n "${APT_MIRROR:-}" ]; then
  # Rewritten copies of the sources, used for this install only: the image keeps its
  # own sources (no mirror setting is left behind in a layer).
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/sources.list.d"
  : >"$work/sources.list"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case $f in
      /etc/apt/sources.list) out=$work/sources.list ;;
      *) out=$work/sources.list.d/$(basename "$f") ;;
    esac
    sed -E "s#https?://(deb\.debian\.org|archive\.ubuntu\.com|security\.ubuntu\.com|security\.debian\.org)#${APT_MIRROR%/}#g" "$f" >"$out"
  done
  apt_opts+=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/sources.list.d")
fi
# An authenticated mirror's login: apt_auth.conf(5) handed in as the BuildKit secret
# "apt-auth", read from /run/secrets and never written to a layer.
if [ -s /run/secrets/apt-auth ]; then
  apt_opts+=(-o "Dir::Etc::netrc=/run/secrets/apt-auth")
fi
# Debian's docker-clean hook would empty the cache mount after every install.
rm -f /etc/apt/apt.conf.d/docker-clean
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >/etc/apt/apt.conf.d/keep-cache

apt-get "${apt_opts[@]}" update
apt-get "${apt_opts[@]}" install -y --no-install-recommends "$@"
rm -rf /var/log/apt/* /var/log/dpkg.log
