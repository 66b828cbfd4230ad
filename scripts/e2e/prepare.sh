#!/usr/bin/env bash
# Everything scripts/e2e.sh needs before it makes a cluster, built or found in the caches: a
# running dockerd, the image built with the Dockerfile and its "-next" twin, for the local mode
# the node image (scripts/e2e/node-image.sh), and the client image. One call at a time (a
# lock): .ci/run starts it in the background while the cargo steps run, and e2e.sh's own call
# then waits for that one and finds everything up to date.
#
# Args: [local|stock] (default: what scripts/e2e.sh would choose).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/e2e/lib.sh
export DOCKER_BUILDKIT=0
t0=$(date +%s)
say() { echo "==> [prepare $(( $(date +%s) - t0 ))s] $*" >&2; }

exec 9>"$e2e_cache/prepare.lock"
flock 9
if [[ "$(scripts/e2e/dockerd.sh)" == started ]]; then
  touch "$E2E_DOCKERD_MARK"
fi
mode="${1:-$(e2e_mode)}"
say "mode $mode: $E2E_IMAGE (scripts/docker-build.sh)"
if [[ $mode == local ]]; then
  IMAGE="$E2E_IMAGE" scripts/docker-build.sh --no-smoke >&2
  say "scripts/e2e/node-image.sh"
  scripts/e2e/node-image.sh >/dev/null
  say "scripts/e2e/client-image.sh"
  scripts/e2e/client-image.sh >/dev/null
else
  IMAGE="$E2E_IMAGE" scripts/docker-build.sh --no-smoke --stock >&2
  BASE=python:3.11-slim-bookworm scripts/e2e/client-image.sh >/dev/null
fi
printf 'FROM %s\nLABEL dev.gregor.e2e="next"\n' "$E2E_IMAGE" |
  docker build -q -t "$E2E_NEXT_IMAGE" - >/dev/null
# The "-next" image this replaced, then the Gregor image under it, now both untagged.
for _ in 1 2; do
  docker image prune -f --filter label=org.opencontainers.image.title=gregor >/dev/null || true
done
say "ready ($mode)"
