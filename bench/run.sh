#!/usr/bin/env bash
# Gregor vs Apache Kafka 4.3.1: same machine, same load generator, one broker at a time.
#
# For each broker (Gregor first, then Kafka) this starts a fresh single node on 127.0.0.1 with a
# fresh data dir, creates the topics with Kafka's own TopicCommand, runs Kafka's
# ProducerPerformance for 1 KiB/100 B records with acks=1 and acks=all, reads the 1 KiB topic back
# with ConsumerPerformance, produces 1 KiB records in transactions and reads them back with
# isolation.level=read_committed, samples the broker's RSS and CPU time, stops the broker, and
# finally writes a Markdown report (metric | Gregor | Kafka | ratio) to bench/results/latest.md.
#
# Env (all optional):
#   BENCH_QUICK=1            small record counts (smoke test, a few minutes)
#   BENCH_RECORDS_1K         records per 1 KiB workload   (default 1000000; quick 100000)
#   BENCH_RECORDS_100B       records per 100 B workload   (default 5000000; quick 500000)
#   BENCH_RECORDS_TXN        1 KiB records of the transactional workload, all read back with
#                            read_committed (default: BENCH_RECORDS_1K)
#   BENCH_TXN_DURATION_MS    ProducerPerformance --transaction-duration-ms: each transaction is
#                            committed after this long (default 100)
#   BENCH_WARMUP_RECORDS     1 KiB records produced first to an unreported warm-up topic
#                            (default 200000; quick 20000; 0 = no warm-up)
#   BENCH_PARTITIONS         partitions per topic (default 6), replication factor is always 1
#   BENCH_THROUGHPUT         ProducerPerformance --throughput (default -1 = unthrottled)
#   BENCH_STEP_TIMEOUT       seconds each perf-tool run may take before it is killed
#                            (default 900; quick 180)
#   BENCH_BROKERS            which brokers, in order (default "gregor kafka")
#   BENCH_ROUNDS             rounds (default 1); each round runs every broker once, in order
#                            (Gregor, Kafka, Gregor, Kafka, ...); the report shows medians
#   BENCH_KAFKA_HEAP         Kafka server heap (default "-Xms1G -Xmx1G", as kafka-server-start.sh)
#   BENCH_OUT                report path (default bench/results/latest.md)
#   BENCH_WORK               scratch dir for data dirs and logs (default: a new /tmp/gregor-bench.*)
#   BENCH_KEEP_WORK=1        keep the scratch dir (it is deleted on success otherwise; kept on failure)
#   BENCH_KEEP_DATA=1        keep each broker's data dir too (deleted once the broker has stopped;
#                            a full-mode run writes ~4.4 GB per broker)
#   BENCH_SECURITY           plaintext (default) or sasl_ssl: the clients connect to a SASL_SSL
#                            listener (TLS 1.3, SCRAM-SHA-512, the same self-signed CA and
#                            server certificate for both brokers); the report goes to
#                            bench/results/latest-sasl_ssl.md unless BENCH_OUT says otherwise
#   BENCH_BROKER_CPUS        CPUs the broker runs on (a taskset list, e.g. "1"; default: any)
#   BENCH_CLIENT_CPUS        CPUs the perf tools run on (e.g. "0"; default: any). With both set
#                            the broker and the load generator do not take each other's CPU, so
#                            a broker's figures show its own ceiling on the CPUs it was given
#   GREGOR_BIN               the gregor binary (default: <repo>/target/release/gregor)
# Exit status: 0 if every step succeeded, 1 if any step failed (the report is written anyway).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
scripts="$repo/scripts"
. "$here/lib.sh"

quick="${BENCH_QUICK:-0}"
if [[ "$quick" == 1 ]]; then
  n1k="${BENCH_RECORDS_1K:-100000}"; n100="${BENCH_RECORDS_100B:-500000}"
  nwarm="${BENCH_WARMUP_RECORDS:-20000}"; step_timeout="${BENCH_STEP_TIMEOUT:-180}"
  mode=quick
else
  n1k="${BENCH_RECORDS_1K:-1000000}"; n100="${BENCH_RECORDS_100B:-5000000}"
  nwarm="${BENCH_WARMUP_RECORDS:-200000}"; step_timeout="${BENCH_STEP_TIMEOUT:-900}"
  mode=full
fi
ntxn="${BENCH_RECORDS_TXN:-$n1k}"
txn_ms="${BENCH_TXN_DURATION_MS:-100}"
partitions="${BENCH_PARTITIONS:-6}"
throughput="${BENCH_THROUGHPUT:--1}"
brokers="${BENCH_BROKERS:-gregor kafka}"
rounds="${BENCH_ROUNDS:-1}"
kafka_heap="${BENCH_KAFKA_HEAP:--Xms1G -Xmx1G}"
security="${BENCH_SECURITY:-plaintext}"
case "$security" in
  plaintext) out="${BENCH_OUT:-$here/results/latest.md}" ;;
  sasl_ssl) out="${BENCH_OUT:-$here/results/latest-sasl_ssl.md}" ;;
  *) echo "bench: BENCH_SECURITY must be plaintext or sasl_ssl, not '$security'" >&2; exit 2 ;;
esac
gregor_bin="${GREGOR_BIN:-$repo/target/release/gregor}"
ready_timeout=120
# taskset prefixes for the broker and for the load generator (empty: no pinning)
broker_pin=(); client_pin=()
[[ -n "${BENCH_BROKER_CPUS:-}" ]] && broker_pin=(taskset -c "$BENCH_BROKER_CPUS")
[[ -n "${BENCH_CLIENT_CPUS:-}" ]] && client_pin=(taskset -c "$BENCH_CLIENT_CPUS")

[[ -x "$gregor_bin" ]] || { echo "bench: gregor binary not found: $gregor_bin (cargo build --release -p gregor, or set GREGOR_BIN)" >&2; exit 2; }
gregor_bin="$(cd "$(dirname "$gregor_bin")" && pwd)/$(basename "$gregor_bin")"
"$scripts/kafka-dist.sh" >/dev/null

if [[ -n "${BENCH_WORK:-}" ]]; then work="$BENCH_WORK"; mkdir -p "$work"; else work="$(mktemp -d /tmp/gregor-bench.XXXXXX)"; fi
work="$(cd "$work" && pwd)"

# sasl_ssl: a CA, a server certificate for 127.0.0.1, a SCRAM user, and the client properties
# every Kafka tool gets (`cc`: --command-config FILE); plaintext: no extra arguments.
cc=()
tls_dir="$work/tls"
if [[ "$security" == sasl_ssl ]]; then
  mkdir -p "$tls_dir"
  (
    cd "$tls_dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
      -days 2 -extfile server.ext 2>/dev/null
    cat server.pem server.key >server-bundle.pem
  )
  cat >"$work/client.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="bench" password="bench-secret";
ssl.truststore.type=PEM
ssl.truststore.location=$tls_dir/ca.pem
PROPS
  cc=(--command-config "$work/client.properties")
fi
# The read_committed consumer's config: the client properties above (if any) plus the isolation
# level, in one file, since ConsumerPerformance reads one --command-config.
{
  [[ "$security" == sasl_ssl ]] && cat "$work/client.properties"
  echo "isolation.level=read_committed"
} >"$work/read-committed.properties"
# The broker keys of the SECURE listener, for Gregor (--override) and Kafka (server.properties).
secure_props=(
  "ssl.keystore.type=PEM"
  "ssl.keystore.location=$tls_dir/server-bundle.pem"
  "listener.name.secure.sasl.enabled.mechanisms=SCRAM-SHA-512"
  "listener.name.secure.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
)
bench_scram="SCRAM-SHA-512=[name=bench,password=bench-secret]"

# name topic record-size acks records
workloads=(
  "1k-acks1   bench-1k-acks1     1024 1   $n1k"
  "1k-acksall bench-1k-acksall   1024 all $n1k"
  "100b-acks1 bench-100b-acks1   100  1   $n100"
  "100b-acksall bench-100b-acksall 100 all $n100"
)
consume_topic=bench-1k-acks1
# The transactional workload: produced after the consume step above, then read back with
# read_committed (so the steps before it run exactly as without it).
txn_topic=bench-1k-txn

# ---------------------------------------------------------------------------------------------
# process bookkeeping and cleanup (runs on exit, error, INT and TERM)
broker_pid=""      # the broker process (gregor, or the Kafka JVM)
broker_kind=""
kafka_dir=""
sampler_pid=""
child_pid=""       # the perf tool currently running
failed=0
bench_start=$(date +%s)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n "$child_pid" ]] && kill -TERM "$child_pid" 2>/dev/null || true
  [[ -n "$sampler_pid" ]] && kill -TERM "$sampler_pid" 2>/dev/null || true
  if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
    echo "bench: cleanup: killing $broker_kind (pid $broker_pid)" >&2
    if [[ "$broker_kind" == kafka && -n "$kafka_dir" ]]; then
      "$scripts/kafka-single-node.sh" kill "$kafka_dir" || kill -KILL "$broker_pid" 2>/dev/null || true
    else
      kill -KILL "$broker_pid" 2>/dev/null || true
    fi
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

# CPU ticks of the broker under test (for measured_step)
broker_cpu_ticks() { cpu_ticks "$broker_pid"; }

# ---------------------------------------------------------------------------------------------
start_gregor() {
  local dir="$1" port mport sport
  read -r port mport sport < <("$scripts/free-port.py" 3)
  local listeners="PLAINTEXT://127.0.0.1:$port"
  [[ "$security" == sasl_ssl ]] && listeners+=",SECURE://127.0.0.1:$sport"
  local cmd=("${broker_pin[@]}" "$gregor_bin" dev --data-dir "$dir/data"
    --override "listeners=$listeners"
    --override "advertised.listeners=$listeners"
    --override "metrics.listener=127.0.0.1:$mport")
  if [[ "$security" == sasl_ssl ]]; then
    cmd+=(--override "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL"
      --override "inter.broker.listener.name=PLAINTEXT" --add-scram "$bench_scram")
    local kv; for kv in "${secure_props[@]}"; do cmd+=(--override "$kv"); done
  fi
  record_cmd "${cmd[@]}"
  "${cmd[@]}" >"$dir/server.log" 2>&1 </dev/null &
  broker_pid=$!
  wait_gregor_ready "$broker_pid" "$mport" "$dir/server.log" || return 1
  "$scripts/kafka-wait-ready.py" "127.0.0.1:$port" "$ready_timeout" --pid "$broker_pid" || return 1
  bootstrap="127.0.0.1:$port"
  [[ "$security" == sasl_ssl ]] && bootstrap="127.0.0.1:$sport"
  data_dir="$dir/data"
}

start_kafka() {
  local dir="$1" sport
  kafka_dir="$dir/node"
  if [[ "$security" == sasl_ssl ]]; then
    sport="$("$scripts/free-port.py" 1)"
    export KAFKA_EXTRA_LISTENERS="SECURE://127.0.0.1:$sport"
    export KAFKA_EXTRA_PROTOCOL_MAP="SECURE:SASL_SSL"
    export KAFKA_SERVER_PROPS="$(printf '%s\n' "${secure_props[@]}")"
    export KAFKA_FORMAT_ARGS="$(printf '%s\n' --add-scram "$bench_scram")"
  fi
  record_cmd env KAFKA_HEAP_OPTS="$kafka_heap" "${broker_pin[@]}" "$scripts/kafka-single-node.sh" start "$kafka_dir"
  # (the JVM inherits the CPU affinity of the script that starts it)
  bootstrap="$(KAFKA_HEAP_OPTS="$kafka_heap" KAFKA_READY_TIMEOUT="$ready_timeout" \
    "${broker_pin[@]}" "$scripts/kafka-single-node.sh" start "$kafka_dir" | tail -n 1)" || return 1
  [[ "$security" == sasl_ssl ]] && bootstrap="127.0.0.1:$sport"
  [[ -n "$bootstrap" && -f "$kafka_dir/kafka.pid" ]] || return 1
  broker_pid="$(cat "$kafka_dir/kafka.pid")"
  # kafka.sh and kafka-run-class.sh exec java, so this is the JVM itself
  grep -q java "/proc/$broker_pid/cmdline" || { log "kafka pid $broker_pid is not the JVM"; return 1; }
  data_dir="$kafka_dir/data"
  ln -sf node/server.log "$dir/server.log"
}

stop_broker() {
  local dir="$1" t0 rc=0
  t0=$(date +%s.%N)
  if [[ "$broker_kind" == kafka ]]; then
    "$scripts/kafka-single-node.sh" stop "$kafka_dir" || rc=$?
  else
    kill -TERM "$broker_pid" 2>/dev/null || true
    local i
    for i in $(seq 1 300); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$broker_pid" 2>/dev/null; then log "gregor did not stop within 30 s of SIGTERM; SIGKILL"; kill -KILL "$broker_pid"; rc=1; fi
    wait "$broker_pid" 2>/dev/null || rc=$?
  fi
  echo "shutdown_s=$(since "$t0")" >>"$dir/metrics.env"
  echo "shutdown_rc=$rc" >>"$dir/metrics.env"
  broker_pid=""; kafka_dir=""
}

# Background sampler: "epoch_s phase VmRSS_kB" every 0.5 s while the broker lives.
start_sampler() {
  local dir="$1" pid="$2"
  (
    trap 'exit 0' TERM
    while kill -0 "$pid" 2>/dev/null; do
      rss=$(status_kb "$pid" VmRSS)
      [[ -n "$rss" ]] && printf '%s %s %s\n' "$(date +%s.%N)" "$(cat "$dir/phase" 2>/dev/null)" "$rss" >>"$dir/rss.tsv"
      sleep 0.5
    done
  ) &
  sampler_pid=$!
}

bench_broker() {
  local b="$1" dir="$work/$1/round-$2"
  rm -rf "$dir"; mkdir -p "$dir"
  : >"$dir/metrics.env"
  echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')" >>"$dir/metrics.env"
  broker_kind="$b"
  echo startup >"$dir/phase"
  log "$b: starting a fresh node"
  local t0; t0=$(date +%s.%N)
  # (errexit is off inside a function called from `if !`: every critical step checks itself)
  if [[ "$b" == gregor ]]; then start_gregor "$dir" || return 1; else start_kafka "$dir" || return 1; fi
  echo "startup_s=$(since "$t0")" >>"$dir/metrics.env"
  log "$b: ready at $bootstrap (pid $broker_pid: $(tr '\0' ' ' </proc/"$broker_pid"/cmdline | cut -c1-80))"
  echo "pid=$broker_pid" >>"$dir/metrics.env"
  start_sampler "$dir" "$broker_pid"
  echo "rss_idle_kb=$(status_kb "$broker_pid" VmRSS)" >>"$dir/metrics.env"
  local cpu_start; cpu_start=$(cpu_ticks "$broker_pid")

  echo topics >"$dir/phase"
  local topics=("${workloads[@]}")
  [[ "$nwarm" -gt 0 ]] && topics+=("warmup bench-warmup 1024 1 $nwarm")
  topics+=("txn $txn_topic 1024 all $ntxn")
  local w name topic size acks n
  for w in "${topics[@]}"; do
    read -r name topic size acks n <<<"$w"
    if ! run_step "$dir/topic-$name.log" "${client_pin[@]}" "$scripts/kafka.sh" topics --bootstrap-server "$bootstrap" "${cc[@]}" \
        --create --topic "$topic" --partitions "$partitions" --replication-factor 1; then
      log "$b: creating topic $topic failed:"; cat "$dir/topic-$name.log" >&2; failed=1
    fi
  done

  if [[ "$nwarm" -gt 0 ]]; then
    echo warmup >"$dir/phase"
    log "$b: warm-up: $nwarm x 1 KiB (not reported)"
    run_step "$dir/warmup.log" "${client_pin[@]}" "$scripts/kafka.sh" producer-perf-test --bootstrap-server "$bootstrap" "${cc[@]}" \
      --topic bench-warmup --num-records "$nwarm" --record-size 1024 --throughput "$throughput" \
      --command-property acks=1 compression.type=none || { log "$b: warm-up failed (rc $?)"; failed=1; }
  fi

  for w in "${workloads[@]}"; do
    read -r name topic size acks n <<<"$w"
    echo "$name" >"$dir/phase"
    log "$b: produce $name: $n x $size B, acks=$acks"
    local rc=0
    measured_step "produce_${name}" "$dir/produce-$name.log" "${client_pin[@]}" "$scripts/kafka.sh" producer-perf-test \
      --bootstrap-server "$bootstrap" "${cc[@]}" --topic "$topic" --num-records "$n" --record-size "$size" \
      --throughput "$throughput" --command-property "acks=$acks" compression.type=none || rc=$?
    echo "rss_after_${name}_kb=$(status_kb "$broker_pid" VmRSS)" >>"$dir/metrics.env"
    tail -n 1 "$dir/produce-$name.log" >&2
    if [[ $rc -ne 0 ]]; then log "$b: produce $name failed (rc $rc)"; failed=1; fi
    kill -0 "$broker_pid" 2>/dev/null || { log "$b: broker died!"; tail -n 40 "$dir/server.log" >&2; failed=1; return 1; }
  done

  echo consume >"$dir/phase"
  log "$b: consume $consume_topic: $n1k records"
  local rc=0
  measured_step consume "$dir/consume.log" "${client_pin[@]}" "$scripts/kafka.sh" consumer-perf-test --bootstrap-server "$bootstrap" "${cc[@]}" \
    --topic "$consume_topic" --num-records "$n1k" --group "bench-consumer-$b" --timeout 30000 || rc=$?
  {
    echo "rss_after_consume_kb=$(status_kb "$broker_pid" VmRSS)"
    echo "rss_anon_after_consume_kb=$(status_kb "$broker_pid" RssAnon)"
  } >>"$dir/metrics.env"
  tail -n 2 "$dir/consume.log" >&2
  if [[ $rc -ne 0 ]]; then log "$b: consume failed (rc $rc)"; failed=1; fi
  kill -0 "$broker_pid" 2>/dev/null || { log "$b: broker died!"; tail -n 40 "$dir/server.log" >&2; failed=1; return 1; }

  # Transactions: idempotence (so acks=all) is implied; a commit every $txn_ms ms.
  echo txn >"$dir/phase"
  log "$b: produce txn: $ntxn x 1024 B, transactions of $txn_ms ms"
  rc=0
  measured_step produce_txn "$dir/produce-txn.log" "${client_pin[@]}" "$scripts/kafka.sh" producer-perf-test \
    --bootstrap-server "$bootstrap" "${cc[@]}" --topic "$txn_topic" --num-records "$ntxn" --record-size 1024 \
    --throughput "$throughput" --transactional-id "bench-txn-$b-$2" --transaction-duration-ms "$txn_ms" \
    --command-property acks=all compression.type=none || rc=$?
  echo "rss_after_txn_kb=$(status_kb "$broker_pid" VmRSS)" >>"$dir/metrics.env"
  tail -n 1 "$dir/produce-txn.log" >&2
  if [[ $rc -ne 0 ]]; then log "$b: produce txn failed (rc $rc)"; failed=1; fi
  kill -0 "$broker_pid" 2>/dev/null || { log "$b: broker died!"; tail -n 40 "$dir/server.log" >&2; failed=1; return 1; }

  echo consume-txn >"$dir/phase"
  log "$b: consume $txn_topic with read_committed: $ntxn records"
  rc=0
  measured_step consume_txn "$dir/consume-txn.log" "${client_pin[@]}" "$scripts/kafka.sh" consumer-perf-test \
    --bootstrap-server "$bootstrap" --command-config "$work/read-committed.properties" \
    --topic "$txn_topic" --num-records "$ntxn" --group "bench-consumer-txn-$b" --timeout 30000 || rc=$?
  echo "rss_after_consume_txn_kb=$(status_kb "$broker_pid" VmRSS)" >>"$dir/metrics.env"
  tail -n 2 "$dir/consume-txn.log" >&2
  if [[ $rc -ne 0 ]]; then log "$b: consume txn failed (rc $rc)"; failed=1; fi

  echo end >"$dir/phase"
  {
    echo "vmhwm_kb=$(status_kb "$broker_pid" VmHWM)"
    echo "rss_end_kb=$(status_kb "$broker_pid" VmRSS)"
    echo "cpu_total_s=$(cpu_since "$cpu_start" "$(cpu_ticks "$broker_pid")")"
    echo "threads=$(status_kb "$broker_pid" Threads)"
    echo "rss_anon_end_kb=$(status_kb "$broker_pid" RssAnon)"
    echo "rss_file_end_kb=$(status_kb "$broker_pid" RssFile)"
    echo "data_bytes=$(du -s -B1 "$data_dir" 2>/dev/null | cut -f1)"   # allocated, not apparent (Kafka preallocates sparse indexes)
    echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"
  } >>"$dir/metrics.env"
  kill -TERM "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""
  log "$b: stopping"
  stop_broker "$dir"
  broker_kind=""
  # the logs stay in the scratch dir; the data (GBs in full mode) goes unless asked to keep it
  [[ "${BENCH_KEEP_DATA:-0}" == 1 ]] || rm -rf "$data_dir"
}

# ---------------------------------------------------------------------------------------------
{
  echo "mode=$mode"
  echo "security=$security"
  echo "records_1k=$n1k"; echo "records_100b=$n100"; echo "warmup_records=$nwarm"
  echo "records_txn=$ntxn"; echo "txn_duration_ms=$txn_ms"
  echo "partitions=$partitions"; echo "throughput=$throughput"; echo "step_timeout=$step_timeout"
  echo "rounds=$rounds"
  echo "kafka_heap=$kafka_heap"
  echo "broker_cpus=${BENCH_BROKER_CPUS:-any}"; echo "client_cpus=${BENCH_CLIENT_CPUS:-any}"
  machine_env "$gregor_bin" "$repo"
} >"$work/run.env"
: >"$work/commands.txt"
log "mode $mode: ${n1k} x 1 KiB, ${n100} x 100 B, ${ntxn} x 1 KiB in ${txn_ms} ms transactions, $partitions partitions, $rounds round(s); scratch dir $work"

for b in $brokers; do
  case "$b" in gregor|kafka) ;; *) echo "bench: unknown broker '$b'" >&2; exit 2 ;; esac
done
for r in $(seq 1 "$rounds"); do
  for b in $brokers; do
    log "round $r/$rounds: $b"
    echo "# round $r: $b" >>"$work/commands.txt"
    if ! bench_broker "$b" "$r"; then
      log "$b: run aborted"; failed=1
      [[ -n "$sampler_pid" ]] && { kill -TERM "$sampler_pid" 2>/dev/null || true; sampler_pid=""; }
      if [[ -n "$broker_pid" ]]; then stop_broker "$work/$b/round-$r" || true; fi
      broker_kind=""
    fi
  done
done
echo "total_s=$(( $(date +%s) - bench_start ))" >>"$work/run.env"

mkdir -p "$(dirname "$out")"
python3 "$here/report.py" "$work" $brokers >"$out"
suffix=""; [[ "$security" == plaintext ]] || suffix="-$security"
cp "$work/commands.txt" "$(dirname "$out")/commands-$mode$suffix.txt" 2>/dev/null || true
cat "$out"
log "report written to $out ($(( $(date +%s) - bench_start )) s in all)"
exit "$failed"
