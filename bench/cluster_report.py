#!/usr/bin/env python3
"""Turns the scratch dir of bench/cluster.sh into a Markdown report (stdout).

usage: cluster_report.py WORK_DIR SYSTEM...   (systems in column order, e.g. gregor kafka)

Reads WORK_DIR/run.env, WORK_DIR/commands.txt and per system WORK_DIR/<system>/: metrics.env,
produce.log (ProducerPerformance), consume.log (ConsumerPerformance), rss.tsv (summed VmRSS of
the three nodes), failover-<n>.json and .env (one per trial) and nN/server.log. Parsing and
formatting helpers are report.py's (the single-node report).
"""
import calendar
import glob
import json
import os
import re
import statistics
import sys
import time

from report import (NAMES, consume_rows, fmt, machine_lines, mib, parse_consume, parse_produce,
                    problems, produce_rows, ratio, read, read_env)

LOAD_PHASES = ("topics", "warmup", "produce", "consume")
# (label, text counted in the nodes' logs): how much ISR churn and fencing a run caused
LOG_COUNTERS = {
    "gregor": [("ISR changes proposed by leaders", "proposing an ISR change"),
               ("AlterPartition records written by the controller", "change=AlterPartition"),
               ("brokers fenced", "change=FenceBroker { id: ")],
    "kafka": [("ISR changes applied by leaders (\"ISR updated\")", "ISR updated"),
              ("brokers fenced (\"Fencing broker\")", "Fencing broker")],
}


def rss_by_phase(path):
    """{phase: max summed VmRSS kB} from rss.tsv (failover trials folded into "failover")."""
    per_phase = {}
    for line in read(path).splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        phase = "failover" if parts[1].startswith("failover-") else parts[1]
        per_phase[phase] = max(per_phase.get(phase, 0), int(parts[2]))
    return per_phase


# When the controller fenced a broker: (regex, timestamp format, timestamp is UTC) per system.
FENCE_RE = {
    "gregor": (re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)Z.*FenceBroker \{ id: (\d+), fenced: true"),
               "%Y-%m-%dT%H:%M:%S", True),
    "kafka": (re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)\].*Fencing broker (\d+)"),
              "%Y-%m-%d %H:%M:%S", False),
}


def fence_times(s, d):
    """[(epoch seconds, broker id)] of every fencing in the nodes' logs."""
    rx, tfmt, utc = FENCE_RE[s]
    out = []
    for f in glob.glob(os.path.join(d, "n*", "server.log")):
        for line in re.sub(r"\x1b\[[0-9;]*m", "", read(f)).splitlines():
            m = rx.match(line)
            if m:
                tm = time.strptime(m.group(1), tfmt)
                base = calendar.timegm(tm) if utc else time.mktime(tm)
                frac = float(m.group(2).lstrip(".") or 0) / 10 ** len(m.group(2).lstrip("."))
                out.append((base + frac, int(m.group(3))))
    return sorted(out)


def trials(s, d):
    out, fences = [], fence_times(s, d)
    for path in sorted(glob.glob(os.path.join(d, "failover-*.json")),
                       key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
        try:
            with open(path) as f:
                t = json.load(f)
        except (OSError, ValueError):
            continue
        t.update(read_env(path[:-5] + ".env"))
        t["n"] = int(path.rsplit("-", 1)[1].split(".")[0])
        kill = t.get("kill_epoch_s")
        fenced = [ts for ts, b in fences if kill and str(b) == str(t.get("killed_node")) and ts >= kill]
        if fenced:
            t["kill_to_fence_ms"] = round((fenced[0] - kill) * 1000)
            if t.get("failover_ms") is not None:
                t["fence_to_ack_ms"] = round(t["failover_ms"] - t["kill_to_fence_ms"])
        out.append(t)
    return out


def load(work, s):
    d = os.path.join(work, s)
    return dict(
        dir=d, env=read_env(os.path.join(d, "metrics.env")),
        prod=parse_produce(read(os.path.join(d, "produce.log"))),
        cons=parse_consume(read(os.path.join(d, "consume.log"))),
        phases=rss_by_phase(os.path.join(d, "rss.tsv")), trials=trials(s, d),
    )


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def main():
    work, systems = sys.argv[1], sys.argv[2:]
    run = read_env(os.path.join(work, "run.env"))
    data = {s: load(work, s) for s in systems}

    rows = []  # (label, {system: value}, digits)

    def row(label, fn, digits=1):
        vals = {}
        for s in systems:
            try:
                vals[s] = fn(data[s])
            except (KeyError, TypeError, ValueError):
                vals[s] = None
        rows.append((label, vals, digits))

    def env_f(key, scale=1.0):
        return lambda x: float(x["env"][key]) * scale

    def fo(key):
        return lambda x: [t.get(key) for t in x["trials"]]

    for r in produce_rows("produce 1 KiB acks=all", lambda x: x["prod"]):
        row(*r)
    row("produce: CPU of the three nodes, s ↓", env_f("produce_cpu_s"), 1)
    for r in consume_rows("consume 1 KiB", lambda x: x["cons"]):
        row(*r)
    row("consume: CPU of the three nodes, s ↓", env_f("consume_cpu_s"), 1)
    row("total RSS of 3 nodes, idle after start, MiB ↓", lambda x: mib(x["env"]["rss_idle_kb"]), 1)
    row("total RSS of 3 nodes, peak sampled during load (0.5 s), MiB ↓",
        lambda x: mib(max(x["phases"].get(p, 0) for p in LOAD_PHASES) or None), 1)
    row("sum of per-node peak RSS (VmHWM) after load, MiB ↓", lambda x: mib(x["env"]["vmhwm_sum_kb"]), 1)
    row("total RSS of 3 nodes, peak sampled during failover trials, MiB ↓",
        lambda x: mib(x["phases"].get("failover")), 1)
    row("threads, 3 nodes", env_f("threads"), 0)
    row("CPU of the 3 nodes, start to end of consume, s ↓", env_f("cpu_load_s"), 1)
    row("start-up: 3 nodes until all serve and list 3 brokers, s ↓", env_f("startup_s"), 2)
    row("failover: kill -9 → first ack on partition 0, median ms ↓", lambda x: median(fo("failover_ms")(x)), 0)
    row("failover: … of which kill → killed broker fenced (controller log), median ms ↓",
        lambda x: median(fo("kill_to_fence_ms")(x)), 0)
    row("failover: … of which fenced → first ack, median ms ↓", lambda x: median(fo("fence_to_ack_ms")(x)), 0)
    row("failover: … fastest trial, ms ↓", lambda x: min(v for v in fo("failover_ms")(x) if v is not None), 0)
    row("failover: … slowest trial, ms ↓", lambda x: max(v for v in fo("failover_ms")(x) if v is not None), 0)
    row("failover: longest gap between acks, median ms ↓", lambda x: median(fo("max_ack_gap_ms")(x)), 0)
    row("failover: restarted node serving again, median s ↓",
        lambda x: median([float(v) for v in fo("restart_ready_s")(x) if v is not None]), 2)
    row("failover: restart → every partition fully replicated, median s ↓",
        lambda x: median([float(v) for v in fo("restart_full_isr_s")(x) if v is not None]), 2)
    row("failover: acknowledged records missing on read-back (all trials)",
        lambda x: float(sum(v for v in fo("acked_missing")(x) if v is not None)), 0)
    row("failover: records failed to the producer (all trials)",
        lambda x: float(sum(v for v in fo("failed")(x) if v is not None)), 0)
    row("shutdown: SIGTERM to all three until exit, s ↓", env_f("shutdown_s"), 2)

    out = []
    p = out.append
    p(f"# Gregor vs Apache Kafka {run.get('kafka_version', '')}: three-node clusters ({run.get('mode', '?')} mode)")
    p("")
    total = int(run.get("total_s", 0))
    p(f"Run {run.get('date', '?')}, {total // 60} min {total % 60} s in all. "
      "Generated by `bench/cluster.sh`; see `bench/README.md` for how to read it.")
    p("")
    p("## Machine")
    p("")
    out.extend(machine_lines(run, [(NAMES.get(s, s), data[s]["env"]) for s in systems]))
    p(f"- failover client: confluent-kafka {run.get('confluent_kafka', '?')}")
    p("")
    p("## Setup")
    p("")
    p("- One cluster at a time, each three fresh nodes on 127.0.0.1, every node a combined "
      "broker+controller (`process.roles=broker,controller`) with a static voter set "
      "(`controller.quorum.voters` listing all three), its own data dir and its own PLAINTEXT, "
      "CONTROLLER (and for Gregor, metrics) ports. Formatted with `storage format -t <id> -c <cfg>` "
      "(Kafka's `kafka-storage`, and `gregor storage`).")
    p(f"- Same `server.properties` for both: `default.replication.factor=3`, `min.insync.replicas=2`, "
      f"`num.partitions={run.get('partitions')}`, `offsets.topic.replication.factor=3`, "
      "`transaction.state.log.replication.factor=3`, `transaction.state.log.min.isr=2`, "
      "`group.initial.rebalance.delay.ms=0`. Left at the defaults, which are the same in both: "
      "`broker.heartbeat.interval.ms=2000`, `broker.session.timeout.ms=9000`, "
      "`replica.lag.time.max.ms=30000`, `replica.fetch.wait.max.ms=500`, "
      "`unclean.leader.election.enable=false`, `offsets.topic.num.partitions=50`, no per-write fsync. "
      "Raft timing differs and is not configurable alike: Kafka's `controller.quorum.election.timeout.ms=1000`, "
      "`controller.quorum.fetch.timeout.ms=2000`; Gregor's quorum uses a 100 ms heartbeat and a 500–1000 ms "
      "election timeout (fixed).")
    if run.get("extra_props"):
        p(f"- Added to every node's properties, both systems (overriding the above): `{run['extra_props']}`.")
    p(f"- Kafka nodes: one JVM each, heap `{run.get('kafka_heap')}` (the default of `kafka-server-start.sh`), "
      "G1 with MaxGCPauseMillis=20, log level INFO. Gregor nodes: `gregor server-start <cfg>`, default log level.")
    p(f"- Topics (Kafka's TopicCommand): `bench-warmup`, `bench-1k-acksall`, `bench-failover`, "
      f"{run.get('partitions')} partitions, RF 3 each.")
    p(f"- Load: Kafka {run.get('kafka_version')} `ProducerPerformance`, `--throughput {run.get('throughput')}`, "
      "`acks=all enable.idempotence=true compression.type=none`, other producer defaults (batch.size=16384, "
      f"linger.ms=5, max.in.flight=5); {run.get('records')} × 1 KiB records "
      f"(= {int(run.get('records', 0)) / 1024:.0f} MiB) after {run.get('warmup_records')} warm-up records "
      "to another topic (not reported). Then `ConsumerPerformance` reads the topic back (consumer "
      "defaults, group subscribe). Perf-tool JVMs: `-Xms64m -Xmx512m`.")
    p("- Memory: the VmRSS of the three node processes, read from `/proc` every 0.5 s and summed; "
      "VmHWM per node after the consume test, summed (the per-node peaks need not coincide).")
    p(f"- Failover ({run.get('failover_trials')} trials per system, after the load tests): `bench/failover.py` "
      f"(confluent-kafka) produces {run.get('failover_rate')} × 1 KiB records/s to partition 0 of "
      "`bench-failover` with `acks=all`, idempotence on, `linger.ms=5`, `message.timeout.ms=120000`. "
      "After 3 s of acknowledgements it looks up partition 0's leader, SIGKILLs that node's process and "
      "measures the time from the kill to the first successful delivery report for a record produced "
      "after the kill (so necessarily acknowledged by the new leader); it produces 2 s more, flushes, and reads partition 0 back to check that every "
      "acknowledged record is there. The killed node is then restarted, and the next trial waits until "
      "every partition's ISR is full again. The killed node may also be the active controller (column "
      "\"controller\" below), which adds a quorum election to the failover.")
    p("- Load generator and brokers share the same CPUs; ↑ higher is better, ↓ lower is better; "
      "ratio = Gregor / Kafka. MiB = 2^20 bytes (the tools print it as \"MB\").")
    p("")
    p("## Results")
    p("")
    p("| metric | " + " | ".join(NAMES.get(s, s) for s in systems) + " | ratio |")
    p("|---|" + "---:|" * len(systems) + "---:|")
    for label, vals, digits in rows:
        cells = [fmt(vals[s], digits) for s in systems]
        r = ratio(vals.get("gregor"), vals.get("kafka")) if {"gregor", "kafka"} <= set(systems) else "—"
        p(f"| {label} | " + " | ".join(cells) + f" | {r} |")
    p("")

    p("### Failover trials")
    p("")
    p("| system | trial | killed node | active controller before → after | kill → first ack, ms | "
      "kill → fenced, ms | fenced → first ack, ms | longest ack gap, ms | new leader | sent / acked / failed | "
      "acked but missing | restarted node serving, s | fully replicated, s |")
    p("|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for s in systems:
        for t in data[s]["trials"]:
            p(f"| {NAMES.get(s, s)} | {t['n']} | {t.get('killed_node')} | "
              f"{t.get('controller_before', '?')} → {t.get('controller_after', '?')} | "
              f"{fmt(t.get('failover_ms'), 0)} | {fmt(t.get('kill_to_fence_ms'), 0)} | "
              f"{fmt(t.get('fence_to_ack_ms'), 0)} | {fmt(t.get('max_ack_gap_ms'), 0)} | "
              f"{t.get('leader_after')} | "
              f"{t.get('sent')} / {t.get('acked')} / {t.get('failed')} | {t.get('acked_missing')} | "
              f"{t.get('restart_ready_s', '—')} | {t.get('restart_full_isr_s', '—')} |")
    p("")

    p("### Total RSS by phase (max of the summed VmRSS sampled in each phase, MiB)")
    p("")
    p("| phase | " + " | ".join(NAMES.get(s, s) for s in systems) + " |")
    p("|---|" + "---:|" * len(systems))
    for ph in ("startup",) + LOAD_PHASES + ("failover",):
        p(f"| {ph} | " + " | ".join(fmt(mib(data[s]["phases"].get(ph)), 1) for s in systems) + " |")
    p("")
    p("Per-node peak RSS (VmHWM after the consume test, MiB): " + "; ".join(
        f"{NAMES.get(s, s)} " + " / ".join(fmt(mib(v), 1) for v in data[s]["env"].get("vmhwm_nodes_kb", "").split("/") if v)
        for s in systems) + ".")
    p("")

    p("### Step status")
    p("")
    p("| step | " + " | ".join(NAMES.get(s, s) for s in systems) + " |")
    p("|---|" + "---|" * len(systems))
    for step in ("produce", "consume"):
        cells = []
        for s in systems:
            e = data[s]["env"]
            rc = e.get(f"{step}_rc")
            n = (data[s]["prod"] if step == "produce" else data[s]["cons"]).get("sent" if step == "produce" else "n")
            cells.append("not run" if rc is None else f"rc {rc}, {e.get(f'{step}_wall_s')} s, {n if n is not None else 'no summary'}")
        p(f"| {step} | " + " | ".join(cells) + " |")
    p("| failover trials | " + " | ".join(
        f"{len(data[s]['trials'])} of {run.get('failover_trials')}" for s in systems) + " |")
    p("| shutdown | " + " | ".join(
        f"rc {data[s]['env'].get('shutdown_rc', '?')}, {data[s]['env'].get('shutdown_s', '?')} s" for s in systems) + " |")
    p("")

    p("### ISR and fencing activity in the node logs (three nodes, whole run)")
    p("")
    for s in systems:
        logs = "".join(read(f) for f in sorted(glob.glob(os.path.join(data[s]["dir"], "n*", "server.log"))))
        counts = "; ".join(f"{label}: {logs.count(needle)}" for label, needle in LOG_COUNTERS.get(s, []))
        p(f"- {NAMES.get(s, s)}: {counts or '—'}")
    p("")
    p("### Warnings and errors seen")
    p("")
    p("Distinct WARN/ERROR lines from the tools' output and Gregor's node logs (Kafka's server logs "
      "are not scanned), most frequent first.")
    p("")
    any_problem = False
    for s in systems:
        d = data[s]["dir"]
        logs = sorted(glob.glob(os.path.join(d, "*.log")))
        if s == "gregor":
            logs += sorted(glob.glob(os.path.join(d, "n*", "server.log")))
        for f in logs:
            items, total = problems(read(f))
            if not items:
                continue
            any_problem = True
            p(f"- {NAMES.get(s, s)}, `{os.path.relpath(f, d)}` ({total} distinct):")
            for text, n in items:
                p(f"  - {n}× `{text.replace('`', chr(39))}`")
    if not any_problem:
        p("None.")
    p("")
    p("## Node configuration")
    p("")
    p("Node 1's `server.properties` (nodes 2 and 3 differ only in `node.id`, ports and `log.dirs`):")
    p("")
    for s in systems:
        p(f"{NAMES.get(s, s)}:")
        p("")
        p("```properties")
        p(read(os.path.join(data[s]["dir"], "n1", "server.properties")).rstrip())
        p("```")
        p("")
    p("## Exact commands")
    p("")
    p("```")
    p(read(os.path.join(work, "commands.txt")).rstrip())
    p("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
