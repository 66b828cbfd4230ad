"""ACLs with Kafka's StandardAuthorizer semantics, administered with Kafka's own kafka-acls and
enforced on real clients. Every test runs against a broker started with the authorizer on
(`authorizer_broker`: AUTHORIZER_PROPS, allow.everyone.if.no.acl.found=true, no super users),
Gregor by default and Apache Kafka with GREGOR_TEST_BROKER=kafka, so the assertions hold for
Kafka's own behaviour."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from conftest import SCRIPTS, wait_for
from helpers import create_topic

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off")

ANONYMOUS = "User:ANONYMOUS"


def kafka_acls(bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `scripts/kafka.sh acls --bootstrap-server BOOTSTRAP ARGS...`."""
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), "acls", "--bootstrap-server", bootstrap,
                           *args], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"kafka-acls {' '.join(args)} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


RESOURCE = re.compile(r"^Current ACLs for resource `ResourcePattern\(resourceType=(\w+), "
                      r"name=(.*), patternType=(\w+)\)`:")
ENTRY = re.compile(r"^\s*\(principal=(.*), host=(.*), operation=(\w+), permissionType=(\w+)\)")


def listed(bootstrap: str, *filters: str) -> dict[tuple, set[tuple]]:
    """`kafka-acls --list FILTERS` parsed: {(type, name, pattern): {(principal, host, op,
    permission)}}."""
    out = kafka_acls(bootstrap, "--list", *filters).stdout
    acls: dict[tuple, set[tuple]] = {}
    current = None
    for line in out.splitlines():
        if m := RESOURCE.match(line):
            current = acls.setdefault(m.groups(), set())
        elif (m := ENTRY.match(line)) and current is not None:
            current.add(m.groups())
    return acls


def ours(acls: dict, suffix: str) -> dict:
    """The listed resources this test made (their names carry `suffix`)."""
    return {r: e for r, e in acls.items() if suffix in r[1]}


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def acl_bootstrap(authorizer_broker):
    return authorizer_broker.bootstrap


def test_kafka_acls_add_list_and_remove(acl_bootstrap, suffix):
    b = acl_bootstrap
    topic, group, prefix = f"acl-t-{suffix}", f"acl-g-{suffix}", f"acl-p-{suffix}"
    kafka_acls(b, "--add", "--allow-principal", "User:alice", "--operation", "Read",
               "--operation", "Describe", "--topic", topic)
    kafka_acls(b, "--add", "--deny-principal", "User:bob", "--allow-host", "*",
               "--deny-host", "10.0.0.1", "--operation", "Write", "--topic", topic)
    kafka_acls(b, "--add", "--allow-principal", "User:alice", "--operation", "Read",
               "--group", group)
    kafka_acls(b, "--add", "--allow-principal", "User:alice", "--operation", "Write",
               "--topic", prefix, "--resource-pattern-type", "prefixed")
    # Adding what exists adds nothing.
    kafka_acls(b, "--add", "--allow-principal", "User:alice", "--operation", "Read",
               "--group", group)
    topic_acls = {("User:alice", "*", "READ", "ALLOW"), ("User:alice", "*", "DESCRIBE", "ALLOW"),
                  ("User:bob", "10.0.0.1", "WRITE", "DENY")}
    want = {
        ("TOPIC", topic, "LITERAL"): topic_acls,
        ("GROUP", group, "LITERAL"): {("User:alice", "*", "READ", "ALLOW")},
        ("TOPIC", prefix, "PREFIXED"): {("User:alice", "*", "WRITE", "ALLOW")},
    }
    try:
        assert ours(listed(b), suffix) == want
        assert listed(b, "--topic", topic) == {("TOPIC", topic, "LITERAL"): topic_acls}
        assert listed(b, "--topic", prefix, "--resource-pattern-type", "prefixed") == {
            ("TOPIC", prefix, "PREFIXED"): {("User:alice", "*", "WRITE", "ALLOW")}}
        # MATCH: every ACL that applies to the named topic (here, the prefixed one).
        assert ours(listed(b, "--topic", f"{prefix}-orders", "--resource-pattern-type", "match"),
                    suffix) == {("TOPIC", prefix, "PREFIXED"): {("User:alice", "*", "WRITE", "ALLOW")}}
        assert ours(listed(b, "--principal", "User:bob"), suffix) == {
            ("TOPIC", topic, "LITERAL"): {("User:bob", "10.0.0.1", "WRITE", "DENY")}}

        kafka_acls(b, "--remove", "--force", "--deny-principal", "User:bob", "--deny-host",
                   "10.0.0.1", "--operation", "Write", "--topic", topic)
        assert listed(b, "--topic", topic) == {
            ("TOPIC", topic, "LITERAL"): topic_acls - {("User:bob", "10.0.0.1", "WRITE", "DENY")}}
    finally:
        kafka_acls(b, "--remove", "--force", "--topic", topic)
        kafka_acls(b, "--remove", "--force", "--group", group)
        kafka_acls(b, "--remove", "--force", "--topic", prefix, "--resource-pattern-type",
                   "prefixed")
    assert ours(listed(b), suffix) == {}


def test_cluster_acls_are_listed_and_removed(acl_bootstrap, suffix):
    b = acl_bootstrap
    # Any ACL on the cluster closes it to everyone it does not allow, including the anonymous
    # admin (ALTER, DESCRIBE) and, on Kafka, the broker's own controller traffic
    # (CLUSTER_ACTION): ALL for ANONYMOUS keeps both working.
    kafka_acls(b, "--add", "--allow-principal", ANONYMOUS, "--operation", "All", "--cluster")
    try:
        kafka_acls(b, "--add", "--allow-principal", f"User:ops-{suffix}", "--operation",
                   "DescribeConfigs", "--cluster")
        assert listed(b, "--cluster") == {("CLUSTER", "kafka-cluster", "LITERAL"): {
            (ANONYMOUS, "*", "ALL", "ALLOW"), (f"User:ops-{suffix}", "*", "DESCRIBE_CONFIGS", "ALLOW")}}
    finally:
        kafka_acls(b, "--remove", "--force", "--cluster")
    assert listed(b, "--cluster") == {}


def deliver(bootstrap: str, topic: str, n: int = 3, timeout: float = 30) -> list:
    """Produce `n` records to `topic` and return each delivery's error (None when acked)."""
    results: list = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": int(timeout * 1000) // 2,
                  "enable.idempotence": False})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda err, msg: results.append(err))
    p.flush(timeout)
    assert len(results) == n, f"{len(results)} of {n} deliveries reported"
    return results


def end_offset(bootstrap: str, topic: str) -> int:
    from confluent_kafka import TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1]
    finally:
        c.close()


def test_a_denied_write_fails_produce_on_that_topic_only(acl_bootstrap, suffix):
    b = acl_bootstrap
    denied, open_topic = f"deny-w-{suffix}", f"open-{suffix}"
    create_topic(b, denied, 1)
    create_topic(b, open_topic, 1)
    kafka_acls(b, "--add", "--deny-principal", ANONYMOUS, "--operation", "Write",
               "--topic", denied)
    try:
        errors = deliver(b, denied)
        assert all(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
                   for e in errors), errors
        assert deliver(b, open_topic) == [None, None, None]
    finally:
        kafka_acls(b, "--remove", "--force", "--topic", denied)
    # Nothing was appended to the denied topic.
    assert end_offset(b, denied) == 0
    assert end_offset(b, open_topic) == 3


def test_a_denied_read_on_a_group_fails_the_consumer(acl_bootstrap, suffix):
    b = acl_bootstrap
    topic, group = f"deny-g-{suffix}", f"denied-group-{suffix}"
    create_topic(b, topic, 1)
    assert deliver(b, topic, 1) == [None]
    kafka_acls(b, "--add", "--deny-principal", ANONYMOUS, "--operation", "Read",
               "--group", group)
    errors: list = []
    c = Consumer({"bootstrap.servers": b, "group.id": group, "auto.offset.reset": "earliest",
                  "error_cb": errors.append})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is not None, "a denied group consumed a record"
                errors.append(msg.error())
            if any(e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors):
                break
        assert any(e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors), errors
    finally:
        c.close()
        kafka_acls(b, "--remove", "--force", "--group", group)
    # Once the ACL is gone the same group consumes.
    c = Consumer({"bootstrap.servers": b, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        got = wait_for(lambda: (m := c.poll(1.0)) is not None and m.error() is None and m,
                       30, "a record once the group is allowed again")
        assert got.value() == b"v0"
    finally:
        c.close()


def test_acl_requests_without_an_authorizer_are_security_disabled(bootstrap):
    proc = kafka_acls(bootstrap, "--list", check=False)
    assert "SecurityDisabledException" in proc.stdout + proc.stderr, proc


def test_authorized_operations_are_reported_kip_430(acl_bootstrap, suffix):
    """DescribeTopics and DescribeCluster with include_authorized_operations: a topic whose only
    ACL allows ANONYMOUS to READ reports READ and the DESCRIBE it implies; the cluster, with no
    ACL (allow.everyone.if.no.acl.found), reports every cluster operation."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation, AdminClient
    b = acl_bootstrap
    topic = f"kip430-{suffix}"
    create_topic(b, topic, 1)
    kafka_acls(b, "--add", "--allow-principal", ANONYMOUS, "--operation", "Read",
               "--topic", topic)
    admin = AdminClient({"bootstrap.servers": b})
    try:
        def topic_ops():
            futures = admin.describe_topics(TopicCollection([topic]),
                                            include_authorized_operations=True)
            return set(futures[topic].result(30).authorized_operations or [])
        want = {AclOperation.READ, AclOperation.DESCRIBE}
        wait_for(lambda: topic_ops() == want, 30,
                 f"{topic} to report {want} (last: {topic_ops()})")
        cluster = admin.describe_cluster(include_authorized_operations=True).result(30)
        assert set(cluster.authorized_operations) == {
            AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
            AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
            AclOperation.DESCRIBE}
    finally:
        kafka_acls(b, "--remove", "--force", "--topic", topic)
