"""A broker with two client listeners answers each client with the addresses of the listener it
connected through (Metadata, FindCoordinator, DescribeCluster), as Kafka does: kafka-python
bootstraps through each listener, sees only that listener's address, and produces and consumes
in a group through it."""

from __future__ import annotations

import os
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from conftest import GregorBroker, free_ports, gregor_binary

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP")) or os.environ.get("GREGOR_TEST_BROKER", "gregor") != "gregor",
    reason="starts its own gregor with two listeners")


class TwoListenerBroker(GregorBroker):
    """`gregor dev` with CLIENT on 127.0.0.1 (also the inter-broker listener) and EXTERNAL on
    127.0.0.2, each advertised as the address it binds."""

    def __init__(self, binary, workdir):
        super().__init__(binary, workdir)
        (self.external_port,) = free_ports(1)
        self.listeners = {
            "CLIENT": ("127.0.0.1", self.port),
            "EXTERNAL": ("127.0.0.2", self.external_port),
        }

    def command(self) -> list[str]:
        listeners = ",".join(f"{n}://{h}:{p}" for n, (h, p) in self.listeners.items())
        return [
            str(self.binary), "dev",
            "--data-dir", str(self.data_dir),
            "--override", f"listeners={listeners}",
            "--override", f"advertised.listeners={listeners}",
            "--override", "listener.security.protocol.map=CLIENT:PLAINTEXT,EXTERNAL:PLAINTEXT",
            "--override", "inter.broker.listener.name=CLIENT",
            "--override", f"metrics.listener=127.0.0.1:{self.metrics_port}",
        ]


@pytest.fixture(scope="module")
def two_listeners(tmp_path_factory):
    binary = gregor_binary()
    if not binary.exists():
        pytest.fail(f"gregor binary not found at {binary}")
    b = TwoListenerBroker(binary, tmp_path_factory.mktemp("two-listeners"))
    b.start()
    yield b
    b.stop()


@pytest.mark.parametrize("listener", ["CLIENT", "EXTERNAL"])
def test_each_listener_answers_with_its_own_address(two_listeners, listener):
    host, port = two_listeners.listeners[listener]
    bootstrap = f"{host}:{port}"
    topic = f"listeners-{listener.lower()}-{uuid.uuid4().hex[:8]}"

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [(1, host, port)]

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        sent = [producer.send(topic, f"m{i}".encode()).get(timeout=30) for i in range(5)]
        brokers = producer._metadata.brokers()
    finally:
        producer.close()
    assert [(b.node_id, b.host, b.port) for b in brokers] == [(1, host, port)]
    assert [m.offset for m in sent] == list(range(5))

    group = f"g-{listener.lower()}-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", consumer_timeout_ms=20000)
    try:
        got = []
        for message in consumer:
            got.append(message.value)
            if len(got) == 5:
                break
        coordinators = consumer._client.cluster._coordinator_brokers.values()
        consumer.commit()
    finally:
        consumer.close()
    assert got == [f"m{i}".encode() for i in range(5)]
    assert [(c.host, c.port) for c in coordinators] == [(host, port)], \
        "FindCoordinator names the listener the consumer came through"
