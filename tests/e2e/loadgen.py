"""The load of the end-to-end scenarios: runs in a pod inside the kind cluster (the client image,
confluent-kafka/librdkafka, a client nobody on the team wrote) while a scenario restarts,
upgrades, scales or breaks the brokers, and reports what the application saw.

- A producer sends numbered records at a fixed rate, idempotent with acks=all, until the file
  STOP_FILE appears. Every delivery report is kept: acknowledged or failed (a failure is what
  the application sees; librdkafka's own retries within message.timeout.ms are not).
- A consumer in a group reads the topic all along and notes every number of this run it sees.
- On stop: the producer is flushed, the consumer is given time to see every acknowledged
  record, and then a fresh consumer with no group reads every partition from its start up to
  its end, to count each record of this run in the log: an acknowledged record missing from it
  is lost, one found twice is a duplicate.

It prints one JSON object a line: progress every few seconds, and at the end one with
"final": true that the test asserts on. Settings come from the environment (see `Settings`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


@dataclass
class Settings:
    bootstrap: str = os.environ.get("BOOTSTRAP", "localhost:9092")
    topic: str = os.environ.get("TOPIC", "load")
    rate: float = float(os.environ.get("RATE", "200"))
    run: str = os.environ.get("RUN_ID", "run")
    group: str = os.environ.get("GROUP", f"loadgen-{os.environ.get('RUN_ID', 'run')}")
    stop_file: str = os.environ.get("STOP_FILE", "/tmp/stop")
    # How long librdkafka may keep retrying a record before it reports a failure.
    message_timeout_ms: int = int(os.environ.get("MESSAGE_TIMEOUT_MS", "300000"))
    # How long the consumer gets, after the producer stopped, to see every acknowledged record.
    catch_up_s: float = float(os.environ.get("CATCH_UP_S", "180"))
    # Extra client settings for every client (a secured cluster's), as JSON; SASL_PASSWORD,
    # when set (from the KafkaUser's Secret), becomes `sasl.password`.
    security: dict = field(default_factory=lambda: {
        **json.loads(os.environ.get("CLIENT_CONFIG", "{}")),
        **({"sasl.password": os.environ["SASL_PASSWORD"]}
           if os.environ.get("SASL_PASSWORD") else {}),
    })


@dataclass
class Tally:
    """What the producer and the consumer saw; guarded by `lock` (two threads write it)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    acked: set[int] = field(default_factory=set)
    failed: list[tuple[int, str]] = field(default_factory=list)
    consumed: set[int] = field(default_factory=set)
    consumer_errors: list[str] = field(default_factory=list)
    last_ack: float = field(default_factory=time.monotonic)
    # The longest time without a single acknowledgement while producing: what a restart costs.
    longest_stall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def value_of(run: str, n: int) -> bytes:
    return f"{run}-{n:09d}".encode()


def number_of(run: str, value: bytes | None) -> int | None:
    if value is None:
        return None
    text = value.decode(errors="replace")
    prefix = f"{run}-"
    if not text.startswith(prefix):
        return None
    try:
        return int(text[len(prefix):])
    except ValueError:
        return None


def produce(s: Settings, tally: Tally, stop: threading.Event) -> None:
    producer = Producer({
        **s.security,
        "bootstrap.servers": s.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": s.message_timeout_ms,
        "client.id": f"loadgen-{s.run}",
    })

    def delivered(err, msg) -> None:
        n = number_of(s.run, msg.value())
        now = time.monotonic()
        with tally.lock:
            if err is None:
                tally.acked.add(n)
                tally.longest_stall_s = max(tally.longest_stall_s, now - tally.last_ack)
                tally.last_ack = now
                tally.latencies_ms.append((now - sent_at[n]) * 1000)
            else:
                tally.failed.append((n, str(err)))

    # When each record was handed to the client: produce latency is measured from there.
    sent_at: list[float] = []
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        due = int((time.monotonic() - start) * s.rate)
        while n < due and not stop.is_set():
            if len(sent_at) == n:
                sent_at.append(time.monotonic())
            try:
                producer.produce(s.topic, key=str(n).encode(), value=value_of(s.run, n),
                                 on_delivery=delivered)
            except BufferError:
                producer.poll(0.1)
                continue
            n += 1
            with tally.lock:
                tally.sent = n
        producer.poll(0.01)
    unreported = producer.flush(s.message_timeout_ms / 1000 + 10)
    if unreported:
        with tally.lock:
            tally.failed.append((-1, f"{unreported} records without a delivery report"))


def consume(s: Settings, tally: Tally, done: threading.Event) -> None:
    consumer = Consumer({
        **s.security,
        "bootstrap.servers": s.bootstrap,
        "group.id": s.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "client.id": f"loadgen-consumer-{s.run}",
    })
    consumer.subscribe([s.topic])
    try:
        while not done.is_set():
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    with tally.lock:
                        tally.consumer_errors.append(str(msg.error()))
                continue
            n = number_of(s.run, msg.value())
            if n is not None:
                with tally.lock:
                    tally.consumed.add(n)
    finally:
        consumer.close()


def read_log(s: Settings) -> dict[int, int]:
    """Every record of this run in the topic, counted: a consumer without a group reads each
    partition from its start to the end it has when the read begins."""
    consumer = Consumer({
        **s.security,
        "bootstrap.servers": s.bootstrap,
        "group.id": f"{s.group}-verify",
        "enable.auto.commit": False,
        "client.id": f"loadgen-verify-{s.run}",
    })
    metadata = consumer.list_topics(s.topic, timeout=30)
    partitions = sorted(metadata.topics[s.topic].partitions)
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(s.topic, p), timeout=30)
        ends[p] = high
    consumer.assign([TopicPartition(s.topic, p, 0) for p in partitions if ends[p] > 0])
    counts: dict[int, int] = {}
    positions = {p: 0 for p in partitions}
    deadline = time.monotonic() + 300
    while any(positions[p] < ends[p] for p in partitions):
        if time.monotonic() > deadline:
            raise RuntimeError(f"verification read stalled at {positions} of {ends}")
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        positions[msg.partition()] = msg.offset() + 1
        n = number_of(s.run, msg.value())
        if n is not None:
            counts[n] = counts.get(n, 0) + 1
    consumer.close()
    return counts


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def main() -> int:
    s = Settings()
    tally = Tally()
    stop, consumer_done = threading.Event(), threading.Event()
    producer_thread = threading.Thread(target=produce, args=(s, tally, stop), daemon=True)
    consumer_thread = threading.Thread(target=consume, args=(s, tally, consumer_done), daemon=True)
    started = time.monotonic()
    producer_thread.start()
    consumer_thread.start()
    emit({"started": True, "run": s.run, "topic": s.topic, "rate": s.rate})
    last_report = 0.0
    while not os.path.exists(s.stop_file):
        time.sleep(0.2)
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            with tally.lock:
                emit({"t": round(last_report - started, 1), "sent": tally.sent,
                      "acked": len(tally.acked), "failed": len(tally.failed),
                      "consumed": len(tally.consumed),
                      "stall_s": round(time.monotonic() - tally.last_ack, 1)})
    produced_for = time.monotonic() - started
    stop.set()
    producer_thread.join()
    with tally.lock:
        acked = set(tally.acked)
    deadline = time.monotonic() + s.catch_up_s
    while time.monotonic() < deadline:
        with tally.lock:
            if acked <= tally.consumed:
                break
        time.sleep(0.5)
    consumer_done.set()
    consumer_thread.join()
    counts = read_log(s)
    with tally.lock:
        lost = sorted(acked - counts.keys())
        unseen = sorted(acked - tally.consumed)
        duplicates = sorted(n for n, c in counts.items() if c > 1)
        result = {
            "final": True,
            "run": s.run,
            "produced_for_s": round(produced_for, 1),
            "sent": tally.sent,
            "acked": len(acked),
            "failed": len(tally.failed),
            "failures": [f"{n}: {e}" for n, e in tally.failed[:10]],
            "in_log": len(counts),
            "lost": len(lost),
            "lost_sample": lost[:20],
            "duplicates": len(duplicates),
            "duplicates_sample": duplicates[:20],
            "consumed": len(tally.consumed),
            "not_consumed": len(unseen),
            "consumer_errors": tally.consumer_errors[:10],
            "longest_stall_s": round(tally.longest_stall_s, 2),
            "p50_ms": percentile(tally.latencies_ms, 0.50),
            "p99_ms": percentile(tally.latencies_ms, 0.99),
            "max_ms": percentile(tally.latencies_ms, 1.0),
        }
    emit(result)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as e:
        emit({"final": True, "error": repr(e)})
        sys.exit(1)
