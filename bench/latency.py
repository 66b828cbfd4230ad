#!/usr/bin/env python3
"""Produce latency at fixed rates, end-to-end latency, CPU per GiB and the machine's ceiling:
Gregor and Apache Kafka 4.3.1 measured the same way, with Kafka's own tools as the load.

    bench/latency.py                                  # both brokers, ~12 min on 2 cores
    BENCH_RATE_SECONDS=5 BENCH_MAX_RECORDS=200000 bench/latency.py   # a quick pass

1. Ceiling of this machine: loopback TCP (one socket, 256 KiB writes, BENCH_CEILING_SECONDS)
   and a sequential write of BENCH_DD_MIB MiB to the scratch dir with `dd conv=fdatasync`.
2. Maximum: for each broker in turn (never both at once; fresh data dir each), a warm-up,
   then ProducerPerformance unthrottled, BENCH_MAX_RECORDS records of BENCH_RECORD_SIZE bytes,
   acks=1 and acks=all, each to its own topic of BENCH_PARTITIONS partitions; the broker's CPU
   seconds per GiB produced (from /proc).
3. Fixed rates: the lower of the two brokers' maxima, per acks, times each of BENCH_FRACTIONS
   (default 0.25 0.5 0.75): ProducerPerformance --throughput at that rate for
   BENCH_RATE_SECONDS, its p50/p99/p99.9 latency (ms, as the producer times each record from
   send to acknowledgement), against a freshly started broker (again one at a time).
4. End to end: Kafka's EndToEndLatency (one record at a time, produce then consume,
   BENCH_E2E_RECORDS records, acks=1 and acks=all, a one-partition topic) on the same broker.

Writes bench/results/latency-latest.md (BENCH_OUT): the tables with Gregor/Kafka ratios, the
machine, its load average at each phase, and the exact commands. Needs the test venv's python
(confluent-kafka, for the admin client): it re-execs itself with ~/.cache/gregor/venv/bin/python.
GREGOR_BIN (default target/release/gregor); Kafka's jars from scripts/kafka-dist.sh.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = Path.home() / ".cache" / "gregor" / "venv" / "bin" / "python"

try:
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    if VENV_PY.exists() and Path(sys.executable) != VENV_PY:
        os.execv(VENV_PY, [str(VENV_PY), *sys.argv])
    raise

from brokers import GREGOR_BIN, KAFKA_HEAP, KAFKA_SH, broker, cpu_seconds, loadavg, logger
from brokers import machine_env

BROKERS = os.environ.get("BENCH_BROKERS", "gregor kafka").split()
SIZE = int(os.environ.get("BENCH_RECORD_SIZE", "1024"))
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "6"))
MAX_RECORDS = int(os.environ.get("BENCH_MAX_RECORDS", "1000000"))
WARMUP_RECORDS = int(os.environ.get("BENCH_WARMUP_RECORDS", "200000"))
RATE_SECONDS = float(os.environ.get("BENCH_RATE_SECONDS", "20"))
FRACTIONS = [float(f) for f in os.environ.get("BENCH_FRACTIONS", "0.25 0.5 0.75").split()]
E2E_RECORDS = int(os.environ.get("BENCH_E2E_RECORDS", "10000"))
CEILING_SECONDS = float(os.environ.get("BENCH_CEILING_SECONDS", "5"))
DD_MIB = int(os.environ.get("BENCH_DD_MIB", "2048"))
STEP_TIMEOUT = int(os.environ.get("BENCH_STEP_TIMEOUT", "900"))
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "results" / "latency-latest.md"))
ACKS = ["1", "all"]
GIB = 1 << 30
log = logger("latency")

# ProducerPerformance's summary line (the last one it prints).
PERF = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), "
                  r"([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, "
                  r"(\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")
E2E_AVG = re.compile(r"Avg latency: ([\d.]+) ms")
E2E_PCT = re.compile(r"Percentiles: 50th = (\d+), 99th = (\d+), 99.9th = (\d+)")

commands: list[str] = []


def tool(args: list[str], logfile: Path) -> str:
    """Runs `scripts/kafka.sh ARGS` (time limit BENCH_STEP_TIMEOUT); its output, also kept in
    `logfile`. Fails on a non-zero exit."""
    command = [KAFKA_SH, *args]
    commands.append(" ".join(command))
    with open(logfile, "w") as f:
        rc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT,
                            timeout=STEP_TIMEOUT).returncode
    out = logfile.read_text()
    if rc != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed ({rc}): {out[-2000:]}")
    return out


def create_topics(bootstrap: str, names: dict[str, int]):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, num_partitions=p, replication_factor=1)
                                   for n, p in names.items()], operation_timeout=60)
    for f in futures.values():
        f.result(timeout=120)


def produce(b, topic: str, records: int, acks: str, throughput: int, logfile: Path) -> dict:
    """ProducerPerformance to `topic`; its summary, and the broker's CPU seconds per GiB."""
    cpu = cpu_seconds(b.pid)
    out = tool(["producer-perf-test", "--bootstrap-server", b.bootstrap, "--topic", topic,
                "--num-records", str(records), "--record-size", str(SIZE),
                "--throughput", str(throughput),
                "--command-property", f"acks={acks}", "compression.type=none"], logfile)
    m = PERF.findall(out)
    if not m:
        raise RuntimeError(f"no ProducerPerformance summary in {logfile}")
    sent, rate, mbs, avg, mx, p50, p95, p99, p999 = m[-1]
    gib = int(sent) * SIZE / GIB
    return {"records_s": float(rate), "mb_s": float(mbs), "avg": float(avg), "max": float(mx),
            "p50": int(p50), "p95": int(p95), "p99": int(p99), "p999": int(p999),
            "cpu_s_gib": (cpu_seconds(b.pid) - cpu) / gib}


def end_to_end(b, topic: str, acks: str, logfile: Path) -> dict:
    out = tool(["e2e-latency", "--bootstrap-server", b.bootstrap, "--topic", topic,
                "--num-records", str(E2E_RECORDS), "--producer-acks", acks,
                "--record-size", str(SIZE)], logfile)
    avg, pct = E2E_AVG.search(out), E2E_PCT.search(out)
    if not (avg and pct):
        raise RuntimeError(f"no EndToEndLatency result in {logfile}")
    return {"avg": float(avg.group(1)), "p50": int(pct.group(1)), "p99": int(pct.group(2)),
            "p999": int(pct.group(3))}


def with_broker(kind: str, phase: str, body) -> dict:
    """Starts a fresh `kind` node, runs `body(b, work)`, stops it; the scratch dir is kept
    only when something failed."""
    work = Path(tempfile.mkdtemp(prefix=f"gregor-latency-{kind}-{phase}."))
    b = broker(kind, work)
    try:
        b.start()
        commands.append(" ".join(b.command))
        figs = body(b, work)
        figs["load"] = loadavg()
        b.stop()
    except BaseException:
        log(f"{kind} {phase} failed; its files stay in {work}")
        raise
    finally:
        b.kill()
    shutil.rmtree(work, ignore_errors=True)
    return figs


def warm_up(b, work: Path):
    if WARMUP_RECORDS:
        produce(b, "warmup", WARMUP_RECORDS, "1", -1, work / "warmup.log")


def maximum(b, work: Path) -> dict:
    create_topics(b.bootstrap, {"warmup": PARTITIONS, **{f"max-{a}": PARTITIONS for a in ACKS}})
    warm_up(b, work)
    figs = {}
    for acks in ACKS:
        figs[acks] = produce(b, f"max-{acks}", MAX_RECORDS, acks, -1, work / f"max-{acks}.log")
        log(f"{b.name} max acks={acks}: {figs[acks]}")
    return figs


def fixed_rates(rates: dict[str, int]):
    def body(b, work: Path) -> dict:
        topics = {"warmup": PARTITIONS, "e2e-1": 1, "e2e-all": 1}
        topics |= {f"rate-{a}-{i}": PARTITIONS for a in ACKS for i in range(len(FRACTIONS))}
        create_topics(b.bootstrap, topics)
        warm_up(b, work)
        figs: dict = {"rate": {}, "e2e": {}}
        for acks in ACKS:
            for i, f in enumerate(FRACTIONS):
                rate = max(1, int(rates[acks] * f))
                r = produce(b, f"rate-{acks}-{i}", int(rate * RATE_SECONDS), acks, rate,
                            work / f"rate-{acks}-{i}.log")
                figs["rate"][(acks, f)] = r
                log(f"{b.name} acks={acks} at {rate}/s: p50 {r['p50']} p99 {r['p99']} "
                    f"p99.9 {r['p999']} ms")
            figs["e2e"][acks] = end_to_end(b, f"e2e-{acks}", acks, work / f"e2e-{acks}.log")
            log(f"{b.name} end to end acks={acks}: {figs['e2e'][acks]}")
        return figs
    return body


def loopback_mb_s() -> float:
    """One TCP connection over 127.0.0.1, 256 KiB writes for BENCH_CEILING_SECONDS: MB/s."""
    server = socket.create_server(("127.0.0.1", 0))
    received = [0]

    def sink():
        conn, _ = server.accept()
        buf = bytearray(1 << 20)
        while (n := conn.recv_into(buf)) > 0:
            received[0] += n
        conn.close()
    t = threading.Thread(target=sink)
    t.start()
    chunk = b"\0" * (256 << 10)
    with socket.create_connection(server.getsockname()) as c:
        start = time.monotonic()
        while time.monotonic() - start < CEILING_SECONDS:
            c.sendall(chunk)
    t.join()
    elapsed = time.monotonic() - start
    server.close()
    return received[0] / elapsed / 1e6


def disk_mb_s(work: Path) -> float:
    """A sequential write of BENCH_DD_MIB MiB with an fdatasync at the end: MB/s."""
    target = work / "dd.bin"
    command = ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={DD_MIB}",
               "conv=fdatasync", "status=none"]
    commands.append(" ".join(command))
    start = time.monotonic()
    subprocess.run(command, check=True)
    elapsed = time.monotonic() - start
    target.unlink()
    return DD_MIB * (1 << 20) / elapsed / 1e6


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if b else "-"


def report(ceiling: dict, maxima: dict, rated: dict, rates: dict) -> str:
    kinds = list(maxima)
    both = len(kinds) == 2
    head = "| " + " | ".join(kinds) + (" | Gregor/Kafka |" if both else " |")
    rule = "|---" * (len(kinds) + both) + "|"
    lines = [f"# Latency at fixed rates, end to end, CPU and the machine's ceiling "
             f"({SIZE} B records)", "",
             f"`bench/latency.py`: Kafka's ProducerPerformance and EndToEndLatency against one "
             f"node at a time, {PARTITIONS} partitions per topic, RF 1; Kafka heap "
             f"`{KAFKA_HEAP}`. Latencies are in ms as the tools report them (whole ms).", "",
             "## The machine's ceiling", "",
             "| | MB/s |", "|---|---|",
             f"| loopback TCP, one connection, 256 KiB writes | {ceiling['loopback']:.0f} |",
             f"| sequential write of {DD_MIB} MiB, fdatasync (`dd`) | {ceiling['disk']:.0f} |",
             "", "## Maximum produce throughput (unthrottled)", "",
             "| acks | " + head[2:], "|---" + rule]
    for acks in ACKS:
        cells = [f"{maxima[k][acks]['records_s']:,.0f} rec/s, {maxima[k][acks]['mb_s']:.1f} MB/s"
                 for k in kinds]
        r = f" {ratio(*(maxima[k][acks]['records_s'] for k in kinds))} |" if both else ""
        lines.append(f"| {acks} | " + " | ".join(cells) + " |" + r)
    lines += ["", "Share of the loopback ceiling (MB/s over loopback MB/s), and broker CPU "
              "seconds per GiB produced:", "", "| acks | " + head[2:], "|---" + rule]
    for acks in ACKS:
        cells = [f"{maxima[k][acks]['mb_s'] / ceiling['loopback']:.0%} of loopback, "
                 f"{maxima[k][acks]['cpu_s_gib']:.1f} CPU s/GiB" for k in kinds]
        r = f" {ratio(*(maxima[k][acks]['cpu_s_gib'] for k in kinds))} (CPU) |" if both else ""
        lines.append(f"| {acks} | " + " | ".join(cells) + " |" + r)
    lines += ["", "## Produce latency at fixed rates (p50 / p99 / p99.9 ms)", "",
              "Each rate is a fraction of the lower of the brokers' maxima above, for "
              f"{RATE_SECONDS:.0f} s; the ratio column is Gregor's p99 over Kafka's.", "",
              "| acks | rate | " + head[2:], "|---|---" + rule]
    for acks in ACKS:
        for f in FRACTIONS:
            rs = [rated[k]["rate"][(acks, f)] for k in kinds]
            cells = [f"{r['p50']} / {r['p99']} / {r['p999']} ({r['records_s']:,.0f} rec/s)"
                     for r in rs]
            r = f" {ratio(rs[0]['p99'], rs[1]['p99'])} |" if both else ""
            lines.append(f"| {acks} | {f:.0%}: {int(rates[acks] * f):,}/s | "
                         + " | ".join(cells) + " |" + r)
    lines += ["", f"## End to end (EndToEndLatency, {E2E_RECORDS:,} records one at a time; "
              "avg, p50 / p99 / p99.9 ms)", "", "| acks | " + head[2:], "|---" + rule]
    for acks in ACKS:
        es = [rated[k]["e2e"][acks] for k in kinds]
        cells = [f"{e['avg']:.2f}, {e['p50']} / {e['p99']} / {e['p999']}" for e in es]
        r = f" {ratio(es[0]['p99'], es[1]['p99'])} |" if both else ""
        lines.append(f"| {acks} | " + " | ".join(cells) + " |" + r)
    lines += ["", "Load average (1/5/15 min) at the end of each broker's run: "
              + "; ".join(f"{k} max {maxima[k]['load']}, rates {rated[k]['load']}"
                          for k in kinds) + ".",
              "", "Machine:", "", "```", machine_env(Path(tempfile.gettempdir())), "```", "",
              "Commands (in order):", "", "```", *dict.fromkeys(commands), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    if "gregor" in BROKERS and not GREGOR_BIN.exists():
        log(f"no gregor binary at {GREGOR_BIN}: cargo build --release -p gregor")
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="gregor-latency-ceiling."))
    ceiling = {"loopback": loopback_mb_s(), "disk": disk_mb_s(scratch)}
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"ceiling: {ceiling}")
    maxima = {kind: with_broker(kind, "max", maximum) for kind in BROKERS}
    rates = {a: int(min(maxima[k][a]["records_s"] for k in BROKERS)) for a in ACKS}
    log(f"fixed rates from {rates}")
    rated = {kind: with_broker(kind, "rates", fixed_rates(rates)) for kind in BROKERS}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report(ceiling, maxima, rated, rates))
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
