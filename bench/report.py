#!/usr/bin/env python3
"""Turns the scratch dir of bench/run.sh into a Markdown report (stdout).

usage: report.py WORK_DIR BROKER...   (brokers in column order, e.g. gregor kafka)

Reads WORK_DIR/run.env, WORK_DIR/commands.txt and per broker and round
WORK_DIR/<broker>/round-<n>/: metrics.env, produce-*.log (ProducerPerformance; produce-txn.log is
the transactional one), consume.log and consume-txn.log (ConsumerPerformance; the second reads the
transactional topic with read_committed), rss.tsv (VmRSS samples) and server.log. With several rounds every figure
is the median over the rounds.
"""
import os
import re
import statistics
import sys

WORKLOADS = [  # name, label
    ("1k-acks1", "1 KiB acks=1"),
    ("1k-acksall", "1 KiB acks=all"),
    ("100b-acks1", "100 B acks=1"),
    ("100b-acksall", "100 B acks=all"),
]
TXN_LABEL = "1 KiB transactional"  # the label's duration comes from run.env
# The summary line ProducerPerformance prints last (the periodic ones lack the percentiles).
PRODUCE_RE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th"
)
NAMES = {"gregor": "Gregor", "kafka": "Kafka"}


def read_env(path):
    env = {}
    try:
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    env[k] = v
    except OSError:
        pass
    return env


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def parse_produce(text):
    last = None
    for m in PRODUCE_RE.finditer(text):
        last = m
    if not last:
        return {}
    g = last.groups()
    return {
        "sent": int(g[0]), "rps": float(g[1]), "mbps": float(g[2]), "avg": float(g[3]),
        "max": float(g[4]), "p50": float(g[5]), "p95": float(g[6]), "p99": float(g[7]),
        "p999": float(g[8]),
    }


def parse_consume(text):
    lines = [l.strip() for l in text.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("start.time"):
            header = [h.strip() for h in line.split(",")]
            for row in lines[i + 1:]:
                cells = [c.strip() for c in row.split(",")]
                if len(cells) == len(header):
                    d = dict(zip(header, cells))
                    try:
                        return {
                            "mb": float(d["data.consumed.in.MB"]), "mbps": float(d["MB.sec"]),
                            "n": int(d["data.consumed.in.nMsg"]), "rps": float(d["nMsg.sec"]),
                            "rebalance_ms": float(d["rebalance.time.ms"]),
                            "fetch_ms": float(d["fetch.time.ms"]),
                            "fetch_mbps": float(d["fetch.MB.sec"]),
                            "fetch_rps": float(d["fetch.nMsg.sec"]),
                        }
                    except (KeyError, ValueError):
                        return {}
    return {}


def rss_samples(path):
    """{phase: max VmRSS kB} and the overall max, from rss.tsv."""
    per_phase, top = {}, 0
    for line in read(path).splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        _, phase, kb = parts
        kb = int(kb)
        per_phase[phase] = max(per_phase.get(phase, 0), kb)
        top = max(top, kb)
    return per_phase, top


def problems(text, limit=12):
    """Distinct WARN/ERROR/exception lines (timestamps stripped), most frequent first."""
    counts = {}
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # ANSI colours (Gregor's tracing output)
    for line in text.splitlines():
        if re.search(r"\b(WARN|ERROR|FATAL|Exception|panicked|error:)", line):
            key = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
            key = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z?\s*", "", key)
            key = re.sub(r"\b\d+\.\d+(?=(ns|µs|ms|s)\b)", "#", key)[:400]  # one line whatever the duration
            counts[key] = counts.get(key, 0) + 1
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    return items[:limit], len(items)


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or isinstance(a, str) or isinstance(b, str) or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def mib(kb):
    return None if kb in (None, "") else int(kb) / 1024


def produce_rows(label, get, p999=False):
    """Report rows (label, fn, digits) for a ProducerPerformance summary; get(x) returns it.

    p999: also a p99.9 row (the transactional workload has it; the others keep their rows).
    """
    rows = [
        (f"{label}: throughput, records/s ↑", lambda x: get(x)["rps"], 0),
        (f"{label}: throughput, MiB/s ↑", lambda x: get(x)["mbps"], 1),
        (f"{label}: latency avg, ms ↓", lambda x: get(x)["avg"], 1),
        (f"{label}: latency p50, ms ↓", lambda x: get(x)["p50"], 0),
        (f"{label}: latency p99, ms ↓", lambda x: get(x)["p99"], 0),
    ]
    if p999:
        rows.append((f"{label}: latency p99.9, ms ↓", lambda x: get(x)["p999"], 0))
    rows.append((f"{label}: latency max, ms ↓", lambda x: get(x)["max"], 0))
    return rows


def consume_rows(label, get):
    """Report rows (label, fn, digits) for a ConsumerPerformance summary; get(x) returns it."""
    return [
        (f"{label}: throughput, records/s ↑", lambda x: get(x)["rps"], 0),
        (f"{label}: throughput, MiB/s ↑", lambda x: get(x)["mbps"], 1),
        (f"{label}: fetch-phase records/s ↑", lambda x: get(x)["fetch_rps"], 0),
        (f"{label}: group join (rebalance), ms ↓", lambda x: get(x)["rebalance_ms"], 0),
        (f"{label}: records read", lambda x: float(get(x)["n"]), 0),
    ]


def machine_lines(run, loads):
    """The "Machine" list: hardware, versions, and the load average before and after each run.

    loads: [(label, metrics env with loadavg_before/loadavg_after)], in run order.
    """
    out = []
    for k, label in [("cpu_model", "CPU"), ("nproc", "nproc"), ("mem_total", "memory"),
                     ("kernel", "kernel"), ("os", "OS"), ("fs", "data dir filesystem"),
                     ("java_version", "Java"), ("kafka_version", "Apache Kafka (broker and perf tools)"),
                     ("gregor_version", "Gregor"), ("gregor_bin", "Gregor binary"),
                     ("gregor_sha256", "Gregor binary sha256 (prefix)"), ("gregor_mtime", "Gregor binary built"),
                     ("bench_commit", "bench commit")]:
        out.append(f"- {label}: {run.get(k, '?')}")
    text = ", ".join(f"{label} {env.get('loadavg_before', '?')} → {env.get('loadavg_after', '?')}"
                     for label, env in loads)
    out.append(f"- load average (1/5/15 min) before → after each run: {text}")
    try:
        busy = any(float(env.get("loadavg_before", "0/").split("/")[0]) > float(run.get("nproc", 1))
                   for _, env in loads)
    except ValueError:
        busy = False
    if busy:
        out.append("- **Warning: the machine was busy with other work (load average above the number of CPUs);"
                   " absolute figures are depressed and noisy — compare ratios, and rerun on an idle machine"
                   " for publishable numbers.**")
    return out


def main():
    work, brokers = sys.argv[1], sys.argv[2:]
    run = read_env(os.path.join(work, "run.env"))
    nrounds = int(run.get("rounds", "1"))
    data = {}  # broker -> [round dict]
    for b in brokers:
        data[b] = []
        for r in range(1, nrounds + 1):
            d = os.path.join(work, b, f"round-{r}")
            env = read_env(os.path.join(d, "metrics.env"))
            prod = {w: parse_produce(read(os.path.join(d, f"produce-{w}.log")))
                    for w in [w for w, _ in WORKLOADS] + ["txn"]}
            cons = parse_consume(read(os.path.join(d, "consume.log")))
            cons_txn = parse_consume(read(os.path.join(d, "consume-txn.log")))
            phases, rss_max = rss_samples(os.path.join(d, "rss.tsv"))
            data[b].append(dict(env=env, prod=prod, cons=cons, cons_txn=cons_txn, phases=phases,
                                rss_max=rss_max, dir=d, round=r))

    def per_round(b, fn):
        vals = []
        for x in data[b]:
            try:
                v = fn(x)
            except (KeyError, TypeError, ValueError):
                v = None
            vals.append(v)
        return vals

    def med(vals):
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    rows = []  # (metric, {broker: value})

    def row(label, fn, digits=1):
        vals = {b: med(per_round(b, fn)) for b in brokers}
        rows.append((label, vals, digits, fn))

    for w, label in WORKLOADS:
        for r in produce_rows(label, lambda x, w=w: x["prod"][w]):
            row(*r)
        row(f"{label}: broker CPU, s ↓", lambda x, w=w: float(x["env"][f"produce_{w}_cpu_s"]), 1)
    for r in consume_rows("consume 1 KiB", lambda x: x["cons"]):
        row(*r)
    row("consume 1 KiB: broker CPU, s ↓", lambda x: float(x["env"]["consume_cpu_s"]), 1)
    txn_label = f"{TXN_LABEL} ({run.get('txn_duration_ms', '?')} ms txns)"
    for r in produce_rows(txn_label, lambda x: x["prod"]["txn"], p999=True):
        row(*r)
    row(f"{txn_label}: broker CPU, s ↓", lambda x: float(x["env"]["produce_txn_cpu_s"]), 1)
    for r in consume_rows("consume transactional, read_committed", lambda x: x["cons_txn"]):
        row(*r)
    row("consume transactional, read_committed: broker CPU, s ↓",
        lambda x: float(x["env"]["consume_txn_cpu_s"]), 1)
    row("broker RSS idle after start, MiB ↓", lambda x: mib(x["env"]["rss_idle_kb"]), 1)
    row("broker RSS max sampled (VmRSS, 0.5 s), MiB ↓", lambda x: mib(x["rss_max"]) if x["rss_max"] else None, 1)
    row("broker peak RSS (VmHWM at end), MiB ↓", lambda x: mib(x["env"]["vmhwm_kb"]), 1)
    row("broker RSS at end, MiB ↓", lambda x: mib(x["env"]["rss_end_kb"]), 1)
    row("broker CPU total (topics+warm-up+loads), s ↓", lambda x: float(x["env"]["cpu_total_s"]), 1)
    row("broker RSS at end: anonymous (RssAnon), MiB ↓", lambda x: mib(x["env"]["rss_anon_end_kb"]), 1)
    row("broker RSS at end: file-backed (RssFile), MiB", lambda x: mib(x["env"]["rss_file_end_kb"]), 1)
    row("broker threads at end", lambda x: float(x["env"]["threads"]), 0)
    row("data on disk at end (allocated), MiB", lambda x: int(x["env"]["data_bytes"]) / 1048576, 1)
    row("start-up until ready, s ↓", lambda x: float(x["env"]["startup_s"]), 2)
    row("shutdown (SIGTERM until exit), s ↓", lambda x: float(x["env"]["shutdown_s"]), 2)

    out = []
    p = out.append
    security = run.get("security", "plaintext")
    over = "" if security == "plaintext" else f", clients over {security.upper()} (TLS 1.3, SCRAM-SHA-512)"
    p(f"# Gregor vs Apache Kafka {run.get('kafka_version', '')} — {run.get('mode', '?')} mode{over}")
    p("")
    p(f"Run {run.get('date', '?')}, {int(run.get('total_s', 0)) // 60} min {int(run.get('total_s', 0)) % 60} s in all. "
      "Generated by `bench/run.sh`; see `bench/README.md` for how to read it.")
    p("")
    p("## Machine")
    p("")
    loads = [(f"{NAMES.get(b, b)}#{x['round']}", x["env"]) for r in range(nrounds) for b in brokers
             for x in [data[b][r]]]
    out.extend(machine_lines(run, loads))
    p("")
    p("## Setup")
    p("")
    p(f"- Brokers run one at a time, each a fresh single node on 127.0.0.1 with a fresh data dir; "
      f"{run.get('partitions')} partitions per topic, replication factor 1, one topic per workload, "
      "created with Kafka's TopicCommand.")
    p(f"- Kafka server: KRaft broker+controller in one JVM (`scripts/kafka-single-node.sh`), heap "
      f"`{run.get('kafka_heap')}` (the default of `kafka-server-start.sh`), G1 with MaxGCPauseMillis=20, "
      "log level INFO. Gregor: `gregor dev` with its defaults. Neither fsyncs per write "
      "(both leave flushing to the OS by default).")
    p(f"- Load: Kafka 4.3.1 `ProducerPerformance`, `--throughput {run.get('throughput')}`, "
      "producer defaults (batch.size=16384, linger.ms=5, buffer.memory=32 MiB, "
      "max.in.flight=5, idempotence on when acks=all) plus `compression.type=none`; "
      f"records: {run.get('records_1k')} × 1 KiB and {run.get('records_100b')} × 100 B per workload; "
      f"{run.get('warmup_records')} × 1 KiB warm-up records first (not reported). Then "
      f"`ConsumerPerformance` reads the {run.get('records_1k')} records of the 1 KiB acks=1 topic "
      "(consumer defaults, group subscribe). "
      f"Then {run.get('records_txn')} × 1 KiB in transactions (`--transactional-id`, "
      f"`--transaction-duration-ms {run.get('txn_duration_ms')}`: a commit every "
      f"{run.get('txn_duration_ms')} ms; idempotent, acks=all) into their own topic, read back by "
      "`ConsumerPerformance` with `isolation.level=read_committed`. "
      "Perf-tool JVMs: `-Xms64m -Xmx512m`.")
    broker_cpus, client_cpus = run.get("broker_cpus", "any"), run.get("client_cpus", "any")
    if broker_cpus == "any" and client_cpus == "any":
        p("- Load generator and broker share the same CPUs, so the numbers are for the pair; "
          "client-side latency includes time queued in the producer (unthrottled runs).")
    else:
        p(f"- Pinned with taskset: the broker to CPU(s) {broker_cpus}, the perf tools to CPU(s) "
          f"{client_cpus}. Client-side latency includes time queued in the producer "
          "(unthrottled runs).")
    p("- ↑ higher is better, ↓ lower is better; ratio = Gregor / Kafka. MiB = 2^20 bytes "
      "(the tools print it as \"MB\").")
    if nrounds > 1:
        p(f"- {nrounds} rounds, brokers alternating (" + ", ".join(NAMES.get(b, b) for b in brokers) +
          ", ...); every figure below is the median over the rounds (per-round throughput further down).")
    p("")
    p("## Results")
    p("")
    cols = [NAMES.get(b, b) for b in brokers]
    p("| metric | " + " | ".join(cols) + (" | ratio |" if len(brokers) == 2 else " |"))
    p("|---|" + "---:|" * len(brokers) + ("---:|" if len(brokers) == 2 else ""))
    for label, vals, digits, _ in rows:
        cells = [fmt(vals[b], digits) for b in brokers]
        r = [ratio(vals[brokers[0]], vals[brokers[1]])] if len(brokers) == 2 else []
        p(f"| {label} | " + " | ".join(cells + r) + " |")
    p("")

    if nrounds > 1:
        p("### Per round (round 1, 2, ...)")
        p("")
        p("| metric | " + " | ".join(cols) + " |")
        p("|---|" + "---|" * len(brokers))
        for label, vals, digits, fn in rows:
            if "throughput, records/s" in label or "latency p99" in label or "peak RSS" in label:
                p(f"| {label} | " + " | ".join(
                    " / ".join(fmt(v, digits) for v in per_round(b, fn)) for b in brokers) + " |")
        p("")

    p("### RSS by phase (max VmRSS sampled in each phase, MiB)")
    p("")
    phases = ["startup", "topics", "warmup"] + [w for w, _ in WORKLOADS] + ["consume", "txn", "consume-txn", "end"]
    p("| phase | " + " | ".join(cols) + " |")
    p("|---|" + "---:|" * len(brokers))
    for ph in phases:
        if any(ph in x["phases"] for b in brokers for x in data[b]):
            p(f"| {ph} | " + " | ".join(
                fmt(mib(med(per_round(b, lambda x: x["phases"].get(ph))))) for b in brokers) + " |")
    p("")

    p("### Step status")
    p("")
    runs = [(b, x) for r in range(nrounds) for b in brokers for x in [data[b][r]]]
    p("| step | " + " | ".join(NAMES.get(b, b) + (f" #{x['round']}" if nrounds > 1 else "")
                              for b, x in runs) + " |")
    p("|---|" + "---|" * len(runs))
    def produce_cell(x, w):
        e = x["env"]
        rc, wall = e.get(f"produce_{w}_rc"), e.get(f"produce_{w}_wall_s")
        sent = x["prod"][w].get("sent")
        return ("not run" if rc is None else
                f"rc {rc}, {wall} s" + (f", {sent} sent" if sent is not None else ", no summary"))

    def consume_cell(x, key, cons):
        e = x["env"]
        rc = e.get(f"{key}_rc")
        return ("not run" if rc is None else
                f"rc {rc}, {e.get(f'{key}_wall_s')} s, {x[cons].get('n', 'no summary')} read")

    for w, label in WORKLOADS:
        p(f"| produce {label} | " + " | ".join(produce_cell(x, w) for b, x in runs) + " |")
    p("| consume 1 KiB | " + " | ".join(consume_cell(x, "consume", "cons") for b, x in runs) + " |")
    p(f"| produce {TXN_LABEL} | " + " | ".join(produce_cell(x, "txn") for b, x in runs) + " |")
    p("| consume transactional, read_committed | " + " | ".join(
        consume_cell(x, "consume_txn", "cons_txn") for b, x in runs) + " |")
    p("| shutdown | " + " | ".join(
        f"rc {x['env'].get('shutdown_rc', '?')}, {x['env'].get('shutdown_s', '?')} s" for b, x in runs) + " |")
    p("")

    p("### Warnings and errors seen")
    p("")
    any_problem = False
    for b, x in runs:
        d = x["dir"]
        files = sorted(f for f in os.listdir(d) if f.endswith(".log")) if os.path.isdir(d) else []
        for f in files:
            if f == "server.log" and b == "kafka":
                continue  # Kafka's own INFO/WARN chatter is not the subject here
            items, total = problems(read(os.path.join(d, f)))
            if not items:
                continue
            any_problem = True
            p(f"- {NAMES.get(b, b)} run #{x['round']}, `{f}` ({total} distinct):")
            for text, n in items:
                text = text.replace("`", "'")
                p(f"  - {n}× `{text}`")
    if not any_problem:
        p("None in the perf-tool logs or Gregor's server log.")
    p("")
    p("## Exact commands")
    p("")
    cmds = read(os.path.join(work, "commands.txt")).rstrip().split("\n")
    if nrounds > 1:  # later rounds repeat round 1 with other ports and paths
        cut = [i for i, l in enumerate(cmds) if l.startswith("# round 2:")]
        if cut:
            cmds = cmds[:cut[0]]
        p(f"Round 1 shown; rounds 2–{nrounds} repeat it with other ports and directories.")
        p("")
    p("```")
    p("\n".join(cmds))
    p("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
