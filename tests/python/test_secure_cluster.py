"""A three-node Gregor cluster locked down end to end: the client and inter-broker listener is
SASL_SSL with SCRAM-SHA-512 (the brokers' own login bootstrapped by `storage format
--add-scram`, as `kafka-storage format --add-scram` does), the controller listener SASL_SSL
with PLAIN (Kafka's guidance there: SCRAM credentials live in the metadata log), and the
StandardAuthorizer on with no ACLs, so only the super users (the brokers', the controllers'
and the admin's logins) can do anything. Configured with Kafka's keys:

    listener.security.protocol.map=PLAINTEXT:SASL_SSL,CONTROLLER:SASL_SSL
    sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
    listener.name.plaintext.scram-sha-512.sasl.jaas.config=... username="broker" password=...
    sasl.mechanism.controller.protocol=PLAIN
    listener.name.controller.plain.sasl.jaas.config=... username="controller" ... user_controller=...

Replication fetches, the quorum's votes and appends, and the brokers' heartbeats all run over
TLS and authenticate. Then the replication failover tests run here too: kill -9 a partition
leader (and the quorum leader) under acks=all load and lose nothing.

The controller listener speaks Gregor's quorum protocol, not Kafka's, so the refusal tests
talk to it at the frame level: a length-prefixed JSON login, then JSON RPC frames. Gregor
only: a Kafka cluster's controller listener speaks KRaft's RPCs, so there is nothing of
Kafka's to compare these with; the client journeys over SASL_SSL are compared in
test_sasl.py."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from cluster import GregorCluster, running_cluster
from conftest import wait_for
from helpers import Stream, assert_all_acked_readable_once
from test_replication import create  # the admin comes with the cluster's client_conf
from test_tls import certs  # noqa: F401 - a fixture

SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
NODES = {1, 2, 3}


def secure_overrides(certs: Path) -> dict[str, str]:
    return {
        "listener.security.protocol.map": "PLAINTEXT:SASL_SSL,CONTROLLER:SASL_SSL",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs / "server-bundle.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs / "ca.pem"),
        "listener.name.plaintext.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.plaintext.scram-sha-512.sasl.jaas.config":
            f'{SCRAM} required username="broker" password="broker-secret";',
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            f'{PLAIN} required username="controller" password="controller-secret" '
            'user_controller="controller-secret" user_intruder="intruder-secret";',
        "sasl.mechanism.controller.protocol": "PLAIN",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:broker;User:controller;User:admin",
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
    }


def client_conf(certs: Path, user: str = "admin", password: str = "admin-secret") -> dict:
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user, "sasl.password": password,
            "ssl.ca.location": str(certs / "ca.pem")}


FORMAT_ARGS = ["--add-scram", "SCRAM-SHA-512=[name=broker,password=broker-secret]",
               "--add-scram", "SCRAM-SHA-512=[name=admin,password=admin-secret]",
               "--add-scram", "SCRAM-SHA-512=[name=alice,password=alice-secret]"]


@pytest.fixture
def secure_cluster(certs, tmp_path):  # noqa: F811 - certs is the imported fixture
    with running_cluster(tmp_path, overrides=secure_overrides(certs),
                         client_conf=client_conf(certs), format_args=FORMAT_ARGS) as c:
        yield c


def quorum_leader(c: GregorCluster, certs: Path, tmp_path: Path) -> int:
    """The quorum leader, as `gregor metadata-quorum --command-config` reports it."""
    props = tmp_path / "admin.properties"
    props.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        f'sasl.jaas.config={SCRAM} required username="admin" password="admin-secret";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={certs / 'ca.pem'}\n")
    running = ",".join(n.bootstrap for n in c.nodes.values() if n.running())
    out = c.gregor("metadata-quorum", "--bootstrap-server", running, "--command-config",
                   str(props), "describe", "--status")
    line = next(ln for ln in out.splitlines() if ln.startswith("LeaderId:"))
    return int(line.split(":", 1)[1])


def test_kill9_of_the_quorum_leader_and_a_partition_leader_over_sasl_ssl_loses_nothing(
        secure_cluster, certs, tmp_path, topic_name):  # noqa: F811
    c = secure_cluster
    create(c, topic_name, 6)
    conf = client_conf(certs)
    # An authenticated user with no ACL is refused: the authorizer is on everywhere.
    denied = Producer({"bootstrap.servers": c.bootstrap, **client_conf(certs, "alice",
                                                                      "alice-secret"),
                       "message.timeout.ms": 5000})
    errors = []
    denied.produce(topic_name, b"x", on_delivery=lambda err, _: errors.append(err))
    denied.flush(15)
    assert errors and errors[0] is not None and "AUTHORIZATION" in errors[0].name(), errors

    victim = quorum_leader(c, certs, tmp_path)
    assert victim in NODES
    survivors = NODES - {victim}
    with Stream(c.bootstrap, topic_name, config=conf) as s:
        wait_for(lambda: len(s.acked) > 2000, 60, "traffic to flow over SASL_SSL")
        killed_at = time.monotonic()
        c.kill(victim)
        wait_for(lambda: all(p.leader in survivors
                             for p in c.describe(topic_name, min(survivors)).values()),
                 20, "every partition to have a leader among the survivors")
        wait_for(lambda: quorum_leader(c, certs, tmp_path) in survivors, 20,
                 "a new quorum leader elected over the SASL_SSL controller listener")
        wait_for(lambda: s.acked_after(time.monotonic() - 0.5) > 100
                 and s.acked_after(killed_at) > 2000, 30, "writes to continue after the kill")
        c.start(victim)
        wait_for(lambda: s.acked_after(time.monotonic() - 0.5) > 100, 30,
                 "writes to continue after the restart")
        s.stop()
    assert not s.failed, f"{len(s.failed)} produce failures, first: {s.failed[0]}"
    assert_all_acked_readable_once(c.bootstrap, topic_name, 6, [v for _, v in s.acked],
                                   extra=conf)
    # The restarted node fetched its way back into every ISR over SASL_SSL.
    wait_for(lambda: all(victim in p.isr for p in c.describe(topic_name).values()), 60,
             f"node {victim} to rejoin every ISR of {topic_name}")
    assert Counter(p.leader for p in c.describe(topic_name).values()).keys() <= NODES


# -- the controller listener, frame by frame ------------------------------------------------

def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def read_frame(sock) -> bytes | None:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def controller_socket(c: GregorCluster, certs: Path, node_id: int = 1):  # noqa: F811
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    raw = socket.create_connection(("127.0.0.1", c.nodes[node_id].controller_port), timeout=15)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def login(sock, user: str, password: str, mechanism: str = "PLAIN") -> dict:
    token = list(f"\0{user}\0{password}".encode())
    sock.sendall(frame(json.dumps({"mechanism": mechanism, "token": token}).encode()))
    reply = read_frame(sock)
    assert reply is not None, "the controller closed without answering the login"
    return json.loads(reply)


def closed(sock) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def status_request(c: GregorCluster) -> bytes:
    return json.dumps({"cluster_id": c.cluster_id, "from": 9, "rpc": "Status"}).encode()


def test_the_controller_listener_refuses_bad_logins_plaintext_and_unauthorized_peers(
        secure_cluster, certs):  # noqa: F811
    c = secure_cluster
    # A wrong password and an unknown user read the same; the connection closes after.
    for user, password in (("controller", "wrong"), ("nobody", "controller-secret")):
        with controller_socket(c, certs) as s:
            reply = login(s, user, password)
            assert reply["error"] == "Authentication failed: Invalid username or password", reply
            assert closed(s)
    # Only PLAIN is served there.
    with controller_socket(c, certs) as s:
        reply = login(s, "controller", "controller-secret", "SCRAM-SHA-512")
        assert "Unsupported SASL mechanism SCRAM-SHA-512" in reply["error"], reply
        assert closed(s)
    # An RPC before the login is not a login: refused, closed.
    with controller_socket(c, certs) as s:
        s.sendall(frame(status_request(c)))
        reply = read_frame(s)
        assert reply is not None and "malformed SASL login" in json.loads(reply)["error"]
        assert closed(s)
    # An oversized login frame is refused before it is read.
    with controller_socket(c, certs) as s:
        s.sendall(struct.pack(">I", 100 * 1024 * 1024))
        assert closed(s)
    # Plaintext to the TLS port: at most a TLS alert back (content type 21), never an answer,
    # then the close; the quorum keeps serving.
    with socket.create_connection(("127.0.0.1", c.nodes[1].controller_port), timeout=15) as s:
        s.sendall(frame(status_request(c)))
        back = b""
        while chunk := s.recv(4096):
            back += chunk
        assert back == b"" or back[0] == 0x15, back
    # A valid login without CLUSTER_ACTION (not a super user, no ACL) is refused at once.
    with controller_socket(c, certs) as s:
        assert login(s, "intruder", "intruder-secret") == {"error": None}
        reply = json.loads(read_frame(s))
        assert reply == {"Refused": {"NotAuthorized": "User:intruder"}}, reply
        assert closed(s)
    # The controllers' own login is served.
    with controller_socket(c, certs) as s:
        assert login(s, "controller", "controller-secret") == {"error": None}
        s.sendall(frame(status_request(c)))
        reply = json.loads(read_frame(s))
        assert "Raft" in reply and reply["Raft"]["leader"] in NODES, reply
    # All three still agree on a leader after all that.
    create(c, "after-the-refusals", 1)


def test_dedicated_controllers_replicate_the_metadata_log_to_brokers_over_sasl_ssl(
        certs, tmp_path, topic_name):  # noqa: F811
    """Controller-only voters and broker-only learners: the active controller sends the log to
    each broker's metadata replication listener with the controller listener's security, and
    the brokers heartbeat and forward their writes over it."""
    with running_cluster(tmp_path, size=3, controllers=3, overrides=secure_overrides(certs),
                         client_conf=client_conf(certs), format_args=FORMAT_ARGS) as c:
        create(c, topic_name, 3)
        conf = client_conf(certs)
        with Stream(c.bootstrap, topic_name, config=conf) as s:
            wait_for(lambda: len(s.acked) > 500, 60, "traffic to flow")
            s.stop()
        assert not s.failed, s.failed[:3]
        assert_all_acked_readable_once(c.bootstrap, topic_name, 3, [v for _, v in s.acked],
                                       extra=conf)
