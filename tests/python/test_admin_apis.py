"""The admin APIs Kafka's tools call beyond topics and groups: DeleteRecords
(`kafka-delete-records`), OffsetDelete (`kafka-consumer-groups --delete-offsets`), ListOffsets
with the max-timestamp spec (`kafka-get-offsets --time -3`) and IncrementalAlterConfigs APPEND
on a default list value. scripts/test-all.sh also runs this file with GREGOR_TEST_BROKER=kafka,
so every assertion here is Apache Kafka's behaviour too."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import SCRIPTS, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off")


def kafka(*args: str, input: str | None = None, check: bool = True) -> str:
    """`scripts/kafka.sh ARGS...`: stdout and stderr together; fails on a non-zero exit when
    `check`."""
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), *args], input=input, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"kafka.sh {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-5000:]}")
    return proc.stdout


def create(bootstrap: str, topic: str, partitions: int = 1) -> None:
    kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic,
          "--partitions", str(partitions), "--replication-factor", "1")


def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    kafka("console-producer", "--bootstrap-server", bootstrap, "--topic", topic,
          input="".join(f"{v}\n" for v in values))


def offsets(bootstrap: str, topic: str, time_spec: str) -> dict[int, int]:
    """`kafka-get-offsets --time SPEC`: partition -> offset."""
    out = kafka("get-offsets", "--bootstrap-server", bootstrap, "--topic", topic,
                "--time", time_spec)
    rows = [line.rsplit(":", 2) for line in out.split() if line.startswith(topic + ":")]
    return {int(p): int(o) for _, p, o in rows}


def delete_records(bootstrap: str, tmp_path, topic: str, offset: int) -> str:
    spec = tmp_path / f"delete-{uuid.uuid4().hex[:6]}.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "offset": offset}]}))
    return kafka("delete-records", "--bootstrap-server", bootstrap,
                 "--offset-json-file", str(spec), check=False)


def test_delete_records_moves_the_log_start_and_consumers_begin_there(
        bootstrap, topic_name, tmp_path):
    create(bootstrap, topic_name)
    produce(bootstrap, topic_name, [f"v{i}" for i in range(20)])
    out = delete_records(bootstrap, tmp_path, topic_name, 12)
    assert "low_watermark: 12" in out, out
    assert offsets(bootstrap, topic_name, "-2") == {0: 12}
    # Earliest local (-4) is the log start too, nothing being tiered; latest tiered (-5) is
    # none (offset -1, which the tool does not print).
    assert offsets(bootstrap, topic_name, "-4") == {0: 12}
    assert offsets(bootstrap, topic_name, "-5") == {}
    read = kafka("console-consumer", "--bootstrap-server", bootstrap, "--topic", topic_name,
                 "--from-beginning", "--max-messages", "8", "--timeout-ms", "30000")
    values = [w for w in read.split() if re.fullmatch(r"v\d+", w)]
    assert values == [f"v{i}" for i in range(12, 20)], read
    # Past the high watermark: refused, nothing moves.
    out = delete_records(bootstrap, tmp_path, topic_name, 50)
    assert "OffsetOutOfRange" in out, out
    assert offsets(bootstrap, topic_name, "-2") == {0: 12}
    # Below the log start: nothing moves either.
    out = delete_records(bootstrap, tmp_path, topic_name, 3)
    assert "low_watermark: 12" in out, out


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        listed = admin.list_group_offsets({group: None}).get(group, {})
        return {(tp.topic, tp.partition): meta.offset
                for tp, meta in listed.items() if meta.offset >= 0}
    finally:
        admin.close()


def test_delete_offsets_of_an_empty_group_and_not_of_a_subscribed_one(bootstrap, topic_name):
    from kafka import KafkaConsumer
    create(bootstrap, topic_name, partitions=2)
    produce(bootstrap, topic_name, [f"v{i}" for i in range(10)])
    group = f"del-{uuid.uuid4().hex[:8]}"
    kafka("console-consumer", "--bootstrap-server", bootstrap, "--topic", topic_name,
          "--group", group, "--from-beginning", "--max-messages", "10", "--timeout-ms", "30000")
    assert sum(committed(bootstrap, group).values()) == 10

    # A member subscribed to the topic: its offsets stay, the partition says why.
    consumer = KafkaConsumer(topic_name, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        wait_for(lambda: consumer.poll(timeout_ms=200) is not None and consumer.assignment(),
                 60, "the consumer to join its group")
        out = kafka("consumer-groups", "--bootstrap-server", bootstrap, "--delete-offsets",
                    "--group", group, "--topic", topic_name, check=False)
        assert "subscribed" in out.lower(), out
        assert sum(committed(bootstrap, group).values()) == 10
    finally:
        consumer.close()

    # Empty again: the offsets go.
    def deleted():
        out = kafka("consumer-groups", "--bootstrap-server", bootstrap, "--delete-offsets",
                    "--group", group, "--topic", topic_name, check=False)
        rows = [r.split() for r in out.splitlines() if r.startswith(topic_name)]
        return len(rows) == 2 and all(r[-1] == "Successful" for r in rows)

    wait_for(deleted, 60, "the offsets of the emptied group to be deleted", interval=2)
    assert committed(bootstrap, group) == {}


def test_max_timestamp_offset_is_the_record_carrying_it(bootstrap, topic_name):
    from confluent_kafka import Producer
    create(bootstrap, topic_name)
    base = int(time.time() * 1000) - 60_000
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 500,
                         "compression.type": "gzip"})
    # One batch, timestamps out of order: the largest is on offset 1, not the batch's last.
    for i, delta in enumerate([10, 30, 20]):
        producer.produce(topic_name, value=f"r{i}".encode(), timestamp=base + delta)
    assert producer.flush(30) == 0
    assert offsets(bootstrap, topic_name, "-1") == {0: 3}
    assert offsets(bootstrap, topic_name, "-3") == {0: 1}


def alter_cleanup_policy(bootstrap: str, topic: str, operation: str, value: str):
    """IncrementalAlterConfigs `operation` (APPEND, SUBTRACT) of `value` on the topic's
    cleanup.policy; its entry as DescribeConfigs then answers it."""
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, ResourceType)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", value,
                    incremental_operation=getattr(AlterConfigOpType, operation))])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    return next(iter(described.values())).result(timeout=30)["cleanup.policy"]


def test_append_to_a_list_config_starts_from_its_default(bootstrap, topic_name):
    create(bootstrap, topic_name)
    policy = alter_cleanup_policy(bootstrap, topic_name, "APPEND", "compact")
    assert sorted(policy.value.split(",")) == ["compact", "delete"], policy.value
    assert not policy.is_default, policy


def test_subtract_the_last_cleanup_policy_leaves_an_empty_list(bootstrap, topic_name):
    create(bootstrap, topic_name)
    policy = alter_cleanup_policy(bootstrap, topic_name, "SUBTRACT", "delete")
    assert policy.value == "", policy
    assert not policy.is_default, policy


def test_a_topic_value_equal_to_the_default_is_still_the_topics_own(bootstrap, topic_name):
    from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType
    kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic_name,
          "--partitions", "1", "--config", "min.insync.replicas=1",
          "--config", "retention.ms=604800000")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic_name)])
    configs = next(iter(described.values())).result(timeout=30)
    for key, value in [("min.insync.replicas", "1"), ("retention.ms", "604800000")]:
        entry = configs[key]
        assert entry.value == value, entry
        assert not entry.is_default, entry
        assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, entry
    untouched = configs["segment.ms"]
    assert untouched.is_default and untouched.source == ConfigSource.DEFAULT_CONFIG.value, \
        untouched


def features(bootstrap: str) -> dict[str, dict[str, str]]:
    """`kafka-features describe`: feature -> its fields (but the epoch)."""
    out = kafka("features", "--bootstrap-server", bootstrap, "describe")
    described = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+): (\S+)", line))
        fields.pop("Epoch", None)  # Kafka's moves with every metadata change
        if "Feature" in fields:
            described[fields.pop("Feature")] = fields
    return described


def test_features_are_described_and_only_the_levels_in_force_can_be_set(bootstrap):
    described = features(bootstrap)
    mv = described["metadata.version"]
    assert mv["FinalizedVersionLevel"] == mv["SupportedMaxVersion"], described
    # Setting what is in force is accepted (nothing changes); a level nobody supports is
    # refused with a message, and nothing changes either.
    out = kafka("features", "--bootstrap-server", bootstrap, "upgrade", "--metadata",
                mv["FinalizedVersionLevel"])
    assert "upgraded" in out, out
    out = kafka("features", "--bootstrap-server", bootstrap, "upgrade", "--feature",
                "transaction.version=99", check=False)
    assert "transaction.version" in out and "fail" in out.lower(), out
    assert features(bootstrap) == described
