#!/usr/bin/env bash
# Build a local base image for a machine with no container registry (docker pull fails), as root:
#   scripts/offline-base-image.sh [NAME]        # default NAME: lab-base
# then build the lab on it:  BASE_IMAGE=lab-base docker compose up
# Debian bookworm with python3, venv and pip, made by debootstrap from Debian's package mirror, with this host's CA
# bundle and pip configuration inside so that pip reaches the same package index as the host. About a minute.
set -euo pipefail
name=${1:-lab-base}
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "offline-base-image: $name exists"
  exit 0
fi
command -v debootstrap >/dev/null || {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "offline-base-image: debootstrap bookworm into $root"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$root" >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$root/etc/pip.conf"; fi
tar -C "$root" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$name" >/dev/null
echo "offline-base-image: built $name"
