"""Produce numbered records once, in a process of its own, and report what was acknowledged.

A separate process so that a test can run it where the test itself is not, e.g. inside a
node's network namespace (`ip netns exec NS python acked_producer.py ...`). Prints one JSON
object on stdout:

    {"metadata": {"leader": 1, "isr": [1, 2, 3]} | {"error": "..."},   # as first seen
     "acked": ["<prefix>0000", ...], "failed": [["<prefix>0001", "<error>"], ...],
     "unreported": 0}

    python acked_producer.py BOOTSTRAP TOPIC PARTITION COUNT PREFIX [key=value ...]

key=value pairs are librdkafka producer settings (acks=all, message.timeout.ms=8000, ...).
It waits up to message.timeout.ms plus a margin for every delivery report.
"""

from __future__ import annotations

import json
import sys

from confluent_kafka import KafkaException, Producer


def main(argv: list[str]) -> dict:
    bootstrap, topic, partition, count, prefix, *settings = argv
    partition, count = int(partition), int(count)
    config = {"bootstrap.servers": bootstrap}
    config.update(s.split("=", 1) for s in settings)
    producer = Producer(config)
    try:
        md = producer.list_topics(topic, timeout=10).topics[topic]
        p = md.partitions[partition]
        metadata = {"leader": p.leader, "isr": list(p.isrs)}
    except (KafkaException, KeyError) as e:
        metadata = {"error": repr(e)}
    acked, failed = [], []

    def delivered(err, msg):
        value = msg.value().decode()
        if err is None:
            acked.append(value)
        else:
            failed.append([value, str(err)])

    for i in range(count):
        producer.produce(topic, value=f"{prefix}{i:04d}".encode(), partition=partition,
                         on_delivery=delivered)
    timeout_s = int(config.get("message.timeout.ms", 300_000)) / 1000 + 10
    unreported = producer.flush(timeout_s)
    return {"metadata": metadata, "acked": acked, "failed": failed, "unreported": unreported}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
