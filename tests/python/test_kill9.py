"""Durability across SIGKILL: every record acknowledged with acks=all is readable after a
restart, at the offset its acknowledgement named."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer

from conftest import wait_for
from helpers import create_topic, read_all


def test_acked_records_survive_kill9(restartable_broker, topic_name):
    broker = restartable_broker
    partitions, max_records = 3, 200_000
    create_topic(broker.bootstrap, topic_name, partitions)

    acked = []          # (partition, offset, value) acknowledged without error
    failed = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked.append((msg.partition(), msg.offset(), msg.value()))
            else:
                failed.append((str(err), msg.value()))

    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2,
                  "enable.idempotence": False, "retries": 1_000_000,
                  "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500,
                  "message.timeout.ms": 120_000, "queue.buffering.max.messages": 20_000})
    stop = threading.Event()
    sent = [0]

    def produce_loop():
        i = 0
        while not stop.is_set() and i < max_records:
            try:
                p.produce(topic_name, value=f"record-{i:08d}".encode(), on_delivery=on_delivery)
                i += 1
                sent[0] = i
            except BufferError:
                p.poll(0.05)
                continue
            if i % 100 == 0:
                p.poll(0)
                time.sleep(0.005)  # pace the stream: ~20k records/s at most

    t = threading.Thread(target=produce_loop, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(acked) >= 5000, 60, "5000 acknowledged records before the kill")
        sent_at_kill = sent[0]
        broker.kill()
        acked_at_kill = len(acked)
        # keep producing into the void for a while: these are queued and retried
        wait_for(lambda: sent[0] >= sent_at_kill + 2000 or not t.is_alive(), 30,
                 "the producer to keep sending while the broker is down")
        broker.start()
        wait_for(lambda: len(acked) >= acked_at_kill + 2000, 60,
                 "acknowledgements to resume after the restart")
    finally:
        stop.set()
        t.join(30)
    remaining = p.flush(120)
    assert remaining == 0, f"{remaining} records never acknowledged nor failed"

    assert len(acked) > acked_at_kill, "nothing was acknowledged after the restart"
    data = read_all(broker.bootstrap, topic_name, partitions, timeout=120)
    stored = {(part, m.offset()): m.value() for part, msgs in data.items() for m in msgs}
    lost = [(part, off, v) for part, off, v in acked if stored.get((part, off)) != v]
    assert not lost, (f"{len(lost)} of {len(acked)} acknowledged records are missing or differ, "
                      f"e.g. {lost[:5]} (stored there: "
                      f"{[stored.get((pp, o)) for pp, o, _ in lost[:5]]})")
    # and each acknowledged value is stored (at least) once
    values = set(stored.values())
    assert all(v in values for _, _, v in acked)


def test_idempotent_producer_exactly_once_across_kill9(restartable_broker, topic_name):
    """An idempotent producer keeps sending through a SIGKILL and restart of the broker.
    Batches whose acknowledgement was lost are retried with their original sequence numbers;
    the restarted broker must recognise them from the producer state it recovers from the
    log. Every record ends up stored exactly once and no record fails."""
    broker = restartable_broker
    partitions, total = 2, 30_000
    create_topic(broker.bootstrap, topic_name, partitions)
    acked, failed, fatal = [], [], []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            (acked if err is None else failed).append(msg.value() if err is None
                                                      else (str(err), msg.value()))

    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                  "linger.ms": 2, "message.timeout.ms": 120_000,
                  "reconnect.backoff.max.ms": 500, "retry.backoff.ms": 100,
                  "error_cb": lambda e: fatal.append(str(e)) if e.fatal() else None})
    sent = [0]
    stop = threading.Event()

    def produce_loop():
        i = 0
        while not stop.is_set() and i < total:
            try:
                p.produce(topic_name, key=str(i % 11).encode(), value=f"r{i:07d}".encode(),
                          on_delivery=on_delivery)
                i += 1
                sent[0] = i
            except BufferError:
                p.poll(0.05)
                continue
            if i % 100 == 0:
                p.poll(0)
                time.sleep(0.005)

    t = threading.Thread(target=produce_loop, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(acked) >= 5000, 60, "5000 acknowledged records before the kill")
        broker.kill()
        at_kill = sent[0]
        wait_for(lambda: sent[0] >= min(total, at_kill + 2000) or not t.is_alive(), 30,
                 "the producer to keep sending while the broker is down")
        broker.start()
        t.join(120)
        assert not t.is_alive(), "the producer thread did not finish"
    finally:
        stop.set()
        t.join(30)
    remaining = p.flush(120)
    assert not fatal, f"fatal producer error: {fatal}"
    assert remaining == 0, f"{remaining} records never acknowledged nor failed"
    assert not failed, f"{len(failed)} records failed, e.g. {failed[:3]}"
    assert len(acked) == sent[0] == total

    data = read_all(broker.bootstrap, topic_name, partitions, timeout=120)
    values = [m.value() for msgs in data.values() for m in msgs]
    dupes = len(values) - len(set(values))
    assert dupes == 0, f"{dupes} records stored twice"
    assert set(values) == {f"r{i:07d}".encode() for i in range(total)}
