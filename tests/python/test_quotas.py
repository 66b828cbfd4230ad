"""Client quotas: DescribeClientQuotas (48) and AlterClientQuotas (49), administered with Kafka's
own kafka-configs and with hand-built requests, against Gregor and against Apache Kafka 4.3.1
(`quota_broker`, one plain PLAINTEXT broker of each kind per module), so every assertion is
Kafka's own behaviour.

Neither confluent-kafka 2.16.1 nor kafka-python 3.0.12's KafkaAdminClient has client quota
methods, so the protocol-level tests encode the requests with kafka-python's generated
message classes (kafka.protocol.admin.*ClientQuotas*) and send them over a plain socket, at an
explicit API version (v0: classic encoding, v1: flexible).

Kafka's answers, as measured (error 42 is INVALID_REQUEST, 35 UNSUPPORTED_VERSION):
- AlterClientQuotas reports per entry; one bad entry does not fail the others; a bad entry
  changes nothing; validate_only changes nothing; the response entries come in no particular
  order (compared sorted here); a successful entry has error_message null.
- DescribeClientQuotas success: error_message "" (not null) and entries [] (not null) when
  nothing matches; on an error entries is null.
- Filter semantics: EXACT matches the named entity, DEFAULT the default one, SPECIFIED any
  entity having that type, the default one included; strict=false also returns entities with
  more types than the filter names, strict=true only those with exactly the filter's types.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import uuid
from itertools import count

import pytest
from kafka.protocol.admin import (AlterClientQuotasRequest, AlterClientQuotasResponse,
                                  DescribeClientQuotasRequest, DescribeClientQuotasResponse)

from conftest import SCRIPTS, GregorBroker, KafkaBroker, gregor_binary, wait_for

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP")),
                       reason="starts its own brokers (and clears every quota on them)"),
    pytest.mark.skipif(
        shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
        reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off"),
]

INVALID_REQUEST = 42
UNSUPPORTED_VERSION = 35
EXACT, DEFAULT, SPECIFIED = 0, 1, 2


class LogOnFailure:
    """conftest attaches `log_sections()` of a test's fixtures to its failure report."""

    def log_sections(self):
        return [(f"{self.name} log (tail)", self.log_tail())]


class QuotaGregor(LogOnFailure, GregorBroker):
    pass


class QuotaKafka(LogOnFailure, KafkaBroker):
    pass


# Quota rates over 2 windows of 1 s (Kafka's default is 11): a client goes over its quota
# after a second's worth of bytes, so the throttling tests stay short.
QUOTA_WINDOWS = {"quota.window.num": "2", "quota.window.size.seconds": "1"}


@pytest.fixture(scope="module", params=["gregor", "kafka"])
def quota_broker(request, tmp_path_factory):
    """A plain single-node broker: Gregor, then Apache Kafka."""
    workdir = tmp_path_factory.mktemp(f"quotas-{request.param}")
    if request.param == "gregor":
        binary = gregor_binary()
        if not binary.exists():
            pytest.fail(f"gregor binary not found at {binary}")
        b = QuotaGregor(binary, workdir, QUOTA_WINDOWS)
    else:
        b = QuotaKafka(workdir, QUOTA_WINDOWS)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def qb(quota_broker) -> str:
    """The bootstrap of `quota_broker`."""
    return quota_broker.bootstrap


@pytest.fixture
def sfx() -> str:
    """A suffix that makes this test's entity names its own."""
    return uuid.uuid4().hex[:8]


# --- hand-built requests ------------------------------------------------------------------

_correlation = count(1)


def roundtrip(bootstrap: str, request, response_cls, version: int,
              client_id: str = "quota-tests"):
    """Send `request` at `version` on a fresh connection; the decoded response."""
    host, port = bootstrap.rsplit(":", 1)
    correlation_id = next(_correlation)
    request.with_header(correlation_id=correlation_id, client_id=client_id)
    frame = request.encode(version=version, header=True, framed=True)
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(frame)

        def recv_exactly(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
                buf += chunk
            return buf

        size = struct.unpack(">i", recv_exactly(4))[0]
        body = recv_exactly(size)
    response = response_cls.decode(body, version=version, header=True)
    assert response.header.correlation_id == correlation_id
    return response


def entity_key(pairs) -> tuple:
    """An entity as a sorted tuple of (type, name) pairs; name None is the default entity."""
    return tuple(sorted(pairs, key=lambda p: (p[0], p[1] is not None, p[1] or "")))


def alter(bootstrap: str, entries, validate_only: bool = False, version: int = 1) -> list:
    """AlterClientQuotas. `entries`: [(entity pairs, [(key, value or None to remove)])].
    Returns sorted [(entity, error_code, error_message)]."""
    E = AlterClientQuotasRequest.EntryData
    request = AlterClientQuotasRequest(
        entries=[E(entity=[E.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                   ops=[E.OpData(key=k, value=0.0 if v is None else float(v), remove=v is None)
                        for k, v in ops])
                 for entity, ops in entries],
        validate_only=validate_only)
    response = roundtrip(bootstrap, request, AlterClientQuotasResponse, version)
    return sorted(((entity_key((x.entity_type, x.entity_name) for x in e.entity), e.error_code,
                    e.error_message) for e in response.entries), key=repr)


def alter_ok(bootstrap: str, entries, **kw):
    got = alter(bootstrap, entries, **kw)
    assert all(code == 0 for _, code, _ in got), got


def describe_raw(bootstrap: str, components, strict: bool = False, version: int = 1):
    """DescribeClientQuotas. `components`: [(entity type, match type, match)]. Returns
    (error_code, error_message, {entity: {key: value}} or None when entries is null)."""
    C = DescribeClientQuotasRequest.ComponentData
    request = DescribeClientQuotasRequest(
        components=[C(entity_type=t, match_type=m, match=n) for t, m, n in components],
        strict=strict)
    r = roundtrip(bootstrap, request, DescribeClientQuotasResponse, version)
    if r.entries is None:
        return r.error_code, r.error_message, None
    found = {}
    for e in r.entries:
        key = entity_key((x.entity_type, x.entity_name) for x in e.entity)
        assert key not in found, f"entity {key} listed twice"
        found[key] = {v.key: v.value for v in e.values}
    return r.error_code, r.error_message, found


def describe(bootstrap: str, components, strict: bool = False, version: int = 1) -> dict:
    code, message, found = describe_raw(bootstrap, components, strict, version)
    assert (code, message) == (0, ""), (code, message)
    return found


def exactly(entity) -> list:
    """The components of a filter matching just `entity` (with strict=True)."""
    return [(t, DEFAULT, None) if n is None else (t, EXACT, n) for t, n in entity]


def quotas_of(bootstrap: str, entity) -> dict:
    return describe(bootstrap, exactly(entity), strict=True).get(entity_key(entity), {})


def wait_quotas(bootstrap: str, entity, want: dict, timeout: float = 30) -> None:
    """Wait until `entity` (pairs) has exactly the quotas `want` (metadata propagates to the
    broker asynchronously)."""
    wait_for(lambda: quotas_of(bootstrap, entity) == want, timeout,
             f"quotas of {entity} to be {want} (last: {quotas_of(bootstrap, entity)})")


def settled(bootstrap: str, sfx: str) -> None:
    """Write a marker quota after the requests under test and wait until it shows: the
    metadata log is ordered, so whatever those requests changed is visible too."""
    marker = [("user", f"marker-{sfx}-{uuid.uuid4().hex[:6]}")]
    alter_ok(bootstrap, [(marker, [("producer_byte_rate", 1)])])
    wait_quotas(bootstrap, marker, {"producer_byte_rate": 1.0})
    alter_ok(bootstrap, [(marker, [("producer_byte_rate", None)])])
    wait_quotas(bootstrap, marker, {})


def clear_all_quotas(bootstrap: str) -> None:
    """Remove every quota on the broker, for the tests that look at all of them."""
    everything = describe(bootstrap, [])
    if everything:
        alter_ok(bootstrap, [(list(entity), [(k, None) for k in values])
                             for entity, values in everything.items()])
    wait_for(lambda: describe(bootstrap, []) == {}, 30, "no quotas left")


U = "user"
C = "client-id"
IP = "ip"


# --- kafka-configs --------------------------------------------------------------------------

def kafka_configs(bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `scripts/kafka.sh configs --bootstrap-server BOOTSTRAP ARGS...`."""
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), "configs", "--bootstrap-server", bootstrap,
                           *args], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"kafka-configs {' '.join(args)} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def configs_alter(bootstrap: str, *args: str) -> str:
    return kafka_configs(bootstrap, "--alter", *args).stdout.strip()


def configs_describe(bootstrap: str, *args: str) -> set[str]:
    """The lines `kafka-configs --describe ARGS` prints, as a set (it prints entities in hash
    order; the keys within a line come in the Java client's HashMap order, independent of the
    broker's)."""
    return set(kafka_configs(bootstrap, "--describe", *args).stdout.splitlines())


def test_api_versions_advertise_the_client_quota_apis(qb):
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), "broker-api-versions",
                           "--bootstrap-server", qb], text=True, capture_output=True,
                          timeout=120, check=True)
    assert "DescribeClientQuotas(48): 0 to 1 [usable: 1]" in proc.stdout, proc.stdout
    assert "AlterClientQuotas(49): 0 to 1 [usable: 1]" in proc.stdout, proc.stdout


def test_configs_cli_user_quotas_add_describe_and_delete(qb, sfx):
    alice = f"alice-{sfx}"
    user = ["--entity-type", "users", "--entity-name", alice]
    assert configs_alter(qb, "--add-config", "producer_byte_rate=1024,consumer_byte_rate=2048",
                         *user) == f"Completed updating config for user {alice}."
    wait_quotas(qb, [(U, alice)], {"producer_byte_rate": 1024.0, "consumer_byte_rate": 2048.0})
    assert configs_describe(qb, *user) == {
        f"Quota configs for user-principal '{alice}' are "
        "consumer_byte_rate=2048.0, producer_byte_rate=1024.0"}

    # Setting a key again replaces its value.
    configs_alter(qb, "--add-config", "consumer_byte_rate=4096", *user)
    wait_quotas(qb, [(U, alice)], {"producer_byte_rate": 1024.0, "consumer_byte_rate": 4096.0})

    assert configs_alter(qb, "--delete-config", "producer_byte_rate", *user) == (
        f"Completed updating config for user {alice}.")
    wait_quotas(qb, [(U, alice)], {"consumer_byte_rate": 4096.0})
    assert configs_describe(qb, *user) == {
        f"Quota configs for user-principal '{alice}' are consumer_byte_rate=4096.0"}

    # With its last key gone the entity is gone: describe prints nothing.
    configs_alter(qb, "--delete-config", "consumer_byte_rate", *user)
    wait_quotas(qb, [(U, alice)], {})
    assert describe(qb, exactly([(U, alice)]), strict=False) == {}
    assert configs_describe(qb, *user) == set()


def test_configs_cli_default_user_and_default_client(qb):
    clear_all_quotas(qb)
    users = ["--entity-type", "users", "--entity-default"]
    clients = ["--entity-type", "clients", "--entity-default"]
    try:
        assert configs_alter(qb, "--add-config", "producer_byte_rate=500", *users) == (
            "Completed updating default config for users in the cluster.")
        assert configs_alter(qb, "--add-config", "request_percentage=12.5", *clients) == (
            "Completed updating default config for clients in the cluster.")
        wait_quotas(qb, [(U, None)], {"producer_byte_rate": 500.0})
        wait_quotas(qb, [(C, None)], {"request_percentage": 12.5})
        assert configs_describe(qb, *users) == {
            "Quota configs for the default user-principal are producer_byte_rate=500.0"}
        assert configs_describe(qb, *clients) == {
            "Quota configs for the default client-id are request_percentage=12.5"}
        assert describe(qb, []) == {((U, None),): {"producer_byte_rate": 500.0},
                                    ((C, None),): {"request_percentage": 12.5}}
    finally:
        clear_all_quotas(qb)


def test_configs_cli_user_and_client_pairs(qb, sfx):
    alice, app = f"alice-{sfx}", f"app-{sfx}"
    clear_all_quotas(qb)
    try:
        assert configs_alter(qb, "--add-config", "producer_byte_rate=4096",
                             "--entity-type", "users", "--entity-name", alice,
                             "--entity-type", "clients", "--entity-name", app) == (
            f"Completed updating config for user {alice}.")
        assert configs_alter(qb, "--add-config", "consumer_byte_rate=300",
                             "--entity-type", "users", "--entity-name", alice,
                             "--entity-type", "clients", "--entity-default") == (
            f"Completed updating config for user {alice}.")
        assert configs_alter(qb, "--add-config", "consumer_byte_rate=301",
                             "--entity-type", "users", "--entity-default",
                             "--entity-type", "clients", "--entity-default") == (
            "Completed updating default config for users in the cluster.")
        assert configs_alter(qb, "--add-config", "consumer_byte_rate=302",
                             "--entity-type", "clients", "--entity-name", app) == (
            f"Completed updating config for client {app}.")
        wait_quotas(qb, [(C, app)], {"consumer_byte_rate": 302.0})
        assert describe(qb, []) == {
            ((C, app), (U, alice)): {"producer_byte_rate": 4096.0},
            ((C, None), (U, alice)): {"consumer_byte_rate": 300.0},
            ((C, None), (U, None)): {"consumer_byte_rate": 301.0},
            ((C, app),): {"consumer_byte_rate": 302.0},
        }

        pair_line = f"Quota configs for user-principal '{alice}', client-id '{app}' are " \
                    "producer_byte_rate=4096.0"
        alice_default_line = (f"Quota configs for user-principal '{alice}', the default "
                              "client-id are consumer_byte_rate=300.0")
        defaults_line = ("Quota configs for the default user-principal, the default client-id "
                         "are consumer_byte_rate=301.0")
        app_line = f"Quota configs for client-id '{app}' are consumer_byte_rate=302.0"
        assert configs_describe(qb, "--entity-type", "users", "--entity-name", alice,
                                "--entity-type", "clients", "--entity-name", app) == {pair_line}
        assert configs_describe(qb, "--entity-type", "users", "--entity-name", alice,
                                "--entity-type", "clients", "--entity-default") == {
            alice_default_line}
        assert configs_describe(qb, "--entity-type", "users", "--entity-default",
                                "--entity-type", "clients", "--entity-default") == {defaults_line}
        # A user with clients but no name for them: every pair of that user.
        assert configs_describe(qb, "--entity-type", "users", "--entity-name", alice,
                                "--entity-type", "clients") == {pair_line, alice_default_line}
        # All pairs, but not the client-only entity.
        assert configs_describe(qb, "--entity-type", "users", "--entity-type", "clients") == {
            pair_line, alice_default_line, defaults_line}
        # The user alone has no quotas: the pairs are not listed for it.
        assert configs_describe(qb, "--entity-type", "users", "--entity-name", alice) == set()
        assert configs_describe(qb, "--entity-type", "clients", "--entity-name", app) == {app_line}

        configs_alter(qb, "--delete-config", "producer_byte_rate",
                      "--entity-type", "users", "--entity-name", alice,
                      "--entity-type", "clients", "--entity-name", app)
        wait_quotas(qb, [(U, alice), (C, app)], {})
    finally:
        clear_all_quotas(qb)


def test_configs_cli_describe_all_users_and_all_clients(qb, sfx):
    alice, bob, app = f"alice-{sfx}", f"bob-{sfx}", f"app-{sfx}"
    clear_all_quotas(qb)
    try:
        configs_alter(qb, "--add-config", "producer_byte_rate=1024,consumer_byte_rate=2048",
                      "--entity-type", "users", "--entity-name", alice)
        configs_alter(qb, "--add-config", "consumer_byte_rate=100",
                      "--entity-type", "users", "--entity-name", bob)
        configs_alter(qb, "--add-config", "producer_byte_rate=500",
                      "--entity-type", "users", "--entity-default")
        configs_alter(qb, "--add-config", "producer_byte_rate=4096",
                      "--entity-type", "users", "--entity-name", alice,
                      "--entity-type", "clients", "--entity-name", app)
        configs_alter(qb, "--add-config", "request_percentage=12.5",
                      "--entity-type", "clients", "--entity-default")
        wait_quotas(qb, [(C, None)], {"request_percentage": 12.5})
        # Every user entity, the default one included; not the (user, client-id) pairs.
        assert configs_describe(qb, "--entity-type", "users") == {
            "Quota configs for the default user-principal are producer_byte_rate=500.0",
            f"Quota configs for user-principal '{alice}' are "
            "consumer_byte_rate=2048.0, producer_byte_rate=1024.0",
            f"Quota configs for user-principal '{bob}' are consumer_byte_rate=100.0",
        }
        assert configs_describe(qb, "--entity-type", "clients") == {
            "Quota configs for the default client-id are request_percentage=12.5"}
    finally:
        clear_all_quotas(qb)


def test_configs_cli_errors_from_the_broker(qb, sfx):
    zed = f"zed-{sfx}"
    user = ["--entity-type", "users", "--entity-name", zed]
    for value, message in (
            ("10.5", "producer_byte_rate cannot be a fractional value."),
            ("0", "Quota producer_byte_rate must be greater than 0"),
            ("-1", "Quota producer_byte_rate must be greater than 0")):
        proc = kafka_configs(qb, "--alter", "--add-config", f"producer_byte_rate={value}", *user,
                             check=False)
        assert proc.returncode == 1, proc
        assert (f"org.apache.kafka.common.errors.InvalidRequestException: {message}"
                in proc.stderr), proc.stderr
    # --delete-config checks the key against a describe first.
    proc = kafka_configs(qb, "--alter", "--delete-config", "consumer_byte_rate", *user,
                         check=False)
    assert proc.returncode == 1, proc
    assert "Invalid config(s): consumer_byte_rate" in proc.stderr, proc.stderr
    settled(qb, sfx)
    assert quotas_of(qb, [(U, zed)]) == {}


def test_configs_cli_ip_quotas(qb):
    clear_all_quotas(qb)
    ip = ["--entity-type", "ips", "--entity-name", "127.0.0.1"]
    default_ip = ["--entity-type", "ips", "--entity-default"]
    try:
        assert configs_alter(qb, "--add-config", "connection_creation_rate=10", *ip) == (
            "Completed updating config for ip 127.0.0.1.")
        assert configs_alter(qb, "--add-config", "connection_creation_rate=20", *default_ip) == (
            "Completed updating default config for ips in the cluster.")
        wait_quotas(qb, [(IP, "127.0.0.1")], {"connection_creation_rate": 10.0})
        wait_quotas(qb, [(IP, None)], {"connection_creation_rate": 20.0})
        ip_line = "Quota configs for ip '127.0.0.1' are connection_creation_rate=10.0"
        default_line = "Quota configs for the default ip are connection_creation_rate=20.0"
        assert configs_describe(qb, *ip) == {ip_line}
        assert configs_describe(qb, *default_ip) == {default_line}
        assert configs_describe(qb, "--entity-type", "ips") == {ip_line, default_line}

        assert describe(qb, [(IP, SPECIFIED, None)]) == {
            ((IP, "127.0.0.1"),): {"connection_creation_rate": 10.0},
            ((IP, None),): {"connection_creation_rate": 20.0}}
        assert describe(qb, [(IP, DEFAULT, None)], strict=True) == {
            ((IP, None),): {"connection_creation_rate": 20.0}}
        assert describe(qb, [(IP, EXACT, "127.0.0.2")]) == {}
        # ips are not users.
        assert describe(qb, [(U, SPECIFIED, None)]) == {}

        configs_alter(qb, "--delete-config", "connection_creation_rate", *ip)
        wait_quotas(qb, [(IP, "127.0.0.1")], {})
        assert configs_describe(qb, "--entity-type", "ips") == {default_line}
    finally:
        clear_all_quotas(qb)


# --- AlterClientQuotas by hand --------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1])
def test_alter_and_describe_round_trip(qb, sfx, version):
    alice, app = f"alice-{sfx}", f"app-{sfx}"
    pair = [(U, alice), (C, app)]
    assert alter(qb, [([(U, alice)], [("producer_byte_rate", 1024), ("consumer_byte_rate", 2048)]),
                      (pair, [("request_percentage", 12.5)])], version=version) == sorted(
        [(((C, app), (U, alice)), 0, None), (((U, alice),), 0, None)], key=repr)
    wait_quotas(qb, pair, {"request_percentage": 12.5})
    wait_quotas(qb, [(U, alice)], {"producer_byte_rate": 1024.0, "consumer_byte_rate": 2048.0})
    assert describe(qb, [(U, EXACT, alice)], version=version) == {
        ((U, alice),): {"producer_byte_rate": 1024.0, "consumer_byte_rate": 2048.0},
        ((C, app), (U, alice)): {"request_percentage": 12.5}}

    # Remove one key, set another, in one entry.
    alter_ok(qb, [([(U, alice)], [("producer_byte_rate", None),
                                   ("controller_mutation_rate", 2.5)])], version=version)
    wait_quotas(qb, [(U, alice)], {"consumer_byte_rate": 2048.0, "controller_mutation_rate": 2.5})
    alter_ok(qb, [([(U, alice)], [("consumer_byte_rate", None),
                                   ("controller_mutation_rate", None)]),
                  (pair, [("request_percentage", None)])], version=version)
    wait_quotas(qb, [(U, alice)], {})
    assert describe(qb, [(U, EXACT, alice)], version=version) == {}


BAD_ALTERS = {
    # id: (entity, ops, error message); every one is INVALID_REQUEST.
    "unknown-key": ([(U, "{u}")], [("foo_rate", 1)], "Invalid configuration key foo_rate"),
    "key-case-matters": ([(U, "{u}")], [("PRODUCER_BYTE_RATE", 1)],
                         "Invalid configuration key PRODUCER_BYTE_RATE"),
    "ip-key-on-a-user": ([(U, "{u}")], [("connection_creation_rate", 10)],
                         "Invalid configuration key connection_creation_rate"),
    "ip-key-on-a-client": ([(C, "{u}")], [("connection_creation_rate", 10)],
                           "Invalid configuration key connection_creation_rate"),
    "user-key-on-an-ip": ([(IP, "127.0.0.1")], [("producer_byte_rate", 10)],
                          "Invalid configuration key producer_byte_rate"),
    "fractional-producer-byte-rate": ([(U, "{u}")], [("producer_byte_rate", 10.5)],
                                      "producer_byte_rate cannot be a fractional value."),
    "fractional-consumer-byte-rate": ([(U, "{u}")], [("consumer_byte_rate", 0.5)],
                                      "consumer_byte_rate cannot be a fractional value."),
    "fractional-connection-rate": ([(IP, "127.0.0.3")], [("connection_creation_rate", 2.5)],
                                   "connection_creation_rate cannot be a fractional value."),
    "zero-producer-byte-rate": ([(U, "{u}")], [("producer_byte_rate", 0)],
                                "Quota producer_byte_rate must be greater than 0"),
    "negative-producer-byte-rate": ([(U, "{u}")], [("producer_byte_rate", -5)],
                                    "Quota producer_byte_rate must be greater than 0"),
    "zero-request-percentage": ([(U, "{u}")], [("request_percentage", 0)],
                                "Quota request_percentage must be greater than 0"),
    "negative-request-percentage": ([(U, "{u}")], [("request_percentage", -5)],
                                    "Quota request_percentage must be greater than 0"),
    "zero-controller-mutation-rate": ([(U, "{u}")], [("controller_mutation_rate", 0)],
                                      "Quota controller_mutation_rate must be greater than 0"),
    "zero-connection-rate": ([(IP, "127.0.0.3")], [("connection_creation_rate", 0)],
                             "Quota connection_creation_rate must be greater than 0"),
    "byte-rate-beyond-a-long": ([(U, "{u}")], [("producer_byte_rate", 9.3e18)],
                                "Proposed value for producer_byte_rate is too large for a LONG."),
    "infinite-byte-rate": ([(U, "{u}")], [("producer_byte_rate", float("inf"))],
                           "Proposed value for producer_byte_rate is too large for a LONG."),
    "unknown-entity-type": ([("group", "{u}")], [("producer_byte_rate", 10)],
                            "Unhandled client quota entity type: group"),
    "unknown-entity-type-no-ops": ([("group", "{u}")], [],
                                   "Unhandled client quota entity type: group"),
    "user-and-ip": ([(U, "{u}"), (IP, "127.0.0.1")], [("connection_creation_rate", 10)],
                    "Invalid quota entity combination, IP entity shouldnot be combined with "
                    "User or ClientId"),
    "client-and-ip": ([(C, "{u}"), (IP, "127.0.0.1")], [("connection_creation_rate", 10)],
                      "Invalid quota entity combination, IP entity shouldnot be combined with "
                      "User or ClientId"),
    "empty-entity": ([], [("producer_byte_rate", 10)], "Invalid empty client quota entity"),
    "empty-user-name": ([(U, "")], [("producer_byte_rate", 10)], "Empty user not supported"),
    "empty-client-id": ([(C, "")], [("producer_byte_rate", 10)],
                        "Empty client-id not supported"),
    "empty-ip": ([(IP, "")], [("connection_creation_rate", 10)], "Empty ip not supported"),
    "not-an-ip": ([(IP, "10.0.0.0/8")], [("connection_creation_rate", 10)],
                  "10.0.0.0/8 is not a valid IP or resolvable host."),
    # The first bad op (in request order) is the one reported.
    "first-bad-op-wins": ([(U, "{u}")], [("producer_byte_rate", 0.5), ("foo", 1)],
                          "producer_byte_rate cannot be a fractional value."),
    "first-bad-op-wins-2": ([(U, "{u}")], [("foo", 1), ("producer_byte_rate", 0.5)],
                            "Invalid configuration key foo"),
    "good-op-then-bad-op": ([(U, "{u}")], [("producer_byte_rate", 10), ("foo", 1)],
                            "Invalid configuration key foo"),
    # The same key twice in one entry (even set and remove): Kafka's message names the entity.
    "duplicate-key": ([(U, "{u}")], [("producer_byte_rate", 10), ("producer_byte_rate", 20)],
                      "Ignoring duplicate entity ClientQuotaEntity(entries={user={u}})"),
    "set-and-remove-one-key": ([(U, "{u}")], [("producer_byte_rate", 10),
                                              ("producer_byte_rate", None)],
                               "Ignoring duplicate entity ClientQuotaEntity(entries={user={u}})"),
}


@pytest.mark.parametrize("validate_only", [False, True], ids=["apply", "validate-only"])
@pytest.mark.parametrize("case", list(BAD_ALTERS))
def test_alter_rejects(qb, sfx, case, validate_only):
    entity, ops, message = BAD_ALTERS[case]
    name = f"bad-{sfx}"
    entity = [(t, n.replace("{u}", name)) for t, n in entity]
    message = message.replace("{u}", name)
    assert alter(qb, [(entity, ops)], validate_only=validate_only) == [
        (entity_key(entity), INVALID_REQUEST, message)]
    if validate_only:
        return
    # Nothing of it was applied.
    settled(qb, sfx)
    assert {k: v for k, v in describe(qb, []).items()
            if any(n == name for _, n in k) or k == entity_key(entity)} == {}


def test_alter_accepts(qb, sfx):
    """What Kafka lets through: fractions where the key is not an integer rate, no upper bound
    on request_percentage, removing what was never set (or an unknown key), an entry without
    ops, host names and IPv6 for ips."""
    u = f"ok-{sfx}"
    entries = [
        ([(U, u)], [("request_percentage", 0.5), ("controller_mutation_rate", 1.5),
                    ("producer_byte_rate", 2 ** 62)]),
        ([(U, f"{u}-pct")], [("request_percentage", 1e6)]),
        ([(C, u)], [("controller_mutation_rate", 0.25)]),
        ([(U, u), (C, u)], [("request_percentage", 1.5)]),
        ([(U, None), (C, None)], [("producer_byte_rate", 7)]),
        ([(U, f"{u}-never")], [("producer_byte_rate", None), ("foo_rate", None)]),
        ([(U, f"{u}-noops")], []),
        ([(IP, "::1")], [("connection_creation_rate", 5)]),
        ([(IP, "localhost")], [("connection_creation_rate", 6)]),
    ]
    try:
        assert alter(qb, entries) == sorted(
            ((entity_key(e), 0, None) for e, _ in entries), key=repr)
        wait_quotas(qb, [(IP, "localhost")], {"connection_creation_rate": 6.0})
        mine = {k: v for k, v in describe(qb, []).items()
                if any(n is not None and n.startswith(u) for _, n in k)
                or k in (((C, None), (U, None)), ((IP, "::1"),), ((IP, "localhost"),))}
        assert mine == {
            ((U, u),): {"request_percentage": 0.5, "controller_mutation_rate": 1.5,
                        "producer_byte_rate": float(2 ** 62)},
            ((U, f"{u}-pct"),): {"request_percentage": 1e6},
            ((C, u),): {"controller_mutation_rate": 0.25},
            ((C, u), (U, u)): {"request_percentage": 1.5},
            ((C, None), (U, None)): {"producer_byte_rate": 7.0},
            ((IP, "::1"),): {"connection_creation_rate": 5.0},
            ((IP, "localhost"),): {"connection_creation_rate": 6.0},
        }
    finally:
        alter_ok(qb, [(e, [(k, None) for k, v in ops if v is not None])
                      for e, ops in entries if any(v is not None for _, v in ops)])


def test_validate_only_changes_nothing(qb, sfx):
    u = f"vo-{sfx}"
    alter_ok(qb, [([(U, u)], [("producer_byte_rate", 100)])])
    wait_quotas(qb, [(U, u)], {"producer_byte_rate": 100.0})
    assert alter(qb, [([(U, u)], [("producer_byte_rate", 200), ("consumer_byte_rate", 300)]),
                      ([(U, f"{u}-new")], [("producer_byte_rate", 1)]),
                      ([(U, u), (C, u)], [("request_percentage", 5)])],
                 validate_only=True) == sorted(
        [(((U, u),), 0, None), (((U, f"{u}-new"),), 0, None), (((C, u), (U, u)), 0, None)],
        key=repr)
    # Removing under validate_only removes nothing either.
    alter_ok(qb, [([(U, u)], [("producer_byte_rate", None)])], validate_only=True)
    settled(qb, sfx)
    assert describe(qb, [(U, EXACT, u)]) == {((U, u),): {"producer_byte_rate": 100.0}}
    assert describe(qb, [(U, EXACT, f"{u}-new")]) == {}
    alter_ok(qb, [([(U, u)], [("producer_byte_rate", None)])])
    wait_quotas(qb, [(U, u)], {})


def test_one_bad_entry_does_not_fail_the_others(qb, sfx):
    good, bad = f"good-{sfx}", f"bad-{sfx}"
    assert alter(qb, [([(U, good)], [("producer_byte_rate", 10)]),
                      ([(U, bad)], [("producer_byte_rate", 20), ("foo", 1)])]) == [
        (((U, bad),), INVALID_REQUEST, "Invalid configuration key foo"),
        (((U, good),), 0, None)]
    wait_quotas(qb, [(U, good)], {"producer_byte_rate": 10.0})
    assert quotas_of(qb, [(U, bad)]) == {}
    alter_ok(qb, [([(U, good)], [("producer_byte_rate", None)])])
    wait_quotas(qb, [(U, good)], {})


# --- DescribeClientQuotas filters ------------------------------------------------------------

def test_describe_filters(qb, sfx):
    alice, bob, app = f"alice-{sfx}", f"bob-{sfx}", f"app-{sfx}"
    A = ((U, alice),)
    B = ((U, bob),)
    D = ((U, None),)
    AP = ((C, app), (U, alice))
    values = {A: {"producer_byte_rate": 1024.0, "consumer_byte_rate": 2048.0},
              B: {"consumer_byte_rate": 100.0},
              D: {"producer_byte_rate": 500.0},
              AP: {"producer_byte_rate": 4096.0}}
    clear_all_quotas(qb)
    try:
        alter_ok(qb, [(list(e), list(v.items())) for e, v in values.items()])
        wait_for(lambda: describe(qb, []) == values, 30, "the four entities")

        def found(components, strict):
            return set(describe(qb, components, strict))

        cases = [
            # (components, strict, entities)
            ([], False, {A, B, D, AP}),
            ([], True, set()),
            ([(U, EXACT, alice)], False, {A, AP}),
            ([(U, EXACT, alice)], True, {A}),
            ([(U, EXACT, f"nobody-{sfx}")], False, set()),
            ([(U, DEFAULT, None)], False, {D}),
            ([(U, DEFAULT, None)], True, {D}),
            # SPECIFIED: any entity with a user, the default user included.
            ([(U, SPECIFIED, None)], False, {A, B, D, AP}),
            ([(U, SPECIFIED, None)], True, {A, B, D}),
            ([(C, SPECIFIED, None)], False, {AP}),
            ([(C, SPECIFIED, None)], True, set()),
            ([(C, EXACT, app)], False, {AP}),
            ([(C, EXACT, app)], True, set()),
            ([(C, DEFAULT, None)], False, set()),
            ([(U, EXACT, alice), (C, EXACT, app)], True, {AP}),
            ([(U, EXACT, alice), (C, EXACT, app)], False, {AP}),
            ([(U, EXACT, alice), (C, SPECIFIED, None)], True, {AP}),
            ([(U, EXACT, alice), (C, DEFAULT, None)], False, set()),
            ([(U, SPECIFIED, None), (C, SPECIFIED, None)], True, {AP}),
            ([(U, EXACT, bob), (C, SPECIFIED, None)], False, set()),
            ([(IP, SPECIFIED, None)], False, set()),
        ]
        got = {(repr(c), s): found(c, s) for c, s, _ in cases}
        want = {(repr(c), s): e for c, s, e in cases}
        assert got == want

        # The values come with the entities; v0 answers the same.
        assert describe(qb, [(U, EXACT, alice)], version=0) == {A: values[A], AP: values[AP]}
        # Nothing matched: error_message "" and entries [] (neither null), in both versions.
        for version in (0, 1):
            assert describe_raw(qb, [(U, EXACT, f"nobody-{sfx}")], version=version) == (0, "", {})
    finally:
        clear_all_quotas(qb)


BAD_FILTERS = {
    "unknown-entity-type": ([("group", EXACT, "g")], UNSUPPORTED_VERSION,
                            "Unsupported entity type group"),
    "unknown-entity-type-specified": ([("group", SPECIFIED, None)], UNSUPPORTED_VERSION,
                                      "Unsupported entity type group"),
    "unknown-match-type": ([(U, 3, None)], INVALID_REQUEST, "Unknown match type 3"),
    "exact-without-a-name": ([(U, EXACT, None)], INVALID_REQUEST,
                             "Request specified MATCH_TYPE_EXACT, but set match string to null."),
    "default-with-a-name": ([(U, DEFAULT, "alice")], INVALID_REQUEST,
                            "Request specified MATCH_TYPE_DEFAULT, but also specified a match "
                            "string."),
    "specified-with-a-name": ([(U, SPECIFIED, "alice")], INVALID_REQUEST,
                              "Request specified MATCH_TYPE_SPECIFIED, but also specified a "
                              "match string."),
    "a-type-twice": ([(U, EXACT, "alice"), (U, EXACT, "bob")], INVALID_REQUEST,
                     "Entity type user cannot appear more than once in the filter."),
    "user-and-ip": ([(U, SPECIFIED, None), (IP, SPECIFIED, None)], INVALID_REQUEST,
                    "Invalid entity filter component combination. IP filter component should "
                    "not be used with user or clientId filter component."),
    "client-and-ip": ([(C, EXACT, "app"), (IP, DEFAULT, None)], INVALID_REQUEST,
                      "Invalid entity filter component combination. IP filter component should "
                      "not be used with user or clientId filter component."),
}


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("case", list(BAD_FILTERS))
def test_describe_rejects_bad_filters(qb, case, version):
    components, code, message = BAD_FILTERS[case]
    # The error is the whole response's; entries is null.
    assert describe_raw(qb, components, strict=False, version=version) == (code, message, None)


# --- enforcement ---------------------------------------------------------------------------

def throttle_stats(seen: list):
    """A librdkafka stats callback collecting each broker's largest throttle time (ms)."""
    import json

    def cb(payload: str):
        for b in json.loads(payload)["brokers"].values():
            seen.append(b.get("throttle", {}).get("max", 0))
    return cb


def test_clients_over_their_byte_rate_are_throttled_and_lose_nothing(qb, sfx):
    """producer_byte_rate / consumer_byte_rate for a client id: a producer and a consumer
    going as fast as they can are told to back off (throttle_time_ms, which librdkafka reports
    in its stats) instead of failing, and every record arrives."""
    from confluent_kafka import Consumer, Producer
    client = f"throttled-{sfx}"
    topic = f"quota-{sfx}"
    entity = [("client-id", client)]
    alter_ok(qb, [(entity, [("producer_byte_rate", 50000), ("consumer_byte_rate", 50000)])])
    wait_quotas(qb, entity, {"producer_byte_rate": 50000.0, "consumer_byte_rate": 50000.0})
    n, value = 300, b"x" * 1000  # 300 KB: six times the rate in a second
    produced_throttle, errors = [], []
    producer = Producer({"bootstrap.servers": qb, "client.id": client, "acks": "all",
                         "linger.ms": 5, "batch.size": 16384,
                         "statistics.interval.ms": 200, "stats_cb": throttle_stats(produced_throttle)})
    for i in range(n):
        producer.produce(topic, value, key=str(i).encode(),
                         on_delivery=lambda err, _m: err and errors.append(err))
        producer.poll(0)
    assert producer.flush(120) == 0
    assert errors == []
    wait_for(lambda: producer.poll(0.2) is not None and max(produced_throttle, default=0) > 0,
             10, "the producer to report a throttle time")

    consumed_throttle, got = [], 0
    consumer = Consumer({"bootstrap.servers": qb, "client.id": client, "group.id": f"g-{sfx}",
                         "auto.offset.reset": "earliest", "fetch.max.bytes": 1048576,
                         "max.partition.fetch.bytes": 16384,
                         "statistics.interval.ms": 200, "stats_cb": throttle_stats(consumed_throttle)})
    try:
        consumer.subscribe([topic])

        def all_consumed():
            nonlocal got
            for msg in consumer.consume(100, 1.0):
                assert msg.error() is None, msg.error()
                got += 1
            return got >= n and max(consumed_throttle, default=0) > 0
        wait_for(all_consumed, 120, f"{n} records and a fetch throttle time")
        assert got == n
    finally:
        consumer.close()


def metadata_throttles(bootstrap: str, client_id: str, n: int) -> list[int]:
    """Up to `n` Metadata requests (v9, every topic) back to back on one connection as
    `client_id`: each response's throttle_time_ms, up to the first that is not zero. (A muted
    connection is read again once its throttle time is over, so the loop just waits.)"""
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse
    host, port = bootstrap.rsplit(":", 1)
    seen = []
    with socket.create_connection((host, int(port)), timeout=20) as s:
        stream = s.makefile("rb")
        for _ in range(n):
            correlation_id = next(_correlation)
            request = MetadataRequest(topics=None)
            request.with_header(correlation_id=correlation_id, client_id=client_id)
            s.sendall(request.encode(version=9, header=True, framed=True))
            size = struct.unpack(">i", stream.read(4))[0]
            response = MetadataResponse.decode(stream.read(size), version=9, header=True)
            assert response.header.correlation_id == correlation_id
            seen.append(response.throttle_time_ms)
            if response.throttle_time_ms > 0:
                break
    return seen


def test_a_client_over_its_request_percentage_is_throttled(qb, sfx):
    """request_percentage for a client id: requests sent back to back are answered with a
    throttle time once they have kept the broker busy for more than the client's share of one
    thread (0.01%: a tenth of a millisecond a second here), and the connection goes on serving
    after it; a client without the quota sending the same is never throttled."""
    client = f"busy-{sfx}"
    entity = [("client-id", client)]
    alter_ok(qb, [(entity, [("request_percentage", 0.01)])])
    wait_quotas(qb, entity, {"request_percentage": 0.01})
    unlimited = metadata_throttles(qb, f"free-{sfx}", 300)
    assert unlimited == [0] * 300
    seen = metadata_throttles(qb, client, 3000)
    assert seen[-1] > 0, f"no throttle in {len(seen)} requests"
    # Bounded by one quota window (1 s here), as Kafka bounds request throttling.
    assert seen[-1] <= 1000, seen[-1]


def burst_answered(bootstrap: str, source_ip: str, n: int) -> int:
    """Opens `n` connections from `source_ip` (a loopback address of its own, so the quota
    under test holds no other traffic) one after the other, then sends ApiVersions on each;
    how many are answered (a throttled connection is closed unanswered)."""
    from kafka.protocol.metadata import ApiVersionsRequest
    host, port = bootstrap.rsplit(":", 1)
    socks = [socket.create_connection((host, int(port)), timeout=10,
                                      source_address=(source_ip, 0)) for _ in range(n)]
    answered = 0
    try:
        for s in socks:
            request = ApiVersionsRequest()
            request.with_header(correlation_id=next(_correlation), client_id="burst")
            try:
                s.sendall(request.encode(version=0, header=True, framed=True))
            except OSError:
                pass  # closed already: unanswered
        for s in socks:
            try:
                answered += len(s.recv(4)) == 4
            except OSError:
                pass  # reset: unanswered
    finally:
        for s in socks:
            s.close()
    return answered


def test_connections_over_an_ips_connection_creation_rate_are_closed_unanswered(qb):
    """connection_creation_rate for an IP (KIP-612): of a burst of connections from it, those
    over the rate are held, then closed without being read; other addresses are not held to
    it, and once it is removed the address connects freely again."""
    ip = "127.0.0.2"
    entity = [(IP, ip)]
    assert burst_answered(qb, ip, 20) == 20
    alter_ok(qb, [(entity, [("connection_creation_rate", 3)])])
    wait_quotas(qb, entity, {"connection_creation_rate": 3.0})
    try:
        answered = burst_answered(qb, ip, 20)
        assert 1 <= answered <= 10, answered
        assert burst_answered(qb, "127.0.0.3", 20) == 20
    finally:
        alter_ok(qb, [(entity, [("connection_creation_rate", None)])])
        wait_quotas(qb, entity, {})
    wait_for(lambda: burst_answered(qb, ip, 20) == 20, 30, "the address to connect freely again")


def create_topics(bootstrap: str, client_id: str, topics, version: int):
    """CreateTopics of [(name, partitions)] (replication factor 1) as `client_id`:
    (throttle_time_ms, {name: (error_code, error_message)})."""
    from kafka.protocol.admin import CreateTopicsRequest, CreateTopicsResponse
    T = CreateTopicsRequest.CreatableTopic
    request = CreateTopicsRequest(
        topics=[T(name=n, num_partitions=p, replication_factor=1, assignments=[], configs=[])
                for n, p in topics],
        timeout_ms=30000, validate_only=False)
    r = roundtrip(bootstrap, request, CreateTopicsResponse, version, client_id)
    return r.throttle_time_ms, {t.name: (t.error_code, t.error_message) for t in r.topics}


def delete_topics(bootstrap: str, client_id: str, names, version: int):
    """DeleteTopics (by name) as `client_id`: (throttle_time_ms, {name: error_code})."""
    from kafka.protocol.admin import DeleteTopicsRequest, DeleteTopicsResponse
    request = DeleteTopicsRequest(topic_names=list(names), timeout_ms=30000)
    r = roundtrip(bootstrap, request, DeleteTopicsResponse, version, client_id)
    return r.throttle_time_ms, {t.name: t.error_code for t in r.responses}


THROTTLING_QUOTA_EXCEEDED = 89


def test_a_client_over_its_controller_mutation_rate_is_refused_on_new_versions(qb, sfx):
    """controller_mutation_rate for a client id (KIP-599): partitions created and deleted
    come out of a bucket of rate × 11 s (controller.quota.window.*). A full bucket takes one
    topic of any size; while the bucket is negative, CreateTopics v6+ and DeleteTopics v5+
    refuse each topic with THROTTLING_QUOTA_EXCEEDED (no message) and older versions go
    through; an answer with a violation carries the time to back off. Other clients are not
    held to it."""
    client = f"mutating-{sfx}"
    entity = [("client-id", client)]
    alter_ok(qb, [(entity, [("controller_mutation_rate", 1)])])
    wait_quotas(qb, entity, {"controller_mutation_rate": 1.0})
    big, small, old, free = (f"{w}-{sfx}" for w in ("big", "small", "old", "free"))
    try:
        # 20 partitions from a bucket of 11: taken (no violation yet), 9 below zero.
        throttle, results = create_topics(qb, client, [(big, 20)], version=7)
        assert results == {big: (0, None)} and throttle == 0
        # The next is refused, with about 9 s to wait.
        throttle, results = create_topics(qb, client, [(small, 1)], version=7)
        assert results == {small: (THROTTLING_QUOTA_EXCEEDED, None)}
        assert 5000 < throttle <= 11000, throttle
        throttle, results = delete_topics(qb, client, [big], version=5)
        assert results == {big: THROTTLING_QUOTA_EXCEEDED} and throttle > 0
        # Before v6, CreateTopics is throttled, not refused.
        throttle, results = create_topics(qb, client, [(old, 1)], version=5)
        assert results[old][0] == 0 and throttle > 0
        throttle, results = create_topics(qb, f"other-{sfx}", [(free, 1)], version=7)
        assert results == {free: (0, None)} and throttle == 0
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": qb})
        listed = lambda: set(admin.list_topics(timeout=30).topics)  # noqa: E731
        wait_for(lambda: {big, old, free} <= listed(), 30, "the created topics to be listed")
        assert small not in listed()
    finally:
        alter_ok(qb, [(entity, [("controller_mutation_rate", None)])])
        wait_quotas(qb, entity, {})

