#!/usr/bin/env python3
"""Wait until no partition of a cluster is under-replicated (every ISR is the full replica set).

usage: isr_wait.py BOOTSTRAP [TIMEOUT_SECONDS]

Polls the cluster's metadata (confluent-kafka, every 0.2 s, internal topics included) and prints
the seconds waited. Exits 0 once fully replicated, 1 on timeout (printing what is still short).
"""
import sys
import time

from confluent_kafka.admin import AdminClient


def short_partitions(admin):
    """[(topic, partition, replicas, isr)] for every partition whose ISR lacks a replica."""
    md = admin.list_topics(timeout=5)
    return [(t.topic, p.id, list(p.replicas), list(p.isrs))
            for t in md.topics.values() for p in t.partitions.values()
            if set(p.isrs) != set(p.replicas)]


def main(argv):
    bootstrap = argv[0]
    timeout = float(argv[1]) if len(argv) > 1 else 120.0
    admin = AdminClient({"bootstrap.servers": bootstrap})
    t0 = time.monotonic()
    last = "no metadata yet"
    while time.monotonic() - t0 < timeout:
        try:
            short = short_partitions(admin)
            if not short:
                print(f"{time.monotonic() - t0:.2f}")
                return 0
            last = f"{len(short)} under-replicated, e.g. {short[:3]}"
        except Exception as e:  # noqa: BLE001 - a node may be restarting; try again
            last = repr(e)
        time.sleep(0.2)
    print(f"isr_wait: not fully replicated after {timeout}s: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
