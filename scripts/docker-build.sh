#!/usr/bin/env bash
# Builds the image (Dockerfile) here, where no registry but the package ones can be reached:
#   1. the builder image, gregor-builder:local (scripts/docker-builder.sh);
#   2. the crates of Cargo.lock vendored into vendor/crates-io (gitignored), which the
#      Dockerfile then reads instead of crates.io: a directory source plus net.offline, so a
#      missing crate fails the build at once instead of reaching for the network. Vendoring
#      beats copying ~/.cargo/registry in: it holds exactly what the lock file names, and it
#      is the same input for every build; redone only when Cargo.lock changes;
#   3. docker build --build-arg BUILDER=gregor-builder:local -t gregor:<version> .
# then prints the image's size and runs scripts/docker-smoke.sh on it (--no-smoke skips that).
#
# With --stock, step 1 is skipped and the Dockerfile's own BUILDER (rust:1.95-bookworm, from
# Docker Hub) is used: for a machine that reaches a registry.
#
# .ci/run builds the image through scripts/e2e.sh, which runs it on kind; the first build
# takes several minutes on two cores.
#
# Args: [--no-smoke] [--stock]. Env: IMAGE (default gregor:<workspace version>), BUILDER
# (default gregor-builder:local).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
smoke=1
stock=0
for arg in "$@"; do
  case "$arg" in
    --no-smoke) smoke=0 ;;
    --stock) stock=1 ;;
    *) echo "docker-build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
image="${IMAGE:-gregor:$version}"
t0=$(date +%s)
say() { echo "==> [docker-build $(( $(date +%s) - t0 ))s] $*" >&2; }
# Removes the untagged images of Gregor's builds (its build stage and its image) and nothing
# else (scripts/e2e/prepare.sh does the same after it replaces its upgrade image).
prune_replaced_images() {
  local label
  for label in dev.gregor.stage=build org.opencontainers.image.title=gregor; do
    # A concurrent prune elsewhere makes this one fail: that is no reason to fail the build.
    docker image prune -f --filter "label=$label" >/dev/null || true
  done
}

if [[ $stock == 1 ]]; then
  builder="$(sed -n 's/^ARG BUILDER=//p' Dockerfile)"
else
  say "scripts/docker-builder.sh"
  builder="$(scripts/docker-builder.sh)"
fi

vendor=vendor/crates-io
stamp="$(sha256sum Cargo.lock | cut -c1-16)"
if [[ "$(cat "$vendor/.lock-stamp" 2>/dev/null)" != "$stamp" ]]; then
  say "cargo vendor into $vendor"
  # From ~/.cargo/registry when every crate is there; from crates.io otherwise.
  cargo vendor --locked --versioned-dirs --offline "$vendor" >/dev/null 2>/tmp/gregor-vendor.log ||
    cargo vendor --locked --versioned-dirs "$vendor" >/dev/null
  echo "$stamp" >"$vendor/.lock-stamp"
fi

# Docker's current CLI uses BuildKit through the buildx plugin; without the plugin, the
# classic builder (the Dockerfile suits both).
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

# The build stage is tagged (<name>-build:cache): the next build's cache. The images earlier
# builds left untagged are then removed, and only those (the labels are Gregor's): each build
# stage holds ~2 GB of compiled crates, and a day of CI runs once filled the disk with them.
repo="$image"
[[ "${image##*/}" == *:* ]] && repo="${image%:*}"   # a tag, not a registry's port
stage="$repo-build:cache"
say "docker build --target build -t $stage (builder $builder)"
docker build --build-arg "BUILDER=$builder" --target build -t "$stage" .
say "docker build -t $image"
docker build \
  --build-arg "BUILDER=$builder" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || true)" \
  -t "$image" .
prune_replaced_images

size="$(docker image inspect -f '{{ .Size }}' "$image")"
say "$image: $size bytes ($(( size / 1024 / 1024 )) MiB)"
if [[ $smoke == 1 ]]; then
  say "scripts/docker-smoke.sh $image"
  scripts/docker-smoke.sh "$image"
fi
