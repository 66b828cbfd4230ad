#!/usr/bin/env bash
# The pod network of a kind cluster made without kind's default CNI (kindnetd, which the Go
# module proxy does not serve): what kindnetd would do, with Debian's CNI plugins.
#   - every node gets a bridge conflist for ITS OWN spec.podCIDR (read from its Node object:
#     which node got which range is the controller-manager's choice), with hairpin mode so a
#     pod reaches itself through a Service;
#   - every node gets a route to each other node's pod range via that node, kept in
#     /kind/pod-routes and set again at every boot (gregor-pod-routes.service of the node
#     image) since a restarted node container loses its routes.
# Run right after `kind create cluster`: nodes stay NotReady, and no pod lands, until it has.
#
# Args: CLUSTER KUBECONFIG.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/e2e/lib.sh
cluster="$1"
export KUBECONFIG="$2"
kubectl="${KUBECTL:-kubectl}"

mapfile -t nodes < <(docker ps --filter "label=io.x-k8s.kind.cluster=$cluster" --format '{{ .Names }}' | sort)
(( ${#nodes[@]} )) || e2e_fail "no node containers of kind cluster $cluster"
declare -A cidr
for _ in $(seq 120); do
  missing=0
  for n in "${nodes[@]}"; do
    cidr[$n]="$("$kubectl" get node "$n" -o jsonpath='{.spec.podCIDR}' 2>/dev/null || true)"
    [[ -n "${cidr[$n]}" ]] || missing=1
  done
  (( missing == 0 )) && break
  sleep 1
done
for n in "${nodes[@]}"; do
  [[ -n "${cidr[$n]}" ]] || e2e_fail "node $n has no spec.podCIDR"
done

for n in "${nodes[@]}"; do
  docker exec -i "$n" sh -c 'mkdir -p /etc/cni/net.d && cat >/etc/cni/net.d/10-gregor-bridge.conflist' <<JSON
{
  "cniVersion": "0.4.0",
  "name": "kind-bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${cidr[$n]}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  for o in "${nodes[@]}"; do
    [[ "$o" == "$n" ]] || echo "${cidr[$o]} $o"
  done | docker exec -i "$n" sh -c 'cat >/kind/pod-routes && /kind/bin/pod-routes.sh'
  e2e_say "$n: pods ${cidr[$n]}"
done
