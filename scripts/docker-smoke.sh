#!/usr/bin/env bash
# Runs the image as its users will and fails on the first thing that does not work:
#   - `gregor --version`, `gregor storage random-uuid`, `gregor-operator --help`;
#   - the image runs as 65532:65532 with only its binaries and libraries;
#   - a broker (`gregor dev`, read-only root filesystem, data on a tmpfs) on a user network,
#     advertised by its container name, its port published on 127.0.0.1 (the same number
#     inside and out, so one advertised address serves both sides);
#   - from the host's network, through the published port: create a topic, produce, consume
#     (the advertised name maps to 127.0.0.1 there through /etc/hosts: glibc's files lookup);
#   - from a second container on the network, by the broker's name (Docker's DNS server:
#     glibc's dns lookup, built into libc): describe the topic.
# Everything it starts is named gregor-smoke-<pid> and removed on exit.
#
# Args: [IMAGE] (default gregor:<workspace version>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
image="${1:-gregor:$version}"
name="gregor-smoke-$$"
say() { echo "==> [docker-smoke] $*"; }
fail() { echo "docker-smoke: FAILED: $*" >&2; exit 1; }

cleanup() {
  if [[ -n "${started:-}" ]] && [[ "${ok:-0}" != 1 ]]; then
    echo "--- broker log (last 40 lines)" >&2
    docker logs --tail 40 "$name" >&2 2>&1 || true
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker network rm "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "gregor --version"
out="$(docker run --rm "$image" --version)"
echo "$out"
[[ "$out" == "gregor $version" ]] || fail "expected 'gregor $version'"

say "gregor storage random-uuid"
id="$(docker run --rm "$image" storage random-uuid)"
echo "$id"
[[ "$id" =~ ^[A-Za-z0-9_-]{22}$ ]] || fail "not a 22-character base64url cluster id"

say "gregor-operator --help"
out="$(docker run --rm --entrypoint /usr/local/bin/gregor-operator "$image" --help)"
echo "$out"
grep -q -- '--leader-election' <<<"$out" || fail "gregor-operator --help"
docker run --rm --entrypoint /usr/local/bin/gregor-operator "$image" --version

say "user and contents"
user="$(docker image inspect -f '{{ .Config.User }}' "$image")"
[[ "$user" == "65532:65532" ]] || fail "image user is '$user', expected 65532:65532"
# No shell in the image: list its files through docker export.
docker create --name "$name" "$image" >/dev/null
docker export "$name" | tar -t | grep -v '/$' | grep -v -e '^\.dockerenv$' -e '^etc/hostname$' \
  -e '^etc/hosts$' -e '^etc/resolv.conf$' -e '^proc' -e '^sys' -e '^dev' | sort
docker rm "$name" >/dev/null

say "broker: gregor dev, read-only root, on network $name"
port="$(python3 scripts/free-port.py)"
docker network create "$name" >/dev/null
started=1
docker run -d --name "$name" --network "$name" --read-only \
  --tmpfs /var/lib/gregor:uid=65532,gid=65532,mode=0700 \
  -p "127.0.0.1:$port:$port" \
  "$image" dev --data-dir /var/lib/gregor/dev \
  --override "listeners=PLAINTEXT://0.0.0.0:$port,CONTROLLER://localhost:9093" \
  --override "advertised.listeners=PLAINTEXT://$name:$port" \
  --override "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" \
  --override "controller.listener.names=CONTROLLER" >/dev/null

# The client tools in the same image, in the host's network namespace: they reach the broker
# through the published port, as a client on the host would.
host_tool() { docker run --rm -i --network host --add-host "$name:127.0.0.1" "$image" "$@"; }
for _ in $(seq 60); do
  host_tool topics --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1 && break
  [[ "$(docker inspect -f '{{ .State.Running }}' "$name")" == true ]] || fail "the broker exited"
  sleep 1
done
host_tool topics --bootstrap-server "127.0.0.1:$port" --list >/dev/null || fail "no Kafka connection on 127.0.0.1:$port"

say "from the host: create, produce, consume on 127.0.0.1:$port"
host_tool topics --bootstrap-server "127.0.0.1:$port" --create --topic smoke --partitions 3 --replication-factor 1
printf 'one\ntwo\nthree\n' | host_tool console-producer --bootstrap-server "127.0.0.1:$port" --topic smoke
got="$(host_tool console-consumer --bootstrap-server "127.0.0.1:$port" --topic smoke --from-beginning --max-messages 3 | sort | tr '\n' ' ')"
echo "consumed: $got"
[[ "$got" == "one three two " ]] || fail "consumed '$got'"

say "from another container: by DNS name $name:$port"
out="$(docker run --rm --network "$name" "$image" topics --bootstrap-server "$name:$port" --describe --topic smoke)"
echo "$out"
grep -q 'PartitionCount: 3' <<<"$out" || fail "describe by DNS name"

ok=1
say "OK: $image"
