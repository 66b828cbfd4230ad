# Shared by the scripts of scripts/e2e (sourced, not run).
#
# Env: GREGOR_CACHE (default ~/.cache/gregor), DEBIAN_MIRROR (default
# http://deb.debian.org/debian).

e2e_cache="${GREGOR_CACHE:-$HOME/.cache/gregor}/kind"
debian_mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$e2e_cache"

# Pinned versions of what the local kind path builds.
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"

e2e_say() { echo "==> [${0##*/}] $*" >&2; }
e2e_fail() { echo "${0##*/}: FAILED: $*" >&2; exit 1; }

# debian_root NAME PACKAGES: prints the path of a gzipped tarball of a Debian bookworm minbase
# root with PACKAGES (comma-separated) installed, made with debootstrap once and cached as
# $e2e_cache/NAME.tar.gz (a new package list makes a new root: it is part of the name's stamp).
debian_root() {
  local name="$1" include="$2"
  local tarball="$e2e_cache/$name.tar.gz" stamp
  stamp="$(echo "bookworm $include" | sha256sum | cut -c1-16)"
  if [[ -s "$tarball" && "$(cat "$tarball.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "$tarball"
    return 0
  fi
  command -v debootstrap >/dev/null || e2e_fail "debootstrap not found (apt-get install debootstrap)"
  [[ $EUID == 0 ]] || e2e_fail "debootstrap needs root"
  local work
  work="$(mktemp -d "$e2e_cache/root.XXXXXX")"
  e2e_say "debootstrap --variant=minbase bookworm +$include (once; cached as $tarball)"
  if ! debootstrap --variant=minbase --include="$include" bookworm "$work/root" "$debian_mirror" \
    >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    rm -rf "$work"
    e2e_fail "debootstrap $name"
  fi
  rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/* \
    "$work"/root/var/log/* "$work"/root/usr/share/doc/* "$work"/root/usr/share/man/*
  tar -C "$work/root" --numeric-owner -czf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  echo "$stamp" >"$tarball.stamp"
  rm -rf "$work"
  echo "$tarball"
}

# image_stamp IMAGE: the value of the dev.gregor.stamp label of IMAGE, empty when absent.
image_stamp() {
  docker image inspect -f '{{ index .Config.Labels "dev.gregor.stamp" }}' "$1" 2>/dev/null || true
}

# go_module_dir MODULE@VERSION: the module's source directory in the Go module cache,
# downloading it when missing.
go_module_dir() {
  (cd "$e2e_cache" && GOFLAGS=-mod=mod go mod download -json "$1" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
}

# e2e_mode: "local" where Docker Hub cannot be reached or the local node image was built
# before, "stock" otherwise (see scripts/e2e.sh).
e2e_mode() {
  if docker image inspect "gregor-kind-node:$KUBE_VERSION" >/dev/null 2>&1 ||
    [[ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' https://registry-1.docker.io/v2/ || true)" == 000 ]]; then
    echo local
  else
    echo stock
  fi
}

# Images of the suite, by name.
e2e_version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml 2>/dev/null)"
E2E_IMAGE="gregor:$e2e_version"
# The upgrade scenario's "new version": the same binaries as a distinct image.
E2E_NEXT_IMAGE="gregor:$e2e_version-next"
E2E_CLIENT_IMAGE="gregor-e2e-client:local"
E2E_NODE_IMAGE="gregor-kind-node:$KUBE_VERSION"
# Written when a script of the suite started dockerd, so the run's end stops it again.
E2E_DOCKERD_MARK="$e2e_cache/dockerd-started"
