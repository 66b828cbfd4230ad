"""Apache Kafka's own Java CLI tools (kafka-topics, console producer/consumer, consumer
groups, perf tests) against the broker under test, via scripts/kafka.sh."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import SCRIPTS, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off")


def kafka(*args: str, input: str | None = None, timeout: float = 120) -> str:
    """Run `scripts/kafka.sh ARGS...`; return stdout, fail with stderr on a non-zero exit."""
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), *args], input=input, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"kafka.sh {' '.join(args)} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc.stdout


def test_cli_topics(bootstrap, topic_name):
    out = kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic_name,
                "--partitions", "3", "--replication-factor", "1")
    assert f"Created topic {topic_name}" in out
    assert topic_name in kafka("topics", "--bootstrap-server", bootstrap, "--list").split()
    desc = kafka("topics", "--bootstrap-server", bootstrap, "--describe", "--topic", topic_name)
    assert "PartitionCount: 3" in desc, desc
    assert len(re.findall(r"Partition: \d+\s+Leader: \d+", desc)) == 3, desc


def test_cli_console_producer_consumer_and_groups(bootstrap, topic_name):
    kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic_name,
          "--partitions", "2")
    lines = [f"k{i % 5}:value-{i}" for i in range(50)]
    kafka("console-producer", "--bootstrap-server", bootstrap, "--topic", topic_name,
          "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
          input="\n".join(lines) + "\n")
    group = f"cli-{uuid.uuid4().hex[:8]}"
    out = kafka("console-consumer", "--bootstrap-server", bootstrap, "--topic", topic_name,
                "--group", group, "--from-beginning", "--max-messages", "50",
                "--timeout-ms", "60000", "--formatter-property", "print.key=true",
                "--formatter-property", "key.separator=:")
    assert sorted(out.splitlines()) == sorted(lines)

    desc = kafka("consumer-groups", "--bootstrap-server", bootstrap, "--describe",
                 "--group", group)
    rows = [r.split() for r in desc.splitlines() if r.startswith(group)]
    assert len(rows) == 2, desc
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    assert sum(int(r[3]) for r in rows) == 50, desc
    assert all(r[5] == "0" for r in rows), desc
    assert group in kafka("consumer-groups", "--bootstrap-server", bootstrap, "--list").split()


def test_cli_perf_tools(bootstrap, topic_name):
    n = 20000
    out = kafka("producer-perf-test", "--topic", topic_name, "--num-records", str(n),
                "--record-size", "200", "--throughput", "-1",
                "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all")
    assert f"{n} records sent" in out, out
    out = kafka("consumer-perf-test", "--bootstrap-server", bootstrap, "--topic", topic_name,
                "--messages", str(n), "--timeout", "60000")
    row = out.strip().splitlines()[-1].split(", ")
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
    assert int(row[4]) >= n, out


def test_cli_get_offsets_reset_and_delete(bootstrap, topic_name):
    kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic_name,
          "--partitions", "2")
    kafka("console-producer", "--bootstrap-server", bootstrap, "--topic", topic_name,
          input="".join(f"v{i}\n" for i in range(30)))
    latest = kafka("get-offsets", "--bootstrap-server", bootstrap, "--topic", topic_name,
                   "--time", "-1")
    ends = {line.rsplit(":", 2)[1]: int(line.rsplit(":", 1)[1])
            for line in latest.split() if line.startswith(topic_name + ":")}
    assert sorted(ends) == ["0", "1"] and sum(ends.values()) == 30, latest
    earliest = kafka("get-offsets", "--bootstrap-server", bootstrap, "--topic", topic_name,
                     "--time", "-2")
    assert all(line.endswith(":0") for line in earliest.split()), earliest

    group = f"reset-{uuid.uuid4().hex[:8]}"
    kafka("console-consumer", "--bootstrap-server", bootstrap, "--topic", topic_name,
          "--group", group, "--from-beginning", "--max-messages", "30", "--timeout-ms", "60000")
    out = kafka("consumer-groups", "--bootstrap-server", bootstrap, "--group", group,
                "--topic", topic_name, "--reset-offsets", "--to-earliest", "--execute")
    rows = [r.split() for r in out.splitlines() if r.startswith(group)]
    # GROUP TOPIC PARTITION NEW-OFFSET
    assert len(rows) == 2 and all(r[3] == "0" for r in rows), out
    desc = kafka("consumer-groups", "--bootstrap-server", bootstrap, "--describe",
                 "--group", group)
    rows = [r.split() for r in desc.splitlines() if r.startswith(group)]
    assert sum(int(r[5]) for r in rows) == 30, desc  # LAG back to everything

    kafka("topics", "--bootstrap-server", bootstrap, "--delete", "--topic", topic_name)

    def gone():
        listed = kafka("topics", "--bootstrap-server", bootstrap, "--list").split()
        return topic_name not in listed

    wait_for(gone, 30, f"topic {topic_name} to disappear after --delete", interval=0.5)


def test_cli_broker_api_versions(bootstrap):
    out = kafka("broker-api-versions", "--bootstrap-server", bootstrap)
    for api in ("Produce(0)", "Fetch(1)", "ListOffsets(2)", "Metadata(3)", "ApiVersions(18)",
                "FindCoordinator(10)", "JoinGroup(11)", "InitProducerId(22)"):
        line = next((ln for ln in out.splitlines() if api in ln), None)
        assert line is not None and "UNSUPPORTED" not in line, f"{api}: {line}\n{out}"


def test_cli_metadata_quorum_describe(bootstrap):
    """kafka-metadata-quorum reads the controller quorum through DescribeQuorum."""
    out = kafka("metadata-quorum", "--bootstrap-server", bootstrap, "describe", "--status")
    fields = {k.strip(): v.strip() for k, v in
              (line.split(":", 1) for line in out.splitlines() if ":" in line)}
    assert int(fields["LeaderId"]) >= 0, out
    assert int(fields["HighWatermark"]) > 0, out
    assert "CurrentVoters" in fields, out
    rep = kafka("metadata-quorum", "--bootstrap-server", bootstrap, "describe", "--replication")
    assert "Leader" in rep, rep


def test_cli_configs_alters_the_cluster_wide_broker_default_live(bootstrap, topic_name):
    """kafka-configs --entity-type brokers --entity-default sets a dynamic broker config; a
    topic without its own override takes it at once, and the static keys are refused."""
    from kafka import KafkaProducer
    from kafka.errors import NotEnoughReplicasError

    brokers = ("configs", "--bootstrap-server", bootstrap, "--entity-type", "brokers",
               "--entity-default")
    kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic_name,
          "--partitions", "1", "--replication-factor", "1")
    kafka(*brokers, "--alter", "--add-config", "log.retention.ms=3600000,min.insync.replicas=2")
    try:
        out = kafka(*brokers, "--describe")
        assert "log.retention.ms=3600000" in out, out
        assert "DYNAMIC_DEFAULT_BROKER_CONFIG:min.insync.replicas=2" in out, out
        topic = kafka("configs", "--bootstrap-server", bootstrap, "--entity-type", "topics",
                      "--entity-name", topic_name, "--describe", "--all")
        assert re.search(r"\bretention\.ms=3600000\b", topic), topic

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0)
        try:
            with pytest.raises(NotEnoughReplicasError):
                producer.send(topic_name, b"needs two in sync").get(timeout=30)
        finally:
            producer.close()

        proc = subprocess.run([str(SCRIPTS / "kafka.sh"), *brokers, "--alter", "--add-config",
                               "num.partitions=7"],
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=120)
        assert proc.returncode != 0
        assert "Cannot update these configs dynamically: [num.partitions]" in \
            proc.stdout + proc.stderr, proc.stderr[-3000:]
    finally:
        kafka(*brokers, "--alter", "--delete-config", "log.retention.ms,min.insync.replicas")
    assert "min.insync.replicas" not in kafka(*brokers, "--describe")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0)
    try:
        producer.send(topic_name, b"one in sync is enough again").get(timeout=30)
    finally:
        producer.close()
