"""kcat (librdkafka's command-line client) against the broker: keyed produce, consume with
keys and partitions, and metadata listing."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import create_topic

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")


def kcat(*args: str, input: str | None = None, timeout: float = 60) -> str:
    r = subprocess.run(["kcat", *args], input=input, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"kcat {' '.join(args)} failed: {r.stderr}"
    return r.stdout


def test_kcat_keyed_produce_and_consume(bootstrap, topic_name):
    create_topic(bootstrap, topic_name, 4)
    lines = [f"key{i % 5}:value{i}" for i in range(200)]
    kcat("-b", bootstrap, "-P", "-t", topic_name, "-K:", "-z", "lz4", input="\n".join(lines) + "\n")
    out = kcat("-b", bootstrap, "-C", "-t", topic_name, "-o", "beginning", "-e",
               "-f", "%k|%s|%p|%o\n")
    rows = [line.split("|") for line in out.splitlines() if line]
    assert len(rows) == 200
    partition_of: dict[str, str] = {}
    last_value_index: dict[str, int] = {}
    for key, value, partition, _offset in rows:
        # Every record of a key lands in one partition, in the order it was produced.
        assert partition_of.setdefault(key, partition) == partition
        i = int(value.removeprefix("value"))
        assert i > last_value_index.get(key, -1)
        last_value_index[key] = i
    assert sorted(int(r[1].removeprefix("value")) for r in rows) == list(range(200))


def test_kcat_lists_metadata(bootstrap, topic_name):
    create_topic(bootstrap, topic_name, 3)
    out = kcat("-b", bootstrap, "-L", "-t", topic_name)
    assert "1 brokers:" in out
    assert f'topic "{topic_name}" with 3 partitions' in out
