"""Gregor's own Kafka-familiar CLI tools (`gregor topics|console-producer|console-consumer|
consumer-groups`) against the broker under test. They speak only the Kafka protocol, so
scripts/test-all.sh also runs this file with GREGOR_TEST_BROKER=kafka (Apache Kafka)."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import gregor_binary


def gregor(*args: str, input: str | None = None, timeout: float = 60, ok: bool = True):
    proc = subprocess.run([str(gregor_binary()), *args], input=input, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if ok and proc.returncode != 0:
        pytest.fail(f"gregor {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def test_topics_create_list_describe_alter_delete(bootstrap, topic_name):
    out = gregor("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic_name,
                 "--partitions", "3", "--replication-factor", "1",
                 "--config", "retention.ms=3600000").stdout
    assert f"Created topic {topic_name}." in out
    assert topic_name in gregor("topics", "--bootstrap-server", bootstrap, "--list").stdout.split()
    desc = gregor("topics", "--bootstrap-server", bootstrap, "--describe", "--topic",
                  topic_name).stdout
    assert "PartitionCount: 3" in desc and "retention.ms=3600000" in desc, desc
    assert len(re.findall(rf"Topic: {re.escape(topic_name)}\s+Partition: \d+\s+Leader: \d+", desc)) == 3
    gregor("topics", "--bootstrap-server", bootstrap, "--alter", "--topic", topic_name,
           "--partitions", "5")
    desc = gregor("topics", "--bootstrap-server", bootstrap, "--describe", "--topic",
                  topic_name).stdout
    assert "PartitionCount: 5" in desc, desc
    again = gregor("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic_name,
                   "--partitions", "1", ok=False)
    assert again.returncode != 0 and "already exists" in again.stderr, again.stderr
    gregor("topics", "--bootstrap-server", bootstrap, "--delete", "--topic", topic_name)
    # Deletion on Kafka completes asynchronously; wait until the listing no longer shows it.
    from conftest import wait_for
    wait_for(lambda: topic_name not in gregor("topics", "--bootstrap-server", bootstrap,
                                              "--list").stdout.split(),
             30, f"{topic_name} to disappear")


def test_bad_topic_input_gets_clear_errors(bootstrap):
    bad = gregor("topics", "--bootstrap-server", bootstrap, "--create", "--topic", "bad name",
                 ok=False)
    assert bad.returncode != 0 and "illegal" in bad.stderr.lower(), bad.stderr
    neg = gregor("topics", "--bootstrap-server", bootstrap, "--create", "--topic", "neg-parts",
                 "--partitions", "-3", ok=False)
    assert neg.returncode != 0 and "partitions" in neg.stderr.lower(), neg.stderr


def test_console_producer_consumer_keys_and_groups(bootstrap, topic_name):
    gregor("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic_name,
           "--partitions", "2", "--replication-factor", "1")
    lines = [f"k{i % 3}:v{i}" for i in range(30)]
    gregor("console-producer", "--bootstrap-server", bootstrap, "--topic", topic_name,
           "--property", "parse.key=true", "--property", "key.separator=:",
           input="\n".join(lines) + "\n")
    group = f"{topic_name}-g"
    out = gregor("console-consumer", "--bootstrap-server", bootstrap, "--topic", topic_name,
                 "--from-beginning", "--group", group, "--max-messages", "30",
                 "--property", "print.key=true", "--property", "key.separator=:",
                 timeout=90).stdout
    got = [line for line in out.splitlines() if line]
    assert sorted(got) == sorted(lines)
    desc = gregor("consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group",
                  group).stdout
    lag_rows = [r.split() for r in desc.splitlines() if r.startswith(group)]
    assert len(lag_rows) == 2 and all(r[5] == "0" for r in lag_rows), desc
    assert group in gregor("consumer-groups", "--bootstrap-server", bootstrap,
                           "--list").stdout.split()
