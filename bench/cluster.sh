#!/usr/bin/env bash
# Gregor vs Apache Kafka 4.3.1 as three-node clusters: same machine, same load, one cluster at a time.
#
# For each system (Gregor first, then Kafka) this formats and starts three combined
# broker+controller nodes on 127.0.0.1 (static voters, fresh data dirs), creates RF 3 topics with
# Kafka's TopicCommand, runs Kafka's ProducerPerformance (1 KiB, acks=all, idempotence on) and
# ConsumerPerformance, samples the three processes' RSS, then runs failover trials: a steady
# acks=all producer on partition 0 (bench/failover.py), `kill -9` of that partition's leader,
# the time until the partition takes writes again, a restart of the killed node and a wait until
# every partition is fully replicated again. Finally it stops the cluster and writes a Markdown
# report (metric | Gregor | Kafka | ratio) to bench/results/cluster-latest.md.
#
# Env (all optional):
#   BENCH_QUICK=1              small record counts and one failover trial (smoke test)
#   BENCH_RECORDS              1 KiB records in the produce test (default 300000; quick 20000)
#   BENCH_WARMUP_RECORDS       1 KiB records produced first, not reported (default 50000; quick 5000)
#   BENCH_PARTITIONS           partitions per topic (default 6); replication factor is always 3
#   BENCH_THROUGHPUT           ProducerPerformance --throughput (default -1 = unthrottled)
#   BENCH_FAILOVER_TRIALS      failover trials per system (default 3; quick 1; 0 = none)
#   BENCH_FAILOVER_RATE        records/s of the failover producer (default 500)
#   BENCH_STEP_TIMEOUT         seconds a tool run may take before it is killed (default 900; quick 180)
#   BENCH_SYSTEMS              which clusters, in order (default "gregor kafka")
#   BENCH_EXTRA_PROPS          "key=value" lines appended to every node's server.properties, both
#                              systems (e.g. broker.session.timeout.ms=3000); default none
#   BENCH_KAFKA_HEAP           heap of each Kafka node (default "-Xms1G -Xmx1G", as kafka-server-start.sh)
#   BENCH_OUT                  report path (default bench/results/cluster-latest.md)
#   BENCH_WORK                 scratch dir (default: a new /tmp/gregor-cluster-bench.*)
#   BENCH_KEEP_WORK=1          keep the scratch dir (deleted on success otherwise; kept on failure)
#   BENCH_KEEP_DATA=1          keep the data dirs (deleted once a cluster has stopped otherwise)
#   GREGOR_BIN                 the gregor binary (default: <repo>/target/release/gregor)
#   PYTHON                     a python with confluent-kafka (default ~/.cache/gregor/venv/bin/python)
# Exit status: 0 if every step succeeded, 1 if any failed (the report is written anyway).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
scripts="$repo/scripts"
. "$here/lib.sh"

quick="${BENCH_QUICK:-0}"
if [[ "$quick" == 1 ]]; then
  nrec="${BENCH_RECORDS:-20000}"; nwarm="${BENCH_WARMUP_RECORDS:-5000}"
  trials="${BENCH_FAILOVER_TRIALS:-1}"; step_timeout="${BENCH_STEP_TIMEOUT:-180}"; mode=quick
else
  nrec="${BENCH_RECORDS:-300000}"; nwarm="${BENCH_WARMUP_RECORDS:-50000}"
  trials="${BENCH_FAILOVER_TRIALS:-3}"; step_timeout="${BENCH_STEP_TIMEOUT:-900}"; mode=full
fi
partitions="${BENCH_PARTITIONS:-6}"
throughput="${BENCH_THROUGHPUT:--1}"
failover_rate="${BENCH_FAILOVER_RATE:-500}"
systems="${BENCH_SYSTEMS:-gregor kafka}"
kafka_heap="${BENCH_KAFKA_HEAP:--Xms1G -Xmx1G}"
out="${BENCH_OUT:-$here/results/cluster-latest.md}"
gregor_bin="${GREGOR_BIN:-$repo/target/release/gregor}"
python="${PYTHON:-$HOME/.cache/gregor/venv/bin/python}"
ready_timeout=120
nodes=(1 2 3)

[[ -x "$gregor_bin" ]] || { echo "bench: gregor binary not found: $gregor_bin (cargo build --release -p gregor, or set GREGOR_BIN)" >&2; exit 2; }
gregor_bin="$(cd "$(dirname "$gregor_bin")" && pwd)/$(basename "$gregor_bin")"
"$python" -c 'import confluent_kafka' 2>/dev/null || { echo "bench: $python lacks confluent-kafka (set PYTHON)" >&2; exit 2; }
"$scripts/kafka-dist.sh" >/dev/null
for s in $systems; do
  case "$s" in gregor|kafka) ;; *) echo "bench: unknown system '$s'" >&2; exit 2 ;; esac
done

if [[ -n "${BENCH_WORK:-}" ]]; then work="$BENCH_WORK"; mkdir -p "$work"; else work="$(mktemp -d /tmp/gregor-cluster-bench.XXXXXX)"; fi
work="$(cd "$work" && pwd)"

# ---------------------------------------------------------------------------------------------
# process bookkeeping and cleanup (runs on exit, error, INT and TERM)
dir=""             # the current system's scratch dir; node N lives in $dir/nN (pid, server.log, ...)
kind=""            # gregor or kafka while a cluster runs
sampler_pid=""
child_pid=""       # the tool currently running
failed=0
bench_start=$(date +%s)

node_pid() { cat "$dir/n$1/pid" 2>/dev/null || true; }
node_alive() { local p; p="$(node_pid "$1")"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

cleanup() {
  local rc=$? n
  trap - EXIT INT TERM
  [[ -n "$child_pid" ]] && kill -TERM "$child_pid" 2>/dev/null || true
  [[ -n "$sampler_pid" ]] && kill -TERM "$sampler_pid" 2>/dev/null || true
  if [[ -n "$kind" ]]; then
    for n in "${nodes[@]}"; do
      if node_alive "$n"; then
        echo "bench: cleanup: killing $kind node $n (pid $(node_pid "$n"))" >&2
        kill -KILL "$(node_pid "$n")" 2>/dev/null || true
      fi
    done
  fi
  [[ -n "$child_pid" ]] && kill -KILL "$child_pid" 2>/dev/null || true
  if [[ $rc -ne 0 || $failed -ne 0 || "${BENCH_KEEP_WORK:-0}" == 1 ]]; then
    echo "bench: scratch dir kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# write_configs: picks ports and writes $dir/nN/server.properties for all three nodes. The keys
# are Kafka's; Gregor reads the same file (plus metrics.listener, for its /readyz).
write_configs() {
  local ports n voters=""
  read -r -a ports < <("$scripts/free-port.py" 9)
  for n in "${nodes[@]}"; do voters+="${voters:+,}$n@127.0.0.1:${ports[$((3 + n - 1))]}"; done
  for n in "${nodes[@]}"; do
    local nd="$dir/n$n" port="${ports[$((n - 1))]}" cport="${ports[$((3 + n - 1))]}" mport="${ports[$((6 + n - 1))]}"
    mkdir -p "$nd"
    echo "$port" >"$nd/port"; echo "$mport" >"$nd/mport"
    cat >"$nd/server.properties" <<PROPS
node.id=$n
process.roles=broker,controller
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$nd/data
num.partitions=$partitions
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
PROPS
    if [[ "$kind" == gregor ]]; then echo "metrics.listener=127.0.0.1:$mport" >>"$nd/server.properties"; fi
    if [[ -n "${BENCH_EXTRA_PROPS:-}" ]]; then printf '%s\n' "$BENCH_EXTRA_PROPS" >>"$nd/server.properties"; fi
  done
  bootstrap="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
}

format_node() {
  local nd="$dir/n$1" cid="$2" cmd
  if [[ "$kind" == gregor ]]; then
    cmd=("$gregor_bin" storage format -t "$cid" -c "$nd/server.properties")
  else
    cmd=("$scripts/kafka.sh" storage format -t "$cid" -c "$nd/server.properties")
  fi
  record_cmd "${cmd[@]}"
  "${cmd[@]}" >"$nd/format.log" 2>&1 || { log "$kind: formatting node $1 failed:"; cat "$nd/format.log" >&2; return 1; }
}

# start_node N: starts node N in the background (appending to its server.log); its pid (the
# gregor process or the Kafka JVM itself: kafka.sh execs java) goes to $dir/nN/pid.
start_node() {
  local nd="$dir/n$1" cmd
  if [[ "$kind" == gregor ]]; then
    cmd=("$gregor_bin" server-start "$nd/server.properties")
  else
    cmd=(env KAFKA_HEAP_OPTS="$kafka_heap" KAFKA_LOG_LEVEL=INFO "$scripts/kafka.sh" server-start "$nd/server.properties")
  fi
  record_cmd "${cmd[@]}"
  "${cmd[@]}" >>"$nd/server.log" 2>&1 </dev/null &
  echo $! >"$nd/pid"
}

# wait_node N: until node N serves clients and its metadata lists all three brokers.
wait_node() {
  local nd="$dir/n$1" pid; pid="$(node_pid "$1")"
  if [[ "$kind" == gregor ]]; then wait_gregor_ready "$pid" "$(cat "$nd/mport")" "$nd/server.log" || return 1; fi
  "$scripts/kafka-wait-ready.py" "127.0.0.1:$(cat "$nd/port")" "$ready_timeout" --pid "$pid" --brokers 3 \
    || { log "$kind: node $1 not ready"; tail -n 40 "$nd/server.log" >&2; return 1; }
  if [[ "$kind" == kafka ]] && ! grep -q java "/proc/$pid/cmdline"; then log "kafka pid $pid is not the JVM"; return 1; fi
}

stop_cluster() {
  local t0 n pid rc=0 i
  t0=$(date +%s.%N)
  for n in "${nodes[@]}"; do node_alive "$n" && kill -TERM "$(node_pid "$n")" 2>/dev/null || true; done
  for i in $(seq 1 300); do
    local up=0
    for n in "${nodes[@]}"; do node_alive "$n" && up=1; done
    [[ $up == 0 ]] && break
    sleep 0.1
  done
  for n in "${nodes[@]}"; do
    if node_alive "$n"; then
      log "$kind: node $n did not stop within 30 s of SIGTERM; SIGKILL"; kill -KILL "$(node_pid "$n")"; rc=1
    fi
  done
  wait 2>/dev/null || true
  { echo "shutdown_s=$(since "$t0")"; echo "shutdown_rc=$rc"; } >>"$dir/metrics.env"
}

# Background sampler: "epoch_s phase total_kB n1_kB n2_kB n3_kB" (VmRSS) every 0.5 s; follows
# restarted nodes through their pid files; a dead node counts 0.
start_sampler() {
  (
    trap 'exit 0' TERM
    while true; do
      local total=0 cols="" n pid rss
      for n in "${nodes[@]}"; do
        pid="$(node_pid "$n")"; rss=""
        [[ -n "$pid" ]] && rss=$(status_kb "$pid" VmRSS)
        rss="${rss:-0}"; total=$((total + rss)); cols+=" $rss"
      done
      printf '%s %s %s%s\n' "$(date +%s.%N)" "$(cat "$dir/phase" 2>/dev/null)" "$total" "$cols" >>"$dir/rss.tsv"
      sleep 0.5
    done
  ) &
  sampler_pid=$!
}

# sum_nodes FN: the sum over the three nodes of `FN PID` (e.g. cpu_ticks)
sum_nodes() { local n t=0 v; for n in "${nodes[@]}"; do v=$("$@" "$(node_pid "$n")"); t=$((t + ${v:-0})); done; echo "$t"; }
broker_cpu_ticks() { sum_nodes cpu_ticks; }   # for measured_step
vmhwm() { status_kb "$1" VmHWM; }
vmrss() { status_kb "$1" VmRSS; }
threads() { status_kb "$1" Threads; }

topic_create() {
  local topic="$1"
  run_step "$dir/topic-$topic.log" "$scripts/kafka.sh" topics --bootstrap-server "$bootstrap" \
    --create --topic "$topic" --partitions "$partitions" --replication-factor 3 \
    || { log "$kind: creating topic $topic failed:"; cat "$dir/topic-$topic.log" >&2; failed=1; return 1; }
}

# wait_full_isr LOGFILE: until no partition is under-replicated (bench/isr_wait.py); the log
# gets the seconds waited. Fails after $ready_timeout seconds.
wait_full_isr() {
  "$python" "$here/isr_wait.py" "$bootstrap" "$ready_timeout" >"$1" 2>&1 \
    || { log "$kind: partitions still under-replicated:"; cat "$1" >&2; return 1; }
}

# controller_leader: the node id of the active controller (DescribeQuorum), or "?"
controller_leader() {
  "$scripts/kafka.sh" metadata-quorum --bootstrap-server "$bootstrap" describe --status 2>/dev/null \
    | awk -F':[ \t]*' '$1 == "LeaderId" { print $2; found = 1 } END { if (!found) print "?" }'
}

failover_trial() {
  local t="$1" pre="$dir/failover-$t" pids="" n rc=0
  echo "failover-$t" >"$dir/phase"
  wait_full_isr "$pre-isr-before.log" || return 1
  for n in "${nodes[@]}"; do pids+="${pids:+,}$n=$(node_pid "$n")"; done
  echo "controller_before=$(controller_leader)" >"$pre.env"
  log "$kind: failover trial $t/$trials (active controller: node $(cut -d= -f2 "$pre.env"))"
  run_step "$pre.log" "$python" "$here/failover.py" "$bootstrap" bench-failover --pids "$pids" \
    --out "$pre.json" --rate "$failover_rate" || rc=$?
  tail -n 1 "$pre.log" >&2
  [[ $rc -eq 0 ]] || { log "$kind: failover trial $t failed (rc $rc)"; failed=1; }
  local killed; killed="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["killed_node"])' "$pre.json" 2>/dev/null || true)"
  [[ -n "$killed" ]] || { log "$kind: no node was killed"; return 1; }
  echo "killed_node=$killed" >>"$pre.env"
  echo "controller_after=$(controller_leader)" >>"$pre.env"
  if node_alive "$killed"; then log "$kind: node $killed survived kill -9?"; return 1; fi
  wait "$(node_pid "$killed")" 2>/dev/null || true
  local t0; t0=$(date +%s.%N)
  log "$kind: restarting node $killed"
  start_node "$killed"
  wait_node "$killed" || return 1
  echo "restart_ready_s=$(since "$t0")" >>"$pre.env"
  wait_full_isr "$pre-isr-after.log" || return 1
  echo "restart_full_isr_s=$(since "$t0")" >>"$pre.env"
  log "$kind: node $killed back; every partition fully replicated $(since "$t0" 1) s after the restart"
}

bench_cluster() {
  kind="$1"; dir="$work/$1"
  rm -rf "$dir"; mkdir -p "$dir"
  : >"$dir/metrics.env"
  echo "loadavg_before=$(loadavg)" >>"$dir/metrics.env"
  echo startup >"$dir/phase"
  write_configs
  local cid n
  cid="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  log "$kind: formatting and starting three nodes (cluster id $cid)"
  for n in "${nodes[@]}"; do format_node "$n" "$cid" || return 1; done
  local t0; t0=$(date +%s.%N)
  for n in "${nodes[@]}"; do start_node "$n"; done
  for n in "${nodes[@]}"; do wait_node "$n" || return 1; done
  echo "startup_s=$(since "$t0")" >>"$dir/metrics.env"
  start_sampler
  log "$kind: ready at $bootstrap (pids $(node_pid 1) $(node_pid 2) $(node_pid 3))"
  echo "rss_idle_kb=$(sum_nodes vmrss)" >>"$dir/metrics.env"
  local cpu_start; cpu_start=$(sum_nodes cpu_ticks)

  echo topics >"$dir/phase"
  local topic
  for topic in bench-warmup bench-1k-acksall bench-failover; do topic_create "$topic" || return 1; done

  local props=(acks=all enable.idempotence=true compression.type=none)
  if [[ "$nwarm" -gt 0 ]]; then
    echo warmup >"$dir/phase"
    log "$kind: warm-up: $nwarm x 1 KiB, acks=all (not reported)"
    run_step "$dir/warmup.log" "$scripts/kafka.sh" producer-perf-test --bootstrap-server "$bootstrap" \
      --topic bench-warmup --num-records "$nwarm" --record-size 1024 --throughput "$throughput" \
      --command-property "${props[@]}" || { log "$kind: warm-up failed (rc $?)"; failed=1; }
  fi

  echo produce >"$dir/phase"
  log "$kind: produce: $nrec x 1 KiB, acks=all, idempotent"
  local rc=0
  measured_step produce "$dir/produce.log" "$scripts/kafka.sh" producer-perf-test --bootstrap-server "$bootstrap" \
    --topic bench-1k-acksall --num-records "$nrec" --record-size 1024 --throughput "$throughput" \
    --command-property "${props[@]}" || rc=$?
  tail -n 1 "$dir/produce.log" >&2
  [[ $rc -eq 0 ]] || { log "$kind: produce failed (rc $rc)"; failed=1; }

  echo consume >"$dir/phase"
  log "$kind: consume: $nrec records"
  rc=0
  measured_step consume "$dir/consume.log" "$scripts/kafka.sh" consumer-perf-test --bootstrap-server "$bootstrap" \
    --topic bench-1k-acksall --num-records "$nrec" --group "bench-consumer-$kind" --timeout 30000 || rc=$?
  tail -n 2 "$dir/consume.log" >&2
  [[ $rc -eq 0 ]] || { log "$kind: consume failed (rc $rc)"; failed=1; }

  for n in "${nodes[@]}"; do node_alive "$n" || { log "$kind: node $n died!"; tail -n 40 "$dir/n$n/server.log" >&2; failed=1; return 1; }; done
  {
    echo "vmhwm_sum_kb=$(sum_nodes vmhwm)"
    echo "vmhwm_nodes_kb=$(for n in "${nodes[@]}"; do vmhwm "$(node_pid "$n")"; done | paste -sd/)"
    echo "rss_after_load_kb=$(sum_nodes vmrss)"
    echo "threads=$(sum_nodes threads)"
    echo "cpu_load_s=$(cpu_since "$cpu_start" "$(sum_nodes cpu_ticks)")"
    echo "data_bytes=$(du -s -B1 "$dir"/n*/data 2>/dev/null | awk '{ t += $1 } END { print t }')"
  } >>"$dir/metrics.env"

  local t
  for t in $(seq 1 "$trials"); do failover_trial "$t" || { failed=1; break; }; done

  echo end >"$dir/phase"
  echo "loadavg_after=$(loadavg)" >>"$dir/metrics.env"
  kill -TERM "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""
  log "$kind: stopping"
  stop_cluster
  kind=""
  [[ "${BENCH_KEEP_DATA:-0}" == 1 ]] || rm -rf "$dir"/n*/data
}

# ---------------------------------------------------------------------------------------------
{
  echo "mode=$mode"
  echo "records=$nrec"; echo "warmup_records=$nwarm"; echo "partitions=$partitions"
  echo "throughput=$throughput"; echo "step_timeout=$step_timeout"
  echo "failover_trials=$trials"; echo "failover_rate=$failover_rate"
  echo "kafka_heap=$kafka_heap"
  echo "extra_props=$(printf '%s' "${BENCH_EXTRA_PROPS:-}" | paste -sd' ')"
  echo "confluent_kafka=$("$python" -c 'import confluent_kafka as c; print(c.__version__, "/ librdkafka", c.libversion()[0])')"
  machine_env "$gregor_bin" "$repo"
} >"$work/run.env"
: >"$work/commands.txt"
log "mode $mode: $nrec x 1 KiB, $partitions partitions, RF 3, $trials failover trial(s); scratch dir $work"

for s in $systems; do
  echo "# $s" >>"$work/commands.txt"
  if ! bench_cluster "$s"; then
    log "$s: run aborted"; failed=1
    [[ -n "$sampler_pid" ]] && { kill -TERM "$sampler_pid" 2>/dev/null || true; sampler_pid=""; }
    [[ -n "$kind" ]] && { stop_cluster || true; kind=""; }
  fi
done
echo "total_s=$(( $(date +%s) - bench_start ))" >>"$work/run.env"

mkdir -p "$(dirname "$out")"
python3 "$here/cluster_report.py" "$work" $systems >"$out"
cp "$work/commands.txt" "$(dirname "$out")/cluster-commands-$mode.txt" 2>/dev/null || true
cat "$out"
log "report written to $out ($(( $(date +%s) - bench_start )) s in all)"
exit "$failed"
