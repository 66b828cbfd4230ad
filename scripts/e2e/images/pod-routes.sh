#!/bin/sh
# Routes this kind node to the pod ranges of the other nodes, as kind's default CNI (kindnetd)
# would: one line per other node in /kind/pod-routes, "<pod CIDR> <node container name>",
# written by scripts/e2e/pod-network.sh. The node's address is looked up by name (Docker's
# DNS on the kind network) each time, since Docker does not promise a container the same
# address after a restart. Run at boot by gregor-pod-routes.service and again by
# pod-network.sh; idempotent.
set -eu
[ -f /kind/pod-routes ] || exit 0
while read -r cidr node; do
  [ -n "$cidr" ] || continue
  ip=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    ip=$(getent ahostsv4 "$node" | awk 'NR == 1 { print $1 }')
    [ -n "$ip" ] && break
    sleep 1
  done
  [ -n "$ip" ] || { echo "pod-routes: cannot resolve $node" >&2; exit 1; }
  ip route replace "$cidr" via "$ip"
done </kind/pod-routes
