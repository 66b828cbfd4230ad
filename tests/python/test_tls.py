"""TLS listeners (`listener.security.protocol.map` with SSL), configured with Kafka's own ssl.*
keys, checked against Gregor and against Apache Kafka 4.3.1 configured the same way, so the
tests prove Kafka's behaviour rather than Gregor's own.

Certificates come from the `openssl` CLI in a temp dir: a CA, a broker certificate for
localhost / 127.0.0.1, a client certificate. Each broker has three listeners:

  PLAINTEXT  inter-broker, readiness
  SSL        global ssl.* keys: a PEM key store (chain and key in one file), no client auth
  MTLS       listener.name.mtls.ssl.* keys: a PKCS12 key store, a PEM trust store,
             ssl.client.auth=required

Clients: confluent-kafka (security.protocol=SSL, ssl.ca.location) and Kafka's Java console
tools with a client.properties (security.protocol=SSL, ssl.truststore.type=PEM, ...)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from conftest import SCRIPTS, GregorBroker, KafkaBroker, free_ports, gregor_binary, wait_for

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP")),
    reason="starts its own brokers with TLS listeners")


def openssl(cwd: Path, *args: str):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """ca.pem; server-bundle.pem (certificate and key), server.p12 (password storepass);
    client.pem / client.key / client-bundle.pem signed by the CA."""
    d = tmp_path_factory.mktemp("certs")
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=gregor-test-ca")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who, subject in (("server", "/CN=localhost"), ("client", "/CN=test-client")):
        openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key",
                "-out", f"{who}.csr", "-subj", subject)
        openssl(d, "x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{who}.pem", "-days", "2",
                "-extfile", f"{who}.ext")
        (d / f"{who}-bundle.pem").write_text(
            (d / f"{who}.pem").read_text() + (d / f"{who}.key").read_text())
    openssl(d, "pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key",
            "-certfile", "ca.pem", "-out", "server.p12", "-passout", "pass:storepass")
    return d


def ssl_properties(certs: Path) -> dict[str, str]:
    """The same ssl.* keys for both brokers."""
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs / "server-bundle.pem"),
        "listener.name.mtls.ssl.keystore.type": "PKCS12",
        "listener.name.mtls.ssl.keystore.location": str(certs / "server.p12"),
        "listener.name.mtls.ssl.keystore.password": "storepass",
        "listener.name.mtls.ssl.key.password": "storepass",
        "listener.name.mtls.ssl.truststore.type": "PEM",
        "listener.name.mtls.ssl.truststore.location": str(certs / "ca.pem"),
        "listener.name.mtls.ssl.client.auth": "required",
    }


class LogOnFailure:
    """conftest attaches `log_sections()` of a test's fixtures to its failure report."""

    def log_sections(self):
        return [(f"{self.name} log (tail)", self.log_tail())]


class TlsGregor(LogOnFailure, GregorBroker):
    """`gregor dev` with the PLAINTEXT, SSL and MTLS listeners."""

    def __init__(self, binary, workdir, certs: Path, extra: dict[str, str] | None = None):
        super().__init__(binary, workdir)
        # All four in one call, so none of them is handed out twice.
        self.port, self.metrics_port, self.ssl_port, self.mtls_port = free_ports(4)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.props = {**ssl_properties(certs), **(extra or {})}

    def command(self) -> list[str]:
        listeners = (f"PLAINTEXT://127.0.0.1:{self.port},SSL://127.0.0.1:{self.ssl_port},"
                     f"MTLS://127.0.0.1:{self.mtls_port}")
        overrides = {
            "listeners": listeners,
            "advertised.listeners": listeners,
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
            "inter.broker.listener.name": "PLAINTEXT",
            "metrics.listener": f"127.0.0.1:{self.metrics_port}",
            **self.props,
        }
        cmd = [str(self.binary), "dev", "--data-dir", str(self.data_dir)]
        for k, v in overrides.items():
            cmd += ["--override", f"{k}={v}"]
        return cmd


class TlsKafka(LogOnFailure, KafkaBroker):
    """Apache Kafka with the same listeners and ssl.* keys (scripts/kafka-single-node.sh)."""

    def __init__(self, workdir, certs: Path, extra: dict[str, str] | None = None):
        super().__init__(workdir)
        self.ssl_port, self.mtls_port = free_ports(2)
        self.props = {**ssl_properties(certs), **(extra or {})}

    def start(self):
        env = dict(os.environ)
        env["KAFKA_EXTRA_LISTENERS"] = (f"SSL://127.0.0.1:{self.ssl_port},"
                                        f"MTLS://127.0.0.1:{self.mtls_port}")
        env["KAFKA_EXTRA_PROTOCOL_MAP"] = "SSL:SSL,MTLS:SSL"
        env["KAFKA_SERVER_PROPS"] = "\n".join(f"{k}={v}" for k, v in self.props.items())
        out = subprocess.run([self.script, "start", str(self.dir)], check=True, env=env,
                             stdout=subprocess.PIPE, text=True, timeout=300)
        self.bootstrap = out.stdout.strip().splitlines()[-1]


def start_tls_broker(kind: str, certs: Path, tmp_path_factory, extra=None):
    workdir = tmp_path_factory.mktemp(f"tls-{kind}")
    if kind == "gregor":
        binary = gregor_binary()
        if not binary.exists():
            pytest.fail(f"gregor binary not found at {binary}")
        b = TlsGregor(binary, workdir, certs, extra)
    else:
        b = TlsKafka(workdir, certs, extra)
    b.start()
    return b


@pytest.fixture(scope="module", params=["gregor", "kafka"])
def tls_broker(request, certs, tmp_path_factory):
    """A broker with the TLS listeners: Gregor, then Apache Kafka configured the same way."""
    b = start_tls_broker(request.param, certs, tmp_path_factory)
    yield b
    b.stop()


# The StandardAuthorizer, the PLAINTEXT listener's ANONYMOUS a super user (Kafka's own
# broker-to-controller traffic runs there; so does the test's admin), and the MTLS listener
# naming principals by the certificate's CN, lower-cased.
MTLS_ACL_PROPS = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:ANONYMOUS",
    "listener.name.mtls.ssl.principal.mapping.rules": "RULE:^CN=([^,]*).*$/$1/L,DEFAULT",
}


@pytest.fixture(scope="module", params=["gregor", "kafka"])
def mtls_acl_broker(request, certs, tmp_path_factory):
    """A broker whose MTLS listener takes principals from client certificates, with ACLs."""
    b = start_tls_broker(request.param, certs, tmp_path_factory, MTLS_ACL_PROPS)
    yield b
    b.stop()


def ssl_conf(certs: Path, port: int, client_cert: bool = False) -> dict:
    conf = {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs / "ca.pem"),
    }
    if client_cert:
        conf["ssl.certificate.location"] = str(certs / "client.pem")
        conf["ssl.key.location"] = str(certs / "client.key")
    return conf


def roundtrip(conf: dict, n: int = 5) -> list[bytes]:
    """Produce `n` messages to a new topic with acks=all and consume them back; the values."""
    topic = f"tls-{uuid.uuid4().hex[:10]}"
    producer = Producer({**conf, "acks": "all"})
    errors = []
    for i in range(n):
        producer.produce(topic, f"m{i}".encode(),
                         on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(30) == 0, "every message delivered"
    assert errors == []
    consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    got = []
    try:
        consumer.subscribe([topic])
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg.value())
            if len(got) == n:
                break
    finally:
        consumer.close()
    return got


def assert_refused(conf: dict):
    """A client with `conf` cannot get metadata. (librdkafka's own log of every failed retry
    is silenced: the failure is the expected outcome.)"""
    admin = AdminClient({**conf, "socket.timeout.ms": 3000, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=6)


def test_confluent_produce_consume_over_tls(tls_broker, certs):
    got = roundtrip(ssl_conf(certs, tls_broker.ssl_port))
    assert got == [f"m{i}".encode() for i in range(5)]


def test_mtls_with_a_client_certificate_and_a_pkcs12_keystore(tls_broker, certs):
    got = roundtrip(ssl_conf(certs, tls_broker.mtls_port, client_cert=True))
    assert got == [f"m{i}".encode() for i in range(5)]


def test_mtls_refuses_a_client_without_a_certificate(tls_broker, certs):
    assert_refused(ssl_conf(certs, tls_broker.mtls_port))
    # The listener keeps serving clients that present one.
    assert roundtrip(ssl_conf(certs, tls_broker.mtls_port, client_cert=True), n=1) == [b"m0"]


def test_untrusted_broker_certificate_is_refused_by_the_client(tls_broker, certs, tmp_path):
    openssl(tmp_path, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key",
            "-out", "other.pem", "-days", "2", "-subj", "/CN=other-ca")
    conf = {**ssl_conf(certs, tls_broker.ssl_port), "ssl.ca.location": str(tmp_path / "other.pem")}
    assert_refused(conf)


def test_wrong_protocol_clients_fail_and_the_broker_keeps_serving(tls_broker, certs):
    # Plaintext to the TLS port.
    assert_refused({"bootstrap.servers": f"127.0.0.1:{tls_broker.ssl_port}"})
    # TLS to the plaintext port.
    assert_refused({**ssl_conf(certs, tls_broker.ssl_port),
                    "bootstrap.servers": tls_broker.bootstrap})
    # Raw garbage to the TLS port: closed, nothing allocated from it.
    with socket.create_connection(("127.0.0.1", tls_broker.ssl_port), timeout=10) as s:
        s.sendall(b"\x7f\xff\xff\xff" + os.urandom(64))
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    assert roundtrip(ssl_conf(certs, tls_broker.ssl_port), n=2) == [b"m0", b"m1"]


def client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl module): a ClientHello record."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_truncated_client_hello_is_closed_and_the_listener_keeps_serving(tls_broker, certs):
    hello = client_hello()
    assert hello[0] == 0x16, "a TLS handshake record"
    # Half a ClientHello, then the client stops sending: the broker closes the connection.
    with socket.create_connection(("127.0.0.1", tls_broker.ssl_port), timeout=30) as s:
        s.sendall(hello[: len(hello) // 2])
        s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    # Half a ClientHello on a connection left open: others are served meanwhile, and Gregor
    # drops the stalled one after its 10 s handshake limit (Kafka keeps it until
    # connections.max.idle.ms).
    stalled = socket.create_connection(("127.0.0.1", tls_broker.ssl_port), timeout=30)
    try:
        stalled.sendall(hello[:40])
        assert roundtrip(ssl_conf(certs, tls_broker.ssl_port), n=2) == [b"m0", b"m1"]
        if isinstance(tls_broker, TlsGregor):
            started = time.monotonic()
            try:
                while stalled.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < 20
    finally:
        stalled.close()


def expired_client_certificate(certs: Path, d: Path) -> tuple[Path, Path]:
    """A client certificate the test CA signed for 2020-01-01 only (`openssl ca -startdate
    -enddate`: OpenSSL 3.0's x509 cannot backdate)."""
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca=own\n[own]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n"
        "default_md=sha256\npolicy=any\nunique_subject=no\n[any]\ncommonName=supplied\n")
    openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "expired.key",
            "-out", "expired.csr", "-subj", "/CN=expired-client")
    openssl(d, "ca", "-batch", "-config", "ca.cnf", "-cert", str(certs / "ca.pem"),
            "-keyfile", str(certs / "ca.key"), "-in", "expired.csr", "-out", "expired.pem",
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext",
            "-extfile", str(certs / "client.ext"))
    return d / "expired.pem", d / "expired.key"


def test_an_expired_or_untrusted_client_certificate_is_refused(tls_broker, certs, tmp_path):
    cert, key = expired_client_certificate(certs, tmp_path)
    conf = {**ssl_conf(certs, tls_broker.mtls_port), "ssl.certificate.location": str(cert),
            "ssl.key.location": str(key)}
    assert_refused(conf)
    # A self-signed certificate no trust store knows.
    openssl(tmp_path, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key",
            "-out", "self.pem", "-days", "2", "-subj", "/CN=self-signed")
    assert_refused({**ssl_conf(certs, tls_broker.mtls_port),
                    "ssl.certificate.location": str(tmp_path / "self.pem"),
                    "ssl.key.location": str(tmp_path / "self.key")})
    # A valid one still gets through.
    assert roundtrip(ssl_conf(certs, tls_broker.mtls_port, client_cert=True), n=1) == [b"m0"]


def kafka_cli(*args: str, input: str | None = None) -> str:
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), *args], input=input, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
    if proc.returncode != 0:
        pytest.fail(f"kafka.sh {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.mark.parametrize("listener", ["SSL", "MTLS"])
def test_java_console_tools_over_tls(tls_broker, certs, tmp_path, listener):
    props = [
        "security.protocol=SSL",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={certs / 'ca.pem'}",
    ]
    port = tls_broker.ssl_port
    if listener == "MTLS":
        port = tls_broker.mtls_port
        props += ["ssl.keystore.type=PEM", f"ssl.keystore.location={certs / 'client-bundle.pem'}"]
    client = tmp_path / "client.properties"
    client.write_text("\n".join(props) + "\n")
    bootstrap = f"127.0.0.1:{port}"
    topic = f"tls-java-{listener.lower()}-{uuid.uuid4().hex[:8]}"
    kafka_cli("topics", "--bootstrap-server", bootstrap, "--command-config", str(client),
              "--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1")
    lines = [f"java-{i}" for i in range(5)]
    kafka_cli("console-producer", "--bootstrap-server", bootstrap, "--topic", topic,
              "--command-config", str(client), input="\n".join(lines) + "\n")
    out = kafka_cli("console-consumer", "--bootstrap-server", bootstrap, "--topic", topic,
                    "--command-config", str(client), "--from-beginning",
                    "--max-messages", "5", "--timeout-ms", "60000")
    assert out.split() == lines


def test_a_client_certificate_names_the_principal_acls_check(mtls_acl_broker, certs):
    """ssl.principal.mapping.rules turns the client certificate's DN (CN=test-client) into
    User:test-client; an ACL for that principal lets it write one topic and not another."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, NewTopic,
                                       ResourcePatternType, ResourceType)
    admin = AdminClient({"bootstrap.servers": mtls_acl_broker.bootstrap})
    allowed, denied = (f"mtls-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("ok", "no"))
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in (allowed, denied)]).values():
        f.result(30)
    bindings = [AclBinding(ResourceType.TOPIC, allowed, ResourcePatternType.LITERAL,
                           "User:test-client", "*", op, AclPermissionType.ALLOW)
                for op in (AclOperation.WRITE, AclOperation.DESCRIBE)]
    for f in admin.create_acls(bindings).values():
        f.result(30)
    conf = {**ssl_conf(certs, mtls_acl_broker.mtls_port, client_cert=True), "acks": "all"}

    def produce(topic: str):
        errors = []
        producer = Producer({**conf, "message.timeout.ms": 10000})
        producer.produce(topic, b"v", on_delivery=lambda err, _m: errors.append(err))
        producer.flush(30)
        return errors

    # ACLs reach the broker's authorizer asynchronously: wait until the grant holds.
    wait_for(lambda: produce(allowed) == [None], 60, "the ACL for User:test-client to apply")
    refused = produce(denied)
    assert len(refused) == 1 and refused[0] is not None
    assert refused[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused[0]


# --- rotation (Gregor only: Kafka reloads only on AlterConfigs, or a restart) ---------------

def issue(d: Path, ca: str, who: str, subject: str, ext: str):
    """`who`.pem / .key / -bundle.pem signed by CA `ca` (ca.pem / ca.key naming: `ca`.pem)."""
    (d / f"{who}.ext").write_text(ext)
    openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key",
            "-out", f"{who}.csr", "-subj", subject)
    openssl(d, "x509", "-req", "-in", f"{who}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")
    (d / f"{who}-bundle.pem").write_text((d / f"{who}.pem").read_text() + (d / f"{who}.key").read_text())


def replace_file(path: Path, content: str):
    """Atomically, as a certificate manager (cert-manager, a kubelet secret update) does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


def served_issuer(port: int, cafile: Path) -> str:
    """The CN of the issuer of the certificate a new TLS connection to `port` gets."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            issuer = dict(x[0] for x in s.getpeercert()["issuer"])
            return issuer["commonName"]


@contextlib.contextmanager
def running_producer(conf: dict, topic: str):
    """A producer sending to `topic` (acks=all) on a thread of its own while the block runs,
    entered once it delivers; yields (errors, delivered values, disconnects by broker name from
    librdkafka's statistics), complete once the block has ended."""
    errors, delivered, stats, stop = [], [], {}, threading.Event()

    def keep_stats(payload):
        s = json.loads(payload)
        stats.update({b["name"]: b["disconnects"] for b in s["brokers"].values()
                      if b["nodeid"] >= 0})

    producer = Producer({**conf, "acks": "all", "statistics.interval.ms": 200,
                         "stats_cb": keep_stats})

    def produce():
        i = 0
        while not stop.is_set():
            producer.produce(topic, f"r{i}".encode(),
                             on_delivery=lambda err, m: (errors if err else delivered).append(err or m.value()))
            producer.poll(0.02)
            i += 1
        producer.flush(30)

    t = threading.Thread(target=produce)
    t.start()
    try:
        wait_for(lambda: len(delivered) > 20, 30, "the producer to get going")
        yield errors, delivered, stats
    finally:
        stop.set()
        t.join(60)
        producer.poll(0.5)


def test_certificates_and_trust_rotate_without_a_restart_or_a_client_error(certs, tmp_path):
    """The SSL listener's key store file and the MTLS listener's trust store file are replaced
    while a producer and a consumer run: new handshakes get the new certificate, a client
    certificate from the new CA is accepted once the trust store names it, and the running
    clients see no error and no dropped connection."""
    binary = gregor_binary()
    if not binary.exists():
        pytest.fail(f"gregor binary not found at {binary}")
    d = tmp_path / "rot"
    d.mkdir()
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca2.key",
            "-out", "ca2.pem", "-days", "2", "-subj", "/CN=gregor-rotated-ca")
    issue(d, "ca2", "server2", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    issue(d, "ca2", "client2", "/CN=rotated-client", "extendedKeyUsage=clientAuth\n")
    both = d / "ca-both.pem"
    both.write_text((certs / "ca.pem").read_text() + (d / "ca2.pem").read_text())
    keystore, truststore = d / "keystore.pem", d / "truststore.pem"
    keystore.write_text((certs / "server-bundle.pem").read_text())
    truststore.write_text((certs / "ca.pem").read_text())
    broker = TlsGregor(binary, tmp_path / "gregor", certs, {
        "ssl.keystore.location": str(keystore),
        "listener.name.mtls.ssl.truststore.location": str(truststore),
        "ssl.reload.interval.ms": "200",
    })
    broker.start()
    try:
        assert served_issuer(broker.ssl_port, both) == "gregor-test-ca"
        conf = {**ssl_conf(certs, broker.ssl_port), "ssl.ca.location": str(both)}
        topic = f"rotate-{uuid.uuid4().hex[:8]}"
        with running_producer(conf, topic) as (errors, delivered, stats):
            # The key store: the new certificate serves new handshakes.
            replace_file(keystore, (d / "server2-bundle.pem").read_text())
            wait_for(lambda: served_issuer(broker.ssl_port, both) == "gregor-rotated-ca", 30,
                     "the rotated certificate to be served")
            # The trust store: a client certificate from the new CA is refused, then accepted.
            client2 = {**ssl_conf(certs, broker.mtls_port), "ssl.ca.location": str(both),
                       "ssl.certificate.location": str(d / "client2.pem"),
                       "ssl.key.location": str(d / "client2.key")}
            assert_refused(client2)
            replace_file(truststore, both.read_text())
            wait_for(lambda: roundtrip(client2, n=1) == [b"m0"], 60,
                     "a client certificate of the new CA to be accepted")
            count = len(delivered)
            wait_for(lambda: len(delivered) > count + 20, 30, "the producer to keep going")
        assert errors == []
        assert stats and all(v == 0 for v in stats.values()), f"disconnects: {stats}"
        consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
        got = []
        try:
            consumer.subscribe([topic])
            wait_for(lambda: got.extend(m.value() for m in consumer.consume(500, 1.0)
                                        if m.error() is None) or len(got) >= len(delivered),
                     60, "every delivered record to be consumed")
        finally:
            consumer.close()
        assert sorted(got) == sorted(delivered)
    finally:
        broker.stop()


# --- rotation through AlterConfigs (Kafka's way; both brokers) -------------------------------

@pytest.fixture(scope="module", params=["gregor", "kafka"])
def alterable_tls_broker(request, certs, tmp_path_factory):
    """A broker whose SSL listener serves a key store file of its own (keystore.pem), which the
    tests replace through AlterConfigs; `rotated` holds the material they switch to: one from
    a second CA with the same DN and SANs, one with another DN."""
    d = tmp_path_factory.mktemp("alter-certs")
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca2.key",
            "-out", "ca2.pem", "-days", "2", "-subj", "/CN=gregor-altered-ca")
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    issue(d, "ca2", "same-names", "/CN=localhost", san)
    issue(d, "ca2", "other-dn", "/CN=somebody-else", san)
    (d / "keystore.pem").write_text((certs / "server-bundle.pem").read_text())
    (d / "ca-both.pem").write_text((certs / "ca.pem").read_text() + (d / "ca2.pem").read_text())
    b = start_tls_broker(request.param, certs, tmp_path_factory,
                         {"ssl.keystore.location": str(d / "keystore.pem")})
    b.rotated = d
    b.node_id = next(iter(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(
        timeout=30).brokers))
    yield b
    b.stop()


def alter_broker(bootstrap: str, resource: str, key: str, value: str):
    """IncrementalAlterConfigs SET of `key` on BROKER resource `resource` (confluent-kafka,
    which sends a broker's own resource to that broker, as Kafka's Admin does)."""
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ResourceType.BROKER, resource, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(timeout=60)


def test_alter_configs_of_a_listener_key_store_rotates_it_with_no_client_error(
        alterable_tls_broker, certs):
    """`kafka-configs --alter --entity-type brokers --entity-name <id> --add-config
    listener.name.ssl.ssl.keystore.location=<new>` while a producer runs: new handshakes get the
    new certificate, the producer sees no error, the broker describes the key as its own
    dynamic config, and serves the new certificate again after a restart."""
    b = alterable_tls_broker
    d = b.rotated
    both = d / "ca-both.pem"
    assert served_issuer(b.ssl_port, both) == "gregor-test-ca"
    conf = {**ssl_conf(certs, b.ssl_port), "ssl.ca.location": str(both)}
    topic = f"alter-tls-{uuid.uuid4().hex[:8]}"
    with running_producer(conf, topic) as (errors, delivered, stats):
        new = d / "same-names-bundle.pem"
        kafka_cli("configs", "--bootstrap-server", b.bootstrap, "--entity-type", "brokers",
                  "--entity-name", str(b.node_id), "--alter", "--add-config",
                  f"listener.name.ssl.ssl.keystore.location={new}")
        wait_for(lambda: served_issuer(b.ssl_port, both) == "gregor-altered-ca", 30,
                 "the altered key store to be served")
        count = len(delivered)
        wait_for(lambda: len(delivered) > count + 20, 30, "the producer to keep going")
    assert errors == []
    assert stats and all(v == 0 for v in stats.values()), f"disconnects: {stats}"
    out = kafka_cli("configs", "--bootstrap-server", b.bootstrap, "--entity-type", "brokers",
                    "--entity-name", str(b.node_id), "--describe")
    line = next(l for l in out.splitlines()
                if l.strip().startswith("listener.name.ssl.ssl.keystore.location="))
    assert f"listener.name.ssl.ssl.keystore.location={new}" in line
    assert "DYNAMIC_BROKER_CONFIG" in line
    # Kept in the metadata log: a restarted broker serves the altered key store at once.
    b.stop()
    b.start()
    assert served_issuer(b.ssl_port, both) == "gregor-altered-ca"


@pytest.mark.parametrize("resource,key,value,expected", [
    ("self", "ssl.keystore.location", "same-names-bundle.pem",
     "can be dynamically updated only per-listener using the listener prefix"),
    ("", "listener.name.ssl.ssl.keystore.location", "same-names-bundle.pem",
     "Cannot update these configs at default cluster level, broker id must be specified"),
    ("self", "listener.name.ssl.ssl.keystore.location", "other-dn-bundle.pem",
     "Keystore DistinguishedName does not match"),
    ("self", "listener.name.ssl.ssl.keystore.location", "no-such-file.pem",
     "Validation of dynamic config update of SSLFactory failed"),
], ids=["no-listener-prefix", "cluster-default", "another-dn", "missing-file"])
def test_alter_configs_refuses_listener_tls_updates_kafka_refuses(
        alterable_tls_broker, resource, key, value, expected):
    """Each update Kafka's broker refuses gets INVALID_REQUEST with Kafka's words, and the
    listener keeps serving what it served."""
    b = alterable_tls_broker
    d = b.rotated
    before = served_issuer(b.ssl_port, d / "ca-both.pem")
    if resource == "self":
        with pytest.raises(KafkaException) as refused:
            alter_broker(b.bootstrap, str(b.node_id), key, str(d / value))
        err = refused.value.args[0]
        assert err.code() == KafkaError.INVALID_REQUEST, err
        assert expected in err.str(), err.str()
    else:
        # The cluster default (librdkafka cannot name it): Kafka's own tool.
        proc = subprocess.run(
            [str(SCRIPTS / "kafka.sh"), "configs", "--bootstrap-server", b.bootstrap,
             "--entity-type", "brokers", "--entity-default", "--alter", "--add-config",
             f"{key}={d / value}"],
            text=True, capture_output=True, timeout=180)
        assert proc.returncode != 0
        assert "InvalidRequestException" in proc.stderr and expected in proc.stderr, \
            proc.stderr[-2000:]
    assert served_issuer(b.ssl_port, d / "ca-both.pem") == before
