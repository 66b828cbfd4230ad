"""Kafka's config providers in server.properties: the operator advertises a NodePort listener at
`${env:HOST_IP}`, which the broker resolves through the EnvVarConfigProvider when it starts."""

import os
import subprocess

from kafka import KafkaAdminClient

from conftest import GregorBroker, gregor_binary

ENV_PROVIDER = "org.apache.kafka.common.config.provider.EnvVarConfigProvider"


class ProvidedBroker(GregorBroker):
    """A dev broker whose advertised host comes from the environment variable ADVERTISED."""

    def command(self) -> list[str]:
        return [
            str(self.binary), "dev",
            "--data-dir", str(self.data_dir),
            "--override", "config.providers=env",
            "--override", f"config.providers.env.class={ENV_PROVIDER}",
            "--override", f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "--override", f"advertised.listeners=PLAINTEXT://${{env:ADVERTISED}}:{self.port}",
            "--override", f"metrics.listener=127.0.0.1:{self.metrics_port}",
        ]


def test_the_advertised_address_comes_from_the_environment(tmp_path, monkeypatch):
    # "127.0.0.1" in the listener, "localhost" advertised: what clients see is what the
    # variable said.
    monkeypatch.setenv("ADVERTISED", "localhost")
    broker = ProvidedBroker(gregor_binary(), tmp_path)
    broker.start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            brokers = admin.describe_cluster()["brokers"]
        finally:
            admin.close()
        assert [(b["host"], b["port"]) for b in brokers] == [("localhost", broker.port)]
    finally:
        broker.stop()


def test_an_unset_variable_fails_start_up_naming_the_key_and_the_variable(tmp_path):
    broker = ProvidedBroker(gregor_binary(), tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "ADVERTISED"}
    broker.data_dir.mkdir(parents=True)
    out = subprocess.run(broker.command(), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "advertised.listeners" in out.stderr and "ADVERTISED is not set" in out.stderr, (
        out.stderr
    )
