#!/usr/bin/env python3
"""Produce throughput and latency at fixed rates with two load generators, end-to-end latency,
broker CPU per GiB and the machine's ceiling: Gregor and Apache Kafka 4.3.1 measured the same way.

    bench/latency.py                                  # both brokers, ~15 min on 2 cores
    BENCH_RATE_SECONDS=5 BENCH_MAX_RECORDS=200000 bench/latency.py   # a quick pass

The generators: Kafka's ProducerPerformance (what Kafka users run; a JVM that shares the two
cores and saturates first) and librdkafka's rdkafka_performance (native, built by
bench/rdkafka-perf.sh from Debian's librdkafka source package; BENCH_GENERATORS picks).

1. Ceiling of this machine: loopback TCP (one socket, 256 KiB writes, BENCH_CEILING_SECONDS)
   and a sequential write of BENCH_DD_MIB MiB to the scratch dir with `dd conv=fdatasync`.
2. Maximum: for each broker in turn (never both at once; fresh data dir each), a warm-up,
   then each generator unthrottled, BENCH_MAX_RECORDS records of BENCH_RECORD_SIZE bytes,
   acks=1 and acks=all, each run to its own topic of BENCH_PARTITIONS partitions; the broker's
   and the generator's CPU seconds per GiB produced (from /proc and getrusage).
3. Fixed rates: per generator and acks, the lower of the two brokers' maxima times each of
   BENCH_FRACTIONS (default 0.25 0.5 0.75), for BENCH_RATE_SECONDS each: p50/p99/p99.9 of
   each record's time from send to acknowledgement (ProducerPerformance: whole ms;
   rdkafka_performance: every record's latency in µs, from its -A file), against a freshly
   started broker (again one at a time).
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
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from brokers import use_test_venv  # noqa: E402

use_test_venv()
from confluent_kafka.admin import AdminClient, NewTopic

from brokers import GREGOR_BIN, KAFKA_HEAP, KAFKA_SH, broker, cpu_seconds, loadavg, logger
from brokers import machine_env

BROKERS = os.environ.get("BENCH_BROKERS", "gregor kafka").split()
GENERATORS = os.environ.get("BENCH_GENERATORS", "kafka-perf rdkafka-perf").split()
SIZE = int(os.environ.get("BENCH_RECORD_SIZE", "1024"))
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "6"))
MAX_RECORDS = int(os.environ.get("BENCH_MAX_RECORDS", "3000000"))
WARMUP_RECORDS = int(os.environ.get("BENCH_WARMUP_RECORDS", "200000"))
RATE_SECONDS = float(os.environ.get("BENCH_RATE_SECONDS", "15"))
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
# rdkafka_performance's summary line (the last one it prints).
RDKAFKA = re.compile(r"(\d+) messages produced \(\d+ bytes\), (\d+) delivered "
                     r"\(offset -?\d+, (\d+) failed\) in (\d+)ms")
RDKAFKA_PERF: list[str] = []
# Kafka deletes a topic's files a minute after the topic by default: at once, like Gregor.
os.environ["KAFKA_SERVER_PROPS"] = "file.delete.delay.ms=1000"

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


def children_cpu() -> float:
    """CPU seconds of this script's finished child processes (the load generators)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile of sorted `values` (nearest rank)."""
    return values[min(len(values) - 1, max(0, int(round(q * len(values))) - 1))]


def produce(gen: str, b, topic: str, records: int, acks: str, throughput: int,
            logfile: Path) -> dict:
    """`records` records to `topic` with generator `gen` (unthrottled when `throughput` is -1):
    records/s, latency percentiles in ms, and the broker's and the generator's CPU s/GiB."""
    cpu, gen_cpu = cpu_seconds(b.pid), children_cpu()
    if gen == "kafka-perf":
        r = kafka_perf(b, topic, records, acks, throughput, logfile)
    else:
        r = rdkafka_perf(b, topic, records, acks, throughput, logfile)
    gib = records * SIZE / GIB
    r["mb_s"] = r["records_s"] * SIZE / 1e6
    # Each run's records go at once: a full run writes tens of GB otherwise.
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.delete_topics([topic])[topic].result(60)
    r["cpu_s_gib"] = (cpu_seconds(b.pid) - cpu) / gib
    r["gen_cpu_s_gib"] = (children_cpu() - gen_cpu) / gib
    return r


def kafka_perf(b, topic: str, records: int, acks: str, throughput: int, logfile: Path) -> dict:
    out = tool(["producer-perf-test", "--bootstrap-server", b.bootstrap, "--topic", topic,
                "--num-records", str(records), "--record-size", str(SIZE),
                "--throughput", str(throughput),
                "--command-property", f"acks={acks}", "compression.type=none"], logfile)
    m = PERF.findall(out)
    if not m:
        raise RuntimeError(f"no ProducerPerformance summary in {logfile}")
    sent, rate, _, avg, mx, p50, p95, p99, p999 = m[-1]
    if int(sent) != records:
        raise RuntimeError(f"ProducerPerformance sent {sent} of {records}: {logfile}")
    return {"records_s": float(rate), "avg": float(avg), "max": float(mx), "p50": int(p50),
            "p95": int(p95), "p99": int(p99), "p999": int(p999)}


def rdkafka_perf(b, topic: str, records: int, acks: str, throughput: int,
                 logfile: Path) -> dict:
    latencies = logfile.with_suffix(".latency")
    # linger.ms=5, librdkafka's and the Java client's default (rdkafka_performance sets 1000,
    # which at a fixed rate would measure its own lingering).
    command = [RDKAFKA_PERF[0], "-P", "-t", topic, "-b", b.bootstrap, "-s", str(SIZE),
               "-c", str(records), "-a", "-1" if acks == "all" else acks, "-q",
               "-X", "linger.ms=5"]
    if throughput > 0:
        # Every record's latency, from its send time written into its payload (a copy each).
        command += ["-r", str(throughput), "-l", "-A", str(latencies)]
    commands.append(" ".join(command))
    with open(logfile, "w") as f:
        rc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT,
                            timeout=STEP_TIMEOUT).returncode
    out = logfile.read_text()
    m = RDKAFKA.findall(out)
    if rc != 0 or not m:
        raise RuntimeError(f"rdkafka_performance failed ({rc}): {out[-2000:]}")
    produced, delivered, failed, ms = (int(v) for v in m[-1])
    if delivered != records or failed:
        raise RuntimeError(f"rdkafka_performance delivered {delivered} of {records}, "
                           f"{failed} failed: {logfile}")
    r = {"records_s": delivered / (ms / 1000)}
    if throughput > 0:
        lat = sorted(int(line) / 1000 for line in latencies.read_text().split())
        latencies.unlink()
        r |= {"avg": sum(lat) / len(lat), "max": lat[-1], "p50": percentile(lat, 0.5),
              "p95": percentile(lat, 0.95), "p99": percentile(lat, 0.99),
              "p999": percentile(lat, 0.999)}
    return r


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
        produce("kafka-perf", b, "warmup", WARMUP_RECORDS, "1", -1, work / "warmup.log")


def maximum(b, work: Path) -> dict:
    create_topics(b.bootstrap, {"warmup": PARTITIONS, **{f"max-{g}-{a}": PARTITIONS
                                                          for g in GENERATORS for a in ACKS}})
    warm_up(b, work)
    figs: dict = {}
    for gen in GENERATORS:
        for acks in ACKS:
            r = produce(gen, b, f"max-{gen}-{acks}", MAX_RECORDS, acks, -1,
                        work / f"max-{gen}-{acks}.log")
            figs[(gen, acks)] = r
            log(f"{b.name} {gen} max acks={acks}: {r['records_s']:,.0f} rec/s, broker "
                f"{r['cpu_s_gib']:.2f} CPU s/GiB, generator {r['gen_cpu_s_gib']:.2f}")
    return figs


def fixed_rates(rates: dict):
    def body(b, work: Path) -> dict:
        topics = {"warmup": PARTITIONS, "e2e-1": 1, "e2e-all": 1}
        topics |= {f"rate-{g}-{a}-{i}": PARTITIONS for g in GENERATORS for a in ACKS
                   for i in range(len(FRACTIONS))}
        create_topics(b.bootstrap, topics)
        warm_up(b, work)
        figs: dict = {"rate": {}, "e2e": {}}
        for gen in GENERATORS:
            for acks in ACKS:
                for i, f in enumerate(FRACTIONS):
                    rate = max(1, int(rates[(gen, acks)] * f))
                    name = f"rate-{gen}-{acks}-{i}"
                    r = produce(gen, b, name, int(rate * RATE_SECONDS), acks, rate,
                                work / f"{name}.log")
                    figs["rate"][(gen, acks, f)] = r
                    log(f"{b.name} {gen} acks={acks} at {rate}/s: p50 {r['p50']} "
                        f"p99 {r['p99']} p99.9 {r['p999']} ms")
        for acks in ACKS:
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


def ms(v) -> str:
    """A latency in ms as a tool gave it: whole ms as is, µs-precise ones to 0.1 ms."""
    return str(v) if isinstance(v, int) else f"{v:.1f}"


GENERATOR_NAMES = {"kafka-perf": "ProducerPerformance", "rdkafka-perf": "rdkafka_performance"}


def table(head: list[str], kinds: list[str]) -> list[str]:
    """A Markdown table's first two lines: `head` columns, one per broker, and the ratio."""
    cols = head + kinds + (["Gregor/Kafka"] if len(kinds) == 2 else [])
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def row(cells: list[str], values: list, pair: tuple | None) -> str:
    """A table row: `cells`, then `values` (one per broker), then the ratio of `pair`."""
    extra = [ratio(*pair)] if pair and len(values) == 2 else []
    return "| " + " | ".join(cells + values + extra) + " |"


def report(ceiling: dict, maxima: dict, rated: dict, rates: dict) -> str:
    kinds = list(maxima)
    loop = ceiling["loopback"]
    lines = [f"# Produce throughput and latency with two generators, end to end, CPU and the "
             f"machine's ceiling ({SIZE} B records)", "",
             f"`bench/latency.py` against one node at a time, {PARTITIONS} partitions per topic, "
             f"RF 1; Kafka heap `{KAFKA_HEAP}`. Generators: Kafka's ProducerPerformance (a JVM "
             f"on the same two cores) and librdkafka's rdkafka_performance (native).", "",
             "## The machine's ceiling", "", "| | MB/s |", "|---|---|",
             f"| loopback TCP, one connection, 256 KiB writes | {loop:.0f} |",
             f"| sequential write of {DD_MIB} MiB, fdatasync (`dd`) | {ceiling['disk']:.0f} |",
             "", "## Maximum produce throughput (unthrottled)", "",
             "MB/s are 10^6 bytes of record values; the share is of the loopback ceiling.", "",
             *table(["generator", "acks"], kinds)]
    for gen in GENERATORS:
        for acks in ACKS:
            rs = [maxima[k][(gen, acks)] for k in kinds]
            values = [f"{r['records_s']:,.0f} rec/s, {r['mb_s']:.0f} MB/s "
                      f"({r['mb_s'] / loop:.0%})" for r in rs]
            lines.append(row([GENERATOR_NAMES[gen], acks], values,
                             tuple(r["records_s"] for r in rs)))
    lines += ["", "CPU seconds per GiB produced in those runs: the broker's (the ratio is of "
              "these), and the generator's:", "", *table(["generator", "acks"], kinds)]
    for gen in GENERATORS:
        for acks in ACKS:
            rs = [maxima[k][(gen, acks)] for k in kinds]
            values = [f"broker {r['cpu_s_gib']:.1f}, generator {r['gen_cpu_s_gib']:.1f}"
                      for r in rs]
            lines.append(row([GENERATOR_NAMES[gen], acks], values,
                             tuple(r["cpu_s_gib"] for r in rs)))
    lines += ["", "## Produce latency at fixed rates (p50 / p99 / p99.9 ms)", "",
              "Each rate is a fraction of the lower of the two brokers' maxima with that "
              f"generator, for {RATE_SECONDS:.0f} s; the ratio is Gregor's p99 over Kafka's.", "",
              *table(["generator", "acks", "rate"], kinds)]
    for gen in GENERATORS:
        for acks in ACKS:
            for f in FRACTIONS:
                rs = [rated[k]["rate"][(gen, acks, f)] for k in kinds]
                values = [f"{ms(r['p50'])} / {ms(r['p99'])} / {ms(r['p999'])}" for r in rs]
                rate = f"{f:.0%}: {int(rates[(gen, acks)] * f):,}/s"
                lines.append(row([GENERATOR_NAMES[gen], acks, rate], values,
                                 tuple(r["p99"] for r in rs)))
    lines += ["", f"## End to end (EndToEndLatency, {E2E_RECORDS:,} records one at a time; "
              "avg, p50 / p99 / p99.9 ms)", "", *table(["acks"], kinds)]
    for acks in ACKS:
        es = [rated[k]["e2e"][acks] for k in kinds]
        values = [f"{e['avg']:.2f}, {e['p50']} / {e['p99']} / {e['p999']}" for e in es]
        lines.append(row([acks], values, tuple(e["p99"] for e in es)))
    lines += ["", "Load average (1/5/15 min) at the end of each broker's runs: "
              + "; ".join(f"{k} maxima {maxima[k]['load']}, rates {rated[k]['load']}"
                          for k in kinds) + ".",
              "", "Machine:", "", "```", machine_env(Path(tempfile.gettempdir())), "```", "",
              "Commands (in order):", "", "```", *dict.fromkeys(commands), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    if "gregor" in BROKERS and not GREGOR_BIN.exists():
        log(f"no gregor binary at {GREGOR_BIN}: cargo build --release -p gregor")
        return 1
    if "rdkafka-perf" in GENERATORS:
        built = subprocess.run([str(ROOT / "bench" / "rdkafka-perf.sh")], check=True,
                               capture_output=True, text=True)
        RDKAFKA_PERF.append(built.stdout.strip().splitlines()[-1])
    scratch = Path(tempfile.mkdtemp(prefix="gregor-latency-ceiling."))
    ceiling = {"loopback": loopback_mb_s(), "disk": disk_mb_s(scratch)}
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"ceiling: {ceiling}")
    maxima = {kind: with_broker(kind, "max", maximum) for kind in BROKERS}
    rates = {(g, a): int(min(maxima[k][(g, a)]["records_s"] for k in BROKERS))
             for g in GENERATORS for a in ACKS}
    log(f"fixed rates from {rates}")
    rated = {kind: with_broker(kind, "rates", fixed_rates(rates)) for kind in BROKERS}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report(ceiling, maxima, rated, rates))
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
