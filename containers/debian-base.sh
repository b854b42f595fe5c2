#!/usr/bin/env bash
# Makes a Debian 12 base image for containers/build.sh --base where no registry can be pulled from:
# mmdebstrap from this machine's apt mirror, imported into podman. Does nothing if the image exists.
#
#   containers/debian-base.sh [IMAGE]      # default: localhost/orchestrator/debian-base:bookworm
#
# The self-contained programs need little: libc, libstdc++, libssl (TLS) and CA roots.
set -euo pipefail
image="${1:-localhost/orchestrator/debian-base:bookworm}"
engine="${ORCH_CONTAINER_ENGINE:-podman}"
if "$engine" image exists "$image" 2>/dev/null; then exit 0; fi
command -v mmdebstrap >/dev/null || { echo "containers/debian-base.sh: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 1; }
mirror="${ORCH_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}"
mirror="${mirror:-http://deb.debian.org/debian}"
tar="$(mktemp --suffix=.tar)"
trap 'rm -f "$tar"' EXIT
echo "containers/debian-base.sh: making $image from $mirror" >&2
mmdebstrap --quiet --variant=minbase --include=libssl3,ca-certificates --format=tar bookworm "$tar" "$mirror"
"$engine" import --quiet "$tar" "$image" >/dev/null
