#!/usr/bin/env python3
"""Many partitions on one node, Gregor and Apache Kafka 4.3.1 measured the same way.

    bench/partitions.py                        # 100 topics x 100 partitions, both brokers
    BENCH_TOPICS=10 bench/partitions.py        # a quick pass: 1,000 partitions

For each broker in turn (never both at once), on a fresh data dir, with the open-file limit
of the broker process set to BENCH_NOFILE (default: this process's hard limit) soft and hard:
  1. start it; its RSS with no topic;
  2. create BENCH_TOPICS topics of BENCH_PARTITIONS partitions (RF 1) through the admin API,
     ten topics per request, and wait until Metadata gives every partition a leader (timed);
  3. produce one record to every partition (acks=all; timed);
  4. after 10 s idle: RSS, RSS per partition over the empty broker, open descriptors, and the
     median of 5 full Metadata requests (every topic) as a client times them;
  5. a clean stop (SIGTERM, timed), a start (timed to ready, and to every partition having a
     leader again), its idle RSS, and every partition's record read back (its end offset 1).

Writes bench/results/partitions-latest.md (BENCH_OUT) with the figures side by side, the
machine, its load average during each run, and the exact commands. Needs the test venv's
python (confluent-kafka): run it with ~/.cache/gregor/venv/bin/python, or let it re-exec itself
with that. GREGOR_BIN (default target/release/gregor); KAFKA via scripts/kafka-single-node.sh.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from brokers import use_test_venv  # noqa: E402

use_test_venv()
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from brokers import (GREGOR_BIN, KAFKA_HEAP, READY_TIMEOUT, broker, loadavg, logger,
                     machine_env, open_fds, rss_mib, wait)

TOPICS = int(os.environ.get("BENCH_TOPICS", "100"))
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "100"))
# The open-file limit of the broker process, soft and hard: the hard limit this script runs
# under unless set (20,000 on the team's machines; raising a hard limit needs privileges).
NOFILE = int(os.environ.get("BENCH_NOFILE", resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
BROKERS = os.environ.get("BENCH_BROKERS", "gregor kafka").split()
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "results" / "partitions-latest.md"))
log = logger("partitions")


def limit_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def topic_names() -> list[str]:
    return [f"p{i:03d}" for i in range(TOPICS)]


def all_led(admin: AdminClient) -> bool:
    md = admin.list_topics(timeout=30)
    led = sum(1 for name in topic_names() if name in md.topics
              for p in md.topics[name].partitions.values() if p.leader >= 0 and p.error is None)
    return led == TOPICS * PARTITIONS


def create(admin: AdminClient):
    names = topic_names()
    for i in range(0, len(names), 10):
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names[i:i + 10]],
            operation_timeout=120, request_timeout=120)
        for f in futures.values():
            f.result(timeout=180)
    wait(lambda: all_led(admin), READY_TIMEOUT, "every partition led", interval=0.5)


def produce_everywhere(bootstrap: str):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "queue.buffering.max.messages": 1_000_000})
    failed = []
    for name in topic_names():
        for part in range(PARTITIONS):
            p.produce(name, b"x" * 100, partition=part,
                      on_delivery=lambda e, m: e and failed.append(e))
        p.poll(0)
    assert p.flush(300) == 0, "unacknowledged records"
    assert not failed, failed[:5]


def metadata_ms(admin: AdminClient) -> float:
    times = []
    for _ in range(5):
        t = time.monotonic()
        admin.list_topics(timeout=60)
        times.append((time.monotonic() - t) * 1000)
    return statistics.median(times)


def all_have_their_record(bootstrap: str) -> bool:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "partitions-bench"})
    try:
        tps = [TopicPartition(n, p) for n in topic_names() for p in range(PARTITIONS)]
        ends = c.get_watermark_offsets
        return all(ends(tp, timeout=30)[1] == 1 for tp in tps)
    finally:
        c.close()


def run(kind: str, work: Path) -> dict:
    b = broker(kind, work, preexec=limit_files)
    try:
        return measure(b)
    finally:
        b.kill()


def measure(b) -> dict:
    kind = b.name
    fig: dict = {"command": " ".join(b.command), "load": []}
    t = time.monotonic()
    b.start()
    fig["first_start_s"] = time.monotonic() - t
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    time.sleep(5)
    fig["empty_rss"] = rss_mib(b.pid)
    log(f"{kind}: creating {TOPICS} x {PARTITIONS} partitions")
    t = time.monotonic()
    create(admin)
    fig["create_s"] = time.monotonic() - t
    fig["load"].append(loadavg())
    log(f"{kind}: producing one record to each")
    t = time.monotonic()
    produce_everywhere(b.bootstrap)
    fig["produce_s"] = time.monotonic() - t
    time.sleep(10)
    fig["idle_rss"] = rss_mib(b.pid)
    fig["per_partition_kib"] = (fig["idle_rss"] - fig["empty_rss"]) * 1024 / (TOPICS * PARTITIONS)
    fig["fds"] = open_fds(b.pid)
    fig["metadata_ms"] = metadata_ms(admin)
    fig["load"].append(loadavg())
    log(f"{kind}: clean stop and start")
    t = time.monotonic()
    b.stop()
    fig["stop_s"] = time.monotonic() - t
    t = time.monotonic()
    b.start()
    fig["restart_ready_s"] = time.monotonic() - t
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    wait(lambda: all_led(admin), READY_TIMEOUT, "every partition led after the restart",
         interval=0.1)
    fig["restart_led_s"] = time.monotonic() - t
    time.sleep(10)
    fig["restart_rss"] = rss_mib(b.pid)
    fig["records_kept"] = all_have_their_record(b.bootstrap)
    fig["load"].append(loadavg())
    b.stop()
    return fig


ROWS = [
    ("first start to ready (s)", "first_start_s", "{:.1f}"),
    ("RSS with no topic (MiB)", "empty_rss", "{:.0f}"),
    ("create every topic, every partition led (s)", "create_s", "{:.1f}"),
    ("one record to every partition, acks=all (s)", "produce_s", "{:.1f}"),
    ("idle RSS (MiB)", "idle_rss", "{:.0f}"),
    ("RSS per partition over the empty node (KiB)", "per_partition_kib", "{:.1f}"),
    ("open descriptors", "fds", "{}"),
    ("full Metadata request, median of 5 (ms)", "metadata_ms", "{:.0f}"),
    ("clean stop (s)", "stop_s", "{:.1f}"),
    ("start after the clean stop, to ready (s)", "restart_ready_s", "{:.2f}"),
    ("... to every partition led (s)", "restart_led_s", "{:.2f}"),
    ("idle RSS after the restart (MiB)", "restart_rss", "{:.0f}"),
    ("every record kept", "records_kept", "{}"),
    ("load average (1/5/15 min) after create, idle, restart", "load", "{}"),
]


def report(figs: dict[str, dict]) -> str:
    kinds = list(figs)
    env = machine_env(Path("/tmp"))
    lines = [f"# {TOPICS * PARTITIONS:,} partitions on one node ({TOPICS} topics x {PARTITIONS})",
             "", "`bench/partitions.py`; the broker's open-file limit "
             f"{NOFILE}. Kafka heap `{KAFKA_HEAP}`.", "",
             "| | " + " | ".join(kinds) + (" | Gregor/Kafka |" if len(kinds) == 2 else " |"),
             "|---|" + "---|" * (len(kinds) + (1 if len(kinds) == 2 else 0))]
    for label, key, fmt in ROWS:
        vals = [figs[k].get(key) for k in kinds]
        cells = [fmt.format(", ".join(v) if isinstance(v, list) else v) for v in vals]
        ratio = ""
        if len(kinds) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in vals) and vals[1]:
            ratio = f" {vals[0] / vals[1]:.2f} |"
        elif len(kinds) == 2:
            ratio = " |"
        lines.append(f"| {label} | " + " | ".join(cells) + " |" + ratio)
    lines += ["", "Machine:", "", "```", env, "```", "", "Commands:", ""]
    lines += [f"- {k}: `{figs[k]['command']}`" for k in kinds]
    return "\n".join(lines) + "\n"


def main() -> int:
    if "gregor" in BROKERS and not GREGOR_BIN.exists():
        log(f"no gregor binary at {GREGOR_BIN}: cargo build --release -p gregor")
        return 1
    figs = {}
    for kind in BROKERS:
        work = Path(tempfile.mkdtemp(prefix=f"gregor-partitions-{kind}."))
        try:
            figs[kind] = run(kind, work)
            shutil.rmtree(work, ignore_errors=True)
        except Exception as e:
            log(f"{kind} failed: {e!r}; its files stay in {work}")
            return 1
        log(f"{kind}: {figs[kind]}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report(figs))
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
