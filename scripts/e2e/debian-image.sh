#!/usr/bin/env bash
# Prints the name of a small Debian bookworm image (gregor-e2e-debian:bookworm: minbase plus
# python3, iptables, conntrack, iproute2), imported from a debootstrap root and cached: the
# base of the kube-proxy image of the local kind node and of the e2e client image.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/e2e/lib.sh
image="gregor-e2e-debian:bookworm"
tarball="$(debian_root e2e-debian iptables,conntrack,kmod,iproute2,python3,procps,ca-certificates)"
stamp="$(cat "$tarball.stamp")"
if [[ "$(image_stamp "$image")" != "$stamp" ]]; then
  e2e_say "importing $image"
  docker import --change "LABEL dev.gregor.stamp=\"$stamp\"" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' "$tarball" "$image" >/dev/null
fi
echo "$image"
