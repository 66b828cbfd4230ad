#!/usr/bin/env bash
# A single-node KRaft Apache Kafka (broker+controller in one JVM) on 127.0.0.1.
#   kafka-single-node.sh start DIR [PORT [CONTROLLER_PORT]]  format DIR (first time) and start;
#                                  free ports are picked when not given; waits until ready
#   kafka-single-node.sh stop DIR   SIGTERM, then SIGKILL after 30 s
#   kafka-single-node.sh kill DIR   SIGKILL at once
#   kafka-single-node.sh status DIR exit 0 if running
# DIR holds server.properties, data/, server.log (stdout+stderr), kafka.pid and port.
# Restarting on an existing DIR keeps its data and ports. Env: KAFKA_LOG_LEVEL (INFO for the
# server by default), KAFKA_READY_TIMEOUT (default 120 s), KAFKA_SERVER_PROPS (extra
# "key=value" lines appended to server.properties on first start), KAFKA_EXTRA_LISTENERS
# ("NAME://host:port,..." added to listeners and advertised.listeners) with
# KAFKA_EXTRA_PROTOCOL_MAP ("NAME:PROTOCOL,..." added to listener.security.protocol.map), e.g.
# an SSL listener whose ssl.* keys come in KAFKA_SERVER_PROPS; KAFKA_FORMAT_ARGS (extra
# arguments to `kafka-storage format` on first start, one per line), e.g. the two lines
# "--add-scram" and "SCRAM-SHA-512=[name=admin,password=admin-secret]".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"; dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || { sed -n '2,16p' "$0" >&2; exit 2; }

running() { [[ -f "$dir/kafka.pid" ]] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; }

case "$cmd" in
start)
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  if running; then echo "kafka-single-node: already running (pid $(cat "$dir/kafka.pid"))" >&2; exit 1; fi
  "$here/kafka-dist.sh" >/dev/null
  if [[ ! -f "$dir/server.properties" ]]; then
    port="${3:-}"; cport="${4:-}"
    read -r p1 p2 < <("$here/free-port.py" 2)
    port="${port:-$p1}"; cport="${cport:-$p2}"
    [[ "$cport" != "$port" ]] || cport="$p1"
    extra_l="${KAFKA_EXTRA_LISTENERS:+,$KAFKA_EXTRA_LISTENERS}"
    extra_m="${KAFKA_EXTRA_PROTOCOL_MAP:+,$KAFKA_EXTRA_PROTOCOL_MAP}"
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport$extra_l
advertised.listeners=PLAINTEXT://127.0.0.1:$port$extra_l
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$extra_m
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
    if [[ -n "${KAFKA_SERVER_PROPS:-}" ]]; then printf '%s\n' "$KAFKA_SERVER_PROPS" >>"$dir/server.properties"; fi
    echo "$port" >"$dir/port"
  fi
  port="$(cat "$dir/port")"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    uuid="$("$here/kafka.sh" storage random-uuid)"
    format_args=()
    if [[ -n "${KAFKA_FORMAT_ARGS:-}" ]]; then mapfile -t format_args <<<"$KAFKA_FORMAT_ARGS"; fi
    "$here/kafka.sh" storage format -t "$uuid" -c "$dir/server.properties" \
      ${format_args[@]+"${format_args[@]}"} >"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; exit 1; }
  fi
  KAFKA_LOG_LEVEL="${KAFKA_LOG_LEVEL:-INFO}" nohup "$here/kafka.sh" server-start "$dir/server.properties" \
    >>"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
  if ! "$here/kafka-wait-ready.py" "127.0.0.1:$port" "${KAFKA_READY_TIMEOUT:-120}" --pid "$(cat "$dir/kafka.pid")"; then
    tail -n 40 "$dir/server.log" >&2
    "$0" kill "$dir" || true
    exit 1
  fi
  echo "127.0.0.1:$port"
  ;;
stop|kill)
  running || { rm -f "$dir/kafka.pid"; exit 0; }
  pid="$(cat "$dir/kafka.pid")"
  if [[ "$cmd" == kill ]]; then kill -KILL "$pid"; else kill -TERM "$pid"; fi
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; sleep 0.5; fi
  rm -f "$dir/kafka.pid"
  ;;
status) running ;;
*) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
