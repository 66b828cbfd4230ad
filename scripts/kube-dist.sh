#!/usr/bin/env bash
# Prints the directory holding the Kubernetes binaries the tests use, building or installing
# them on first use:
#
# - kube-apiserver (the operator's tests against a real API server) and, for the kind nodes of
#   the end-to-end suite (scripts/kind-node-image.sh), kubelet, kubeadm, kubectl,
#   kube-controller-manager, kube-scheduler and kube-proxy: built in one `go build` from the Go
#   module proxy (k8s.io/kubernetes/cmd/... at $KUBE_VERSION) into
#   ~/.cache/gregor/kube/$KUBE_VERSION/bin. A second call returns at once.
#   The k8s.io/* staging modules are pinned to the matching v0.x release with replace lines,
#   one for every k8s.io/* module k8s.io/kubernetes' own go.mod requires at v0.0.0: read from
#   that go.mod, not hard-coded, since each release adds some (1.37 added k8s.io/cri-streaming
#   and k8s.io/streaming; a missing one fails the build with a 403 for @v0.0.0).
# - etcd: Debian's etcd-server package (installed with apt-get when missing), linked beside them.
#
# Env: KUBE_VERSION (default v1.37.2), GREGOR_CACHE (default ~/.cache/gregor).
set -euo pipefail

version="${KUBE_VERSION:-v1.37.2}"
cache="${GREGOR_CACHE:-$HOME/.cache/gregor}"
dir="$cache/kube/$version"
bin="$dir/bin"
commands=(kube-apiserver kubelet kubeadm kubectl kube-controller-manager kube-scheduler kube-proxy)
log() { echo "kube-dist: $*" >&2; }
mkdir -p "$bin"
# One build at a time: .ci/run's own call and the node image's (scripts/e2e/prepare.sh, in the
# background) may come together; the second waits and finds the binaries built.
exec 9>"$dir/.lock"
flock 9

if ! command -v etcd >/dev/null && [[ ! -x /usr/bin/etcd ]]; then
  log "installing etcd-server (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$bin/etcd"

missing=()
for c in "${commands[@]}"; do [[ -x "$bin/$c" ]] || missing+=("$c"); done
if (( ${#missing[@]} )); then
  command -v go >/dev/null || { log "go not found: Kubernetes is built from the Go module proxy"; exit 1; }
  staging_version="v0.${version#v1.}"
  src="$dir/src"
  rm -rf "$src"
  mkdir -p "$src"
  log "building ${missing[*]} $version (staging modules $staging_version) in $src"
  gomod="$(cd "$src" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [[ -s "$gomod" ]] || { log "no go.mod for k8s.io/kubernetes@$version"; exit 1; }
  mapfile -t staging < <(sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9.-]*\) v0\.0\.0\([[:space:]].*\)\{0,1\}$/\1/p' "$gomod" | sort -u)
  (( ${#staging[@]} > 20 )) || { log "found only ${#staging[@]} staging modules in $gomod"; exit 1; }
  {
    echo "module gregor.dev/kube-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >"$src/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    for c in "${commands[@]}"; do echo "import _ \"k8s.io/kubernetes/cmd/$c\""; done
  } >"$src/tools.go"
  (
    cd "$src"
    export GOFLAGS=-mod=mod
    go mod tidy -e >&2
    minor="${version#v1.}"; minor="${minor%%.*}"
    v=k8s.io/component-base/version
    ldflags="-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor"
    ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
    mkdir -p "$src/out"
    pkgs=()
    for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$src/out/" "${pkgs[@]}" >&2
  )
  for c in "${missing[@]}"; do mv "$src/out/$c" "$bin/$c"; done
  log "built $("$bin/kube-apiserver" --version)"
fi
echo "$bin"
