"""Gregor's own CLI tools (`gregor topics|console-producer|console-consumer|consumer-groups`)
with Kafka's `--command-config client.properties` against secured listeners: SASL_SSL with
SCRAM-SHA-512, SASL_PLAINTEXT with PLAIN, and mutual TLS. Each test runs against Gregor and
against Apache Kafka 4.3.1 configured the same way (the brokers and certificates of
test_sasl.py and test_tls.py), so the Kafka variant proves the tools speak standard Kafka
security rather than Gregor's own."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import gregor_binary
from test_gregor_tools import gregor
from test_sasl import PLAIN_FAILED, command_config, sasl_broker, scram_failed  # noqa: F401
from test_tls import certs, tls_broker  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(
    not gregor_binary().exists(), reason="needs the gregor binary (GREGOR_BIN)")


def tools_round_trip(bootstrap: str, props: Path):
    """topics --create/--list/--describe, a console producer/consumer round trip in a group,
    and consumer-groups --list, every call with `--command-config props`."""
    topic = f"cc-{uuid.uuid4().hex[:10]}"
    common = ("--bootstrap-server", bootstrap, "--command-config", str(props))
    out = gregor("topics", *common, "--create", "--topic", topic, "--partitions", "2",
                 "--replication-factor", "1").stdout
    assert f"Created topic {topic}." in out, out
    assert topic in gregor("topics", *common, "--list").stdout.split()
    desc = gregor("topics", *common, "--describe", "--topic", topic).stdout
    assert "PartitionCount: 2" in desc, desc
    lines = [f"v{i}" for i in range(10)]
    gregor("console-producer", *common, "--topic", topic, input="\n".join(lines) + "\n")
    group = f"{topic}-g"
    out = gregor("console-consumer", *common, "--topic", topic, "--from-beginning",
                 "--group", group, "--max-messages", "10", "--timeout-ms", "60000",
                 timeout=90).stdout
    assert sorted(line for line in out.splitlines() if line) == sorted(lines)
    assert group in gregor("consumer-groups", *common, "--list").stdout.split()


def test_tools_over_sasl_ssl_with_scram_sha_512(sasl_broker, tmp_path):
    b = sasl_broker
    props = command_config(tmp_path / "admin.properties", "SASL_SSL", "SCRAM-SHA-512",
                           "admin", "admin-secret", ca=b.ca)
    tools_round_trip(f"127.0.0.1:{b.saslssl_port}", props)


def test_tools_over_sasl_plaintext_with_plain(sasl_broker, tmp_path):
    b = sasl_broker
    props = command_config(tmp_path / "admin.properties", "SASL_PLAINTEXT", "PLAIN",
                           "admin", "admin-secret")
    tools_round_trip(f"127.0.0.1:{b.sasl_port}", props)


def test_tools_over_sasl_plaintext_with_an_unsecured_oauthbearer_token(sasl_broker, tmp_path):
    props = tmp_path / "oauth.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n"
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
        'required unsecuredLoginStringClaim_sub="alice" unsecuredLoginListClaim_scope="|kafka";\n')
    tools_round_trip(f"127.0.0.1:{sasl_broker.sasl_port}", props)


def test_an_oauthbearer_token_without_the_scope_fails_with_the_brokers_json(sasl_broker,
                                                                          tmp_path):
    props = tmp_path / "oauth.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n"
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
        'required unsecuredLoginStringClaim_sub="alice";\n')
    out = gregor("topics", "--bootstrap-server", f"127.0.0.1:{sasl_broker.sasl_port}",
                 "--command-config", str(props), "--list", ok=False)
    assert out.returncode != 0
    assert '{"status":"insufficient_scope", "scope":"[kafka]"}' in out.stderr, out.stderr


def test_tools_over_mutual_tls(tls_broker, certs, tmp_path):
    props = tmp_path / "client.properties"
    props.write_text("\n".join([
        "security.protocol=SSL",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={certs / 'ca.pem'}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={certs / 'client-bundle.pem'}",
    ]) + "\n")
    tools_round_trip(f"127.0.0.1:{tls_broker.mtls_port}", props)


def test_mutual_tls_without_a_client_certificate_is_refused(tls_broker, certs, tmp_path):
    props = tmp_path / "client.properties"
    props.write_text(f"security.protocol=SSL\nssl.truststore.location={certs / 'ca.pem'}\n")
    proc = gregor("topics", "--bootstrap-server", f"127.0.0.1:{tls_broker.mtls_port}",
                  "--command-config", str(props), "--list", ok=False, timeout=60)
    assert proc.returncode != 0, proc.stdout


@pytest.mark.parametrize("listener,mechanism", [("SASL_PLAINTEXT", "PLAIN"),
                                                ("SASL_SSL", "SCRAM-SHA-512")])
def test_a_wrong_password_fails_with_the_brokers_message(sasl_broker, tmp_path, listener,
                                                         mechanism):
    b = sasl_broker
    tls = listener == "SASL_SSL"
    props = command_config(tmp_path / "wrong.properties", listener, mechanism, "admin",
                           "not-the-password", ca=b.ca if tls else None)
    port = b.saslssl_port if tls else b.sasl_port
    for tool in (("topics", "--list"), ("consumer-groups", "--list")):
        proc = gregor(tool[0], "--bootstrap-server", f"127.0.0.1:{port}",
                      "--command-config", str(props), *tool[1:], ok=False, timeout=60)
        assert proc.returncode != 0, proc.stdout
        expected = PLAIN_FAILED if mechanism == "PLAIN" else scram_failed(mechanism)
        assert expected in proc.stderr, proc.stderr
        assert "not-the-password" not in proc.stderr


def test_a_bad_command_config_names_the_key(sasl_broker, tmp_path):
    props = tmp_path / "gssapi.properties"
    props.write_text("security.protocol=SASL_PLAINTEXT\n")
    proc = gregor("topics", "--bootstrap-server", f"127.0.0.1:{sasl_broker.sasl_port}",
                  "--command-config", str(props), "--list", ok=False, timeout=60)
    assert proc.returncode != 0
    assert "sasl.mechanism" in proc.stderr and "GSSAPI" in proc.stderr, proc.stderr
