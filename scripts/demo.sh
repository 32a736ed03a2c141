#!/usr/bin/env bash
# The quick-start demo: a local registry with two Debian-based images that share files in
# different layers; pull both, list, inspect, show dedup; mount one with lazyfs, change it,
# remount and find the change kept; remove, prune.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/registry.sh

cargo build --release --quiet --workspace --bins
bin=target/release
work=$(mktemp -d /tmp/lazyrun-demo.XXXXXX)
start_registry "$work/registry"
trap 'umount -l "$work/mnt" 2>/dev/null; kill $REGISTRY_PID 2>/dev/null || true' EXIT
export LAZYRUN_ROOT=$work/store

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "Building the demo images (debootstrap bookworm minbase, cached after the first run)..."
$bin/lazyrun-testkit push-debian "$REGISTRY" >/dev/null
say $bin/lazyrun pull "$REGISTRY/demo/debian:12" "$REGISTRY/demo/debian-app:12"
say $bin/lazyrun images
say $bin/lazyrun inspect "$REGISTRY/demo/debian-app:12"
say $bin/lazyrun df
mnt=$work/mnt upper=$work/upper
mkdir -p "$mnt"
say $bin/lazyfs mount "$REGISTRY/demo/debian-app:12" "$mnt" --upper "$upper"
say ls "$mnt"
say cat "$mnt/etc/os-release"
say sh -c "echo 'changed through lazyfs' > '$mnt/etc/motd' && mv '$mnt/usr/share/doc' '$mnt/usr/share/doc.old'"
say $bin/lazyfs umount "$mnt"
say ls -a "$upper" "$upper/usr/share"
say $bin/lazyfs mount "$REGISTRY/demo/debian-app:12" "$mnt" --upper "$upper"
say cat "$mnt/etc/motd"
say ls "$mnt/usr/share/doc.old/bash"
say $bin/lazyfs umount "$mnt"
say $bin/lazyrun rmi "$REGISTRY/demo/debian-app:12"
say $bin/lazyrun prune
say $bin/lazyrun df
rm -rf "$work"
echo
echo "demo: done"
