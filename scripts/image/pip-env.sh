#!/bin/bash
# Sourced by the build-step scripts: pip's package sources for this build, as PIP_ARGS.
# A CA bundle handed in as the BuildKit secret "ca-bundle" is used from /run/secrets and
# never copied into a layer; GPUIMAGES_OFFLINE=1 means the bound /wheelhouse only.
PIP_ARGS=(--disable-pip-version-check)
if [ -s /run/secrets/ca-bundle ]; then
  export PIP_CERT=/run/secrets/ca-bundle
fi
# An authenticated index's login: a netrc handed in as the BuildKit secret "pip-netrc".
if [ -s /run/secrets/pip-netrc ]; then
  export NETRC=/run/secrets/pip-netrc
fi
wheelhouse=${GPUIMAGES_WHEELHOUSE:-/wheelhouse}
if [ "${GPUIMAGES_OFFLINE:-0}" = 1 ]; then
  PIP_ARGS+=(--no-index --find-links "$wheelhouse")
elif compgen -G "$wheelhouse/*" >/dev/null; then
  PIP_ARGS+=(--find-links "$wheelhouse")
fi
export PIP_ARGS
