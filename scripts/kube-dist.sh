#!/usr/bin/env bash
# Prints the directory holding `kube-apiserver` and `etcd` for the operator's tests against a
# real API server, building or installing them on first use.
#
# - kube-apiserver: built from the Go module proxy (k8s.io/kubernetes/cmd/kube-apiserver at
#   $KUBE_VERSION, the k8s.io/* staging modules pinned to the matching v0.x release with replace
#   lines), into ~/.cache/gregor/kube/$KUBE_VERSION/bin. A second call returns at once.
# - etcd: Debian's etcd-server package (installed with apt-get when missing), linked beside it.
#
# Env: KUBE_VERSION (default v1.37.2), GREGOR_CACHE (default ~/.cache/gregor).
set -euo pipefail

version="${KUBE_VERSION:-v1.37.2}"
cache="${GREGOR_CACHE:-$HOME/.cache/gregor}"
dir="$cache/kube/$version"
bin="$dir/bin"
log() { echo "kube-dist: $*" >&2; }
mkdir -p "$bin"

if ! command -v etcd >/dev/null && [[ ! -x /usr/bin/etcd ]]; then
  log "installing etcd-server (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$bin/etcd"

if [[ ! -x "$bin/kube-apiserver" ]]; then
  command -v go >/dev/null || { log "go not found: the API server is built from the Go module proxy"; exit 1; }
  staging_version="v0.${version#v1.}"
  src="$dir/src"
  rm -rf "$src"
  mkdir -p "$src"
  log "building kube-apiserver $version (staging modules $staging_version) in $src"
  staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
    cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
    kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
    mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)
  {
    echo "module gregor.dev/kube-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do echo "	k8s.io/$m => k8s.io/$m $staging_version"; done
    echo ")"
  } >"$src/go.mod"
  cat >"$src/tools.go" <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
  (
    cd "$src"
    export GOFLAGS=-mod=mod
    go mod tidy -e >&2
    minor="${version#v1.}"; minor="${minor%%.*}"
    v=k8s.io/component-base/version
    ldflags="-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor"
    ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/kube-apiserver.tmp" \
      k8s.io/kubernetes/cmd/kube-apiserver >&2
  )
  mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
  log "built $("$bin/kube-apiserver" --version)"
fi
echo "$bin"
