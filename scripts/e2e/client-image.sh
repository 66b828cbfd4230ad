#!/usr/bin/env bash
# Builds the client image of the end-to-end suite (tests/e2e/client/Dockerfile), gregor-e2e-
# client:<stamp-free tag "local">, and prints its name. The confluent-kafka wheel (the version
# of tests/python/requirements.txt, for CPython 3.11 on manylinux x86_64) is fetched by pip on
# the host into ~/.cache/gregor/kind/wheels. BASE: the image to put it on (default: the local
# Debian image of scripts/e2e/debian-image.sh; on a machine with a registry,
# python:3.11-slim-bookworm works as well).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/e2e/lib.sh
export DOCKER_BUILDKIT=0
image="gregor-e2e-client:local"
version="$(sed -n 's/^confluent-kafka==\(.*\)$/\1/p' tests/python/requirements.txt)"
[[ -n "$version" ]] || e2e_fail "no confluent-kafka pin in tests/python/requirements.txt"
base="${BASE:-$(scripts/e2e/debian-image.sh)}"
wheels="$e2e_cache/wheels/confluent-kafka-$version"
if ! compgen -G "$wheels/*.whl" >/dev/null; then
  e2e_say "pip download confluent-kafka==$version (once)"
  mkdir -p "$wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d "$wheels" "confluent-kafka==$version"
fi
stamp="$(cat tests/e2e/client/Dockerfile "$wheels"/*.whl | sha256sum | cut -c1-16) $base $(docker image inspect -f '{{ .Id }}' "$base" 2>/dev/null)"
if [[ "$(image_stamp "$image")" != "$stamp" ]]; then
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  cp tests/e2e/client/Dockerfile "$ctx/"
  mkdir "$ctx/wheels"
  cp "$wheels"/*.whl "$ctx/wheels/"
  e2e_say "docker build $image (on $base)"
  docker build -q --build-arg "BASE=$base" --label "dev.gregor.stamp=$stamp" -t "$image" "$ctx" >/dev/null
fi
echo "$image"
