#!/usr/bin/env python3
"""One failover trial against a 3-node cluster: a steady acks=all producer on partition 0, a
`kill -9` of that partition's leader, and the time until the partition takes writes again.

usage: failover.py BOOTSTRAP TOPIC --pids 1=PID,2=PID,3=PID --out RESULT.json
                   [--rate 500] [--size 1024] [--before 3] [--after 2] [--timeout 60]

Runs with confluent-kafka (librdkafka), the same client and settings for every broker:
acks=all, enable.idempotence=true, linger.ms=5, message.timeout.ms=120000 (so records in flight
at the kill are retried rather than failed). Records go to partition 0 explicitly, `--rate` a
second, each `--size` bytes whose prefix is its sequence number.

1. Produce until acks have been arriving for `--before` seconds.
2. Ask the producer's own metadata which node leads partition 0, serve every delivery report
   already received, note the time T, and SIGKILL that node's process (from `--pids`).
3. Keep producing. The failover time is T until the first successful delivery report for a
   record produce() was called for after T: no such record can have reached the old leader,
   so its acknowledgement comes from the new one (whereas a report served just after T for an
   earlier record may be the old leader's answer, read from the socket after the kill). At the
   rate used, such a record waits at most one send interval plus linger.ms before it is sent.
4. Produce `--after` more seconds, flush, then read partition 0 back from the beginning and
   check that every acknowledged sequence number is there.

Writes RESULT.json (durations in ms; kill_epoch_s is the wall-clock time of the kill) and prints a one-line summary. Exit status 0 if a new
leader took writes within `--timeout` seconds and no acknowledged record was lost, else 1.
"""
import argparse
import json
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--pids", required=True, help="node.id=pid,... of the running nodes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--before", type=float, default=3)
    ap.add_argument("--after", type=float, default=2)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    pids = {int(k): int(v) for k, v in (kv.split("=") for kv in a.pids.split(","))}

    producer = Producer({
        "bootstrap.servers": a.bootstrap, "acks": "all", "enable.idempotence": True,
        "linger.ms": 5, "message.timeout.ms": 120000, "client.id": "bench-failover",
    })
    # per delivery report: (monotonic s, seq, error string or None)
    reports = []
    # first_ack: the first success; kill: (time, first seq produced after it) once killed;
    # new_ack: the first success for a record produced after the kill
    st = {"first_ack": None, "kill": None, "new_ack": None}

    def on_delivery(err, msg):
        now = time.monotonic()
        r = (now, int(msg.value()[:12]), None if err is None else str(err))
        reports.append(r)
        if err is not None:
            return
        st["first_ack"] = st["first_ack"] or r
        kill = st["kill"]
        if kill and not st["new_ack"] and r[1] >= kill[1]:
            st["new_ack"] = r

    pad = b"x" * max(0, a.size - 13)
    seq = 0
    next_send = time.monotonic()

    def pump(until):
        """Produce at the target rate and serve delivery reports until until() is true."""
        nonlocal seq, next_send
        while not until():
            now = time.monotonic()
            while next_send <= now:
                try:
                    producer.produce(a.topic, value=b"%012d|" % seq + pad, partition=0,
                                     on_delivery=on_delivery)
                except BufferError:
                    break
                seq += 1
                next_send += 1.0 / a.rate
            producer.poll(max(0.0, min(next_send - time.monotonic(), 0.01)))

    t_start = time.monotonic()
    pump(lambda: (st["first_ack"] and time.monotonic() - st["first_ack"][0] >= a.before)
         or time.monotonic() - t_start > a.timeout)
    if not st["first_ack"]:
        print("failover: no acknowledgement before the kill", file=sys.stderr)
        return 1

    md = producer.list_topics(a.topic, timeout=10)
    leader = md.topics[a.topic].partitions[0].leader
    if leader not in pids:
        print(f"failover: leader of partition 0 is {leader}, not one of {sorted(pids)}", file=sys.stderr)
        return 1
    producer.poll(0)
    t_kill, kill_wall = time.monotonic(), time.time()
    st["kill"] = (t_kill, seq)
    os.kill(pids[leader], signal.SIGKILL)

    pump(lambda: st["new_ack"] is not None or time.monotonic() - t_kill > a.timeout)
    first = st["new_ack"]
    if first is not None:
        t_first = first[0]
        pump(lambda: time.monotonic() - t_first >= a.after)
    left = producer.flush(60)

    ok_times = [r[0] for r in reports if r[2] is None]
    gaps = [b - x for x, b in zip(ok_times, ok_times[1:])]
    errors = [r[2] for r in reports if r[2] is not None]
    acked_seqs = {r[1] for r in reports if r[2] is None}
    acked_after_kill = [r[0] for r in reports if r[2] is None and r[0] > t_kill]
    md_after = producer.list_topics(a.topic, timeout=10).topics[a.topic].partitions[0]
    missing = missing_acked(a.bootstrap, a.topic, acked_seqs)

    result = {
        "killed_node": leader, "killed_pid": pids[leader], "kill_epoch_s": round(kill_wall, 3),
        "failover_ms": None if first is None else round((first[0] - t_kill) * 1000, 1),
        "first_any_ack_ms": round((acked_after_kill[0] - t_kill) * 1000, 1) if acked_after_kill else None,
        "leader_after": md_after.leader, "isr_after": list(md_after.isrs),
        "max_ack_gap_ms": round(max(gaps) * 1000, 1) if gaps else None,
        "sent": seq, "acked": len(acked_seqs), "failed": len(errors), "unflushed": left,
        "errors": sorted(set(errors))[:5], "acked_missing": missing,
        "rate": a.rate, "size": a.size,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"failover: killed node {leader} (pid {pids[leader]}); first ack from the new leader "
          f"after {result['failover_ms']} ms (leader now {md_after.leader}); {seq} sent, {len(acked_seqs)} acked, {len(errors)} failed, "
          f"{missing} acked records missing on read-back")
    return 0 if first is not None and missing == 0 else 1


def missing_acked(bootstrap, topic, acked_seqs, timeout=30):
    """How many acknowledged sequence numbers are absent from partition 0 (None if unreadable)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-failover-check",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        seen, pos, deadline = set(), 0, time.monotonic() + timeout
        while pos < high and time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        print(f"failover: read-back: {m.error()}", file=sys.stderr)
                    continue
                seen.add(int(m.value()[:12]))
                pos = m.offset() + 1
        if pos < high:
            return None
        return len(acked_seqs - seen)
    except Exception as e:  # noqa: BLE001 - a read-back failure is reported, not fatal
        print(f"failover: read-back failed: {e!r}", file=sys.stderr)
        return None
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
