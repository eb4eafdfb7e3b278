#!/usr/bin/env bash
# Produce the local base image for the analysis images (default recast/base:bookworm).
#
# No container registry is reachable on our machines, so `FROM python:3.11-slim`
# cannot be pulled. This builds an equivalent Debian 12 root file system with
# debootstrap (python3, venv, pip, CA certificates) and imports it into the
# Docker engine. The host's CA bundle is copied in because PyPI is reached
# through a proxy whose CA only that bundle trusts; without it `pip install`
# inside `docker build` fails with CERTIFICATE_VERIFY_FAILED.
#
# Usage: make-base.sh [TAG]        (needs root and a running Docker engine)
# Environment: DEBIAN_MIRROR (default: debootstrap's own default mirror).
# Idempotent: does nothing when TAG already exists in the engine.
set -euo pipefail

tag="${1:-recast/base:bookworm}"
suite=bookworm
packages=python3,python3-venv,python3-pip,ca-certificates,passwd

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "make-base: $tag already exists, nothing to do"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "make-base: debootstrap needs root; run: sudo $0 $tag" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

work=$(mktemp -d /var/tmp/recast-base.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
rootfs="$work/rootfs"

echo "make-base: debootstrap $suite into $rootfs (one to two minutes)"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} \
        >"$work/debootstrap.log" 2>&1; then
    echo "make-base: debootstrap failed; last lines of its log:" >&2
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
fi

host_bundle=/etc/ssl/certs/ca-certificates.crt
if [[ -f $host_bundle ]]; then
    cp "$host_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
# Smaller image, and no stale package lists baked in.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*

tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "recast base: debootstrap $suite minbase + $packages + host CA bundle" \
    - "$tag" >/dev/null
echo "make-base: built $tag ($(docker image inspect --format '{{.Id}}' "$tag"))"
