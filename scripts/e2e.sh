#!/usr/bin/env bash
# Gregor on real Kubernetes: builds the image with the Dockerfile, creates a kind cluster (one
# control plane and three workers in three zones, tests/e2e/kind.yaml), loads the images,
# `helm install`s the chart, runs the end-to-end scenarios of tests/e2e (real pods from the
# real image, under load from a client pod) and prints their summary table. The kind cluster
# is deleted at the end unless --keep.
#
#   scripts/e2e.sh                 # everything; the cluster is deleted afterwards
#   scripts/e2e.sh --keep          # the same, and the cluster stays
#   scripts/e2e.sh --try           # no scenarios: the operator and a sample three-node
#                                  # KafkaCluster and KafkaTopic, Ready, left running
#   scripts/e2e.sh --down          # deletes the cluster (and stops a dockerd it started)
#   scripts/e2e.sh -- -k rolling   # extra pytest arguments after --
#
# Two ways to get the cluster's images, chosen with --stock / --local (default: local when
# this machine cannot reach Docker Hub, or has built the local node image before):
#   stock: a machine with internet. kind's own node image (kindest/node, kind's default CNI),
#          the image built from rust:1.95-bookworm, the client image on python:3.11-slim.
#   local: a machine that reaches only package registries (ours). The node image, its base and
#          every image a node runs are built from the Go module proxy and Debian's packages
#          (scripts/e2e/node-image.sh: Kubernetes $KUBE_VERSION, kind $KIND_VERSION), the pod
#          network is set up by scripts/e2e/pod-network.sh, and the images are built from
#          debootstrap roots. Everything is cached under ~/.cache/gregor.
# Either way the host reaches the cluster only on 127.0.0.1: the API server port kind picks and
# the node ports 31090-31092 (the sample cluster's external listener).
#
# Needs root (dockerd; debootstrap in local mode), go (kind, helm and, in local mode,
# Kubernetes are built with it), python3 with the test venv (GREGOR_PYTHON, made by .ci/run).
# Env: E2E_CLUSTER (kind cluster name, default gregor-e2e), GREGOR_PYTHON, KUBE_VERSION,
# KIND_VERSION, HELM_VERSION, GREGOR_CACHE.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
source scripts/e2e/lib.sh

cluster="${E2E_CLUSTER:-gregor-e2e}"
mode=auto keep=0 try=0 down=0
pytest_args=()
while (( $# )); do
  case "$1" in
    --stock) mode=stock ;;
    --local) mode=local ;;
    --keep) keep=1 ;;
    --try) try=1; keep=1 ;;
    --down) down=1 ;;
    --) shift; pytest_args=("$@"); break ;;
    *) echo "e2e.sh: unknown argument $1 (see the comment at the top of scripts/e2e.sh)" >&2; exit 2 ;;
  esac
  shift
done

t0=$(date +%s)
say() { echo "==> [e2e $(( $(date +%s) - t0 ))s] $*" >&2; }
state="$e2e_cache/$cluster"
mkdir -p "$state"
kubeconfig="$state/kubeconfig"
py="${GREGOR_PYTHON:-$HOME/.cache/gregor/venv/bin/python}"
[[ -x "$py" ]] || py=python3

# --- Docker -------------------------------------------------------------------------------------
if [[ "$(scripts/e2e/dockerd.sh)" == started ]]; then
  touch "$E2E_DOCKERD_MARK"
fi
stop_docker() {
  if [[ -f "$E2E_DOCKERD_MARK" ]]; then
    rm -f "$E2E_DOCKERD_MARK"
    scripts/e2e/dockerd.sh --stop
  fi
}
# Unless --keep: the cluster is deleted (once made) and a dockerd this run started is stopped,
# whatever happened; after a failure the nodes and pods are printed first.
cluster_made=0
cleanup() {
  local rc=$?
  if [[ $keep == 0 ]]; then
    if [[ $cluster_made == 1 ]]; then
      if [[ $rc != 0 ]]; then
        say "failed: nodes and pods for the record"
        "$kubectl" get nodes,pods -A -o wide >&2 2>/dev/null || true
        "$kubectl" get kafkaclusters,kafkatopics -A -o yaml >"$state/last-failure.yaml" 2>/dev/null || true
        "$kind" export logs "$state/logs" --name "$cluster" >/dev/null 2>&1 || true
        say "resources in $state/last-failure.yaml, node logs in $state/logs"
      fi
      "$kind" delete cluster --name "$cluster" >&2 2>/dev/null || true
    fi
    stop_docker
  fi
  exit "$rc"
}
trap cleanup EXIT

# --- tools: kind, helm, kubectl -----------------------------------------------------------------
kind="$(scripts/go-tool.sh kind sigs.k8s.io/kind "$KIND_VERSION")"
helm="$(scripts/go-tool.sh helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION")"

if [[ $down == 1 ]]; then
  "$kind" delete cluster --name "$cluster" >&2 || true
  exit 0
fi

[[ $mode == auto ]] && mode="$(e2e_mode)"
say "mode: $mode (Kubernetes $KUBE_VERSION, kind $KIND_VERSION, helm $HELM_VERSION)"

# kubectl: the user's own on the stock path, else the one built with the cluster's Kubernetes.
if [[ $mode == stock ]] && command -v kubectl >/dev/null; then
  kubectl="$(command -v kubectl)"
else
  kubectl="$(scripts/kube-dist.sh)/kubectl"
fi
tools="$state/bin"
mkdir -p "$tools"
ln -sf "$kind" "$tools/kind"
ln -sf "$helm" "$tools/helm"
ln -sf "$kubectl" "$tools/kubectl"
export PATH="$tools:$PATH"
export KUBECONFIG="$kubeconfig"

# --- images -------------------------------------------------------------------------------------
say "scripts/e2e/prepare.sh $mode (the images; waits for a run already under way)"
scripts/e2e/prepare.sh "$mode"
version="$e2e_version"
image="$E2E_IMAGE"
next_image="$E2E_NEXT_IMAGE"
client_image="$E2E_CLIENT_IMAGE"
node_image=""
[[ $mode == local ]] && node_image="$E2E_NODE_IMAGE"

# --- the kind cluster ---------------------------------------------------------------------------
config="$state/kind.yaml"
if [[ $mode == local ]]; then
  # kind's default CNI (kindnetd) cannot be had here: a bridge network instead.
  sed 's/^networking:$/networking:\n  disableDefaultCNI: true/' tests/e2e/kind.yaml >"$config"
  grep -q 'disableDefaultCNI: true' "$config" || e2e_fail "could not derive the local kind config"
else
  cp tests/e2e/kind.yaml "$config"
fi
if "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "deleting the leftover kind cluster $cluster"
  "$kind" delete cluster --name "$cluster" >&2
fi
say "kind create cluster $cluster${node_image:+ (node image $node_image)}"
created=$(date +%s)
cluster_made=1
"$kind" create cluster --name "$cluster" --config "$config" --kubeconfig "$kubeconfig" \
  ${node_image:+--image "$node_image"} >&2
if [[ $mode == local ]]; then
  scripts/e2e/pod-network.sh "$cluster" "$kubeconfig"
fi
"$kubectl" wait --for=condition=Ready nodes --all --timeout=300s >&2
say "cluster ready in $(( $(date +%s) - created ))s"
say "kind load docker-image $image $next_image $client_image"
"$kind" load docker-image --name "$cluster" "$image" "$next_image" "$client_image" >&2

# --- the operator ---------------------------------------------------------------------------------
release=gregor
operator_ns=gregor-system
say "helm install $release charts/gregor (two operator replicas, image $image)"
installed=$(date +%s)
"$helm" install "$release" charts/gregor --namespace "$operator_ns" --create-namespace \
  --set image.tag="$version" --set replicas=2 --wait --timeout 5m >&2
say "operator installed in $(( $(date +%s) - installed ))s"

export E2E_CLUSTER="$cluster" E2E_IMAGE="$image" E2E_NEXT_IMAGE="$next_image"
export E2E_CLIENT_IMAGE="$client_image" E2E_RELEASE="$release" E2E_OPERATOR_NAMESPACE="$operator_ns"
export E2E_CHART="$root/charts/gregor" E2E_RESULTS="$state/results.json"
export E2E_MODE="$mode"

if [[ $try == 1 ]]; then
  "$py" tests/e2e/sample.py apply
  trap - EXIT
  cat >&2 <<EOF

The kind cluster '$cluster' is running, with the operator (helm release '$release' in
namespace '$operator_ns') and the sample KafkaCluster 'events' and KafkaTopic 'orders' in
namespace 'kafka', Ready.

  export KUBECONFIG=$kubeconfig PATH=$tools:\$PATH
  kubectl get kafkaclusters,kafkatopics,pods -n kafka
  # from this machine, through the external listener's node ports on 127.0.0.1:
  gregor topics --bootstrap-server 127.0.0.1:31090 --describe --topic orders
  # from inside the cluster:
  kubectl run -n kafka -it --rm cli --image=$image --restart=Never -- \\
      console-consumer --bootstrap-server events-bootstrap:9092 --topic orders --from-beginning

Tear it down with: scripts/e2e.sh --down
EOF
  exit 0
fi

# --- the scenarios --------------------------------------------------------------------------------
say "pytest tests/e2e"
rc=0
"$py" -m pytest tests/e2e "${pytest_args[@]}" || rc=$?
say "done in $(( $(date +%s) - t0 ))s (pytest exit $rc)"
if [[ $keep == 1 ]]; then
  cat >&2 <<EOF

The kind cluster '$cluster' is left running (the clean-up scenario, when it ran, removed what
the others made, the operator included):

  export KUBECONFIG=$kubeconfig PATH=$tools:\$PATH
  kubectl get nodes,pods -A

Tear it down with: scripts/e2e.sh --down
EOF
fi
exit "$rc"
