#!/usr/bin/env bash
# Builds spectroauthd's OCI image with buildah, FROM scratch, and writes it
# as an OCI archive (podman load -i, or skopeo copy oci-archive:... to push).
#
#   deploy/image/build.sh BINDIR VERSION ARCH OUT.tar
#
# BINDIR holds spectroauthd and plugins/* built static for ARCH (amd64,
# arm64). buildah keeps its storage in a temporary directory, removed on
# exit: nothing is written to the machine's container storage.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 BINDIR VERSION ARCH OUT.tar" >&2; exit 2; }
bindir=$1 version=$2 arch=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
certs=/etc/ssl/certs/ca-certificates.crt
command -v buildah >/dev/null || { echo "image: buildah not found (apt-get install buildah)" >&2; exit 1; }
[ -s "$certs" ] || { echo "image: $certs missing (apt-get install ca-certificates)" >&2; exit 1; }

work=$(mktemp -d)
store=(--root "$work/store" --runroot "$work/run" --storage-driver vfs)
cleanup() { buildah "${store[@]}" rm --all >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
# default_ulimits = []: buildah's default limits are refused in some
# containers (CI runners among them); this image's build runs nothing.
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf

ctx=$work/ctx
install -d -m 0755 "$ctx/rootfs/usr/bin" "$ctx/rootfs/opt/spectroauth/plugins" "$ctx/rootfs/etc/ssl/certs"
install -d -m 1777 "$ctx/rootfs/tmp"
install -d -m 0700 "$ctx/data"
install -m 0755 "$bindir/spectroauthd" "$ctx/rootfs/usr/bin/spectroauthd"
for p in "$bindir"/plugins/*; do install -m 0755 "$p" "$ctx/rootfs/opt/spectroauth/plugins/"; done
install -m 0644 "$certs" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nspectroauth:x:65532:65532:spectroauth:/var/lib/spectroauth:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nspectroauth:x:65532:\n' >"$ctx/rootfs/etc/group"
chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group"
cp "$here/Containerfile" "$ctx/Containerfile"

tag=localhost/spectroauth:$version
buildah "${store[@]}" build --quiet --isolation chroot --format oci --timestamp 0 \
  --platform "linux/$arch" \
  --label org.opencontainers.image.title=spectroauth \
  --label org.opencontainers.image.version="$version" \
  -f "$ctx/Containerfile" -t "$tag" "$ctx" >/dev/null
mkdir -p "$(dirname "$out")"
rm -f "$out"
buildah "${store[@]}" push --quiet "$tag" "oci-archive:$out:$tag"
echo "image: $tag ($arch) in $out"
