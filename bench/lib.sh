# Helpers shared by bench/run.sh (one node) and bench/cluster.sh (three nodes); sourced, not run.
# The caller sets $work (scratch dir, holds commands.txt), $step_timeout (seconds per tool run)
# and may read/clear $child_pid (the tool run_step is waiting for, so that its trap can kill it).

log() { printf '[%s] bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Records a command line (shell-quoted) in the list of exact commands for the report.
record_cmd() { local q; printf -v q '%q ' "$@"; printf '%s\n' "${q% }" >>"$work/commands.txt"; }

# run_step LOGFILE CMD...: runs CMD with a time limit in the background (so that traps fire at
# once), output to LOGFILE; returns its exit status (124 = timed out).
run_step() {
  local logf="$1"; shift
  record_cmd "$@"
  timeout --kill-after=15 "$step_timeout" "$@" >"$logf" 2>&1 </dev/null &
  child_pid=$!
  local rc=0
  wait "$child_pid" || rc=$?
  child_pid=""
  return "$rc"
}

# measured_step KEY LOGFILE CMD...: run_step, then appends KEY_rc, KEY_wall_s and KEY_cpu_s (the
# CPU time the broker processes used meanwhile, from the caller's broker_cpu_ticks) to
# $dir/metrics.env; returns the step's status.
measured_step() {
  local key="$1" logf="$2"; shift 2
  local c0 t0 rc=0; c0=$(broker_cpu_ticks); t0=$(date +%s.%N)
  run_step "$logf" "$@" || rc=$?
  {
    echo "${key}_rc=$rc"
    echo "${key}_wall_s=$(since "$t0" 1)"
    echo "${key}_cpu_s=$(cpu_since "$c0" "$(broker_cpu_ticks)")"
  } >>"$dir/metrics.env"
  return "$rc"
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
# user+system CPU time of a process, in clock ticks
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
clk_tck=$(getconf CLK_TCK)

# since T0 [DIGITS]: seconds elapsed since T0 (a `date +%s.%N` value)
since() { awk -v a="$1" -v b="$(date +%s.%N)" -v d="${2:-2}" 'BEGIN { printf "%.*f", d, b - a }'; }
# cpu_since TICKS0 TICKS1: CPU seconds between two cpu_ticks readings
cpu_since() { awk -v a="$1" -v b="$2" -v t="$clk_tck" 'BEGIN { printf "%.1f", (b - a) / t }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/'; }

# wait_gregor_ready PID METRICS_PORT LOGFILE: until Gregor's /readyz answers; fails (showing the
# log's tail) if the process exits first or $ready_timeout seconds pass.
wait_gregor_ready() {
  local pid="$1" mport="$2" logf="$3" deadline=$(( $(date +%s) + ready_timeout ))
  until curl -fsS -o /dev/null "http://127.0.0.1:$mport/readyz" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then log "gregor exited during start-up"; tail -n 40 "$logf" >&2; return 1; fi
    if (( $(date +%s) > deadline )); then log "gregor not ready after ${ready_timeout}s"; tail -n 40 "$logf" >&2; return 1; fi
    sleep 0.1
  done
}

# machine_env GREGOR_BIN REPO: the machine and version lines of run.env (key=value).
machine_env() {
  local bin="$1" repo="$2"
  echo "gregor_bin=$bin"
  echo "gregor_version=$("$bin" --version 2>&1 | head -n 1)"
  echo "gregor_sha256=$(sha256sum "$bin" | cut -c1-16)"
  echo "gregor_mtime=$(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ)"
  echo "bench_commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "kafka_version=${KAFKA_VERSION:-4.3.1}"
  echo "java_version=$(java -version 2>&1 | head -n 1)"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "mem_total=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel=$(uname -srm)"
  echo "os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || echo unknown)"
  echo "fs=$(df -T "$work" | awk 'NR == 2 { print $2 " on " $1 }')"
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
