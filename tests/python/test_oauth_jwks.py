"""OAUTHBEARER with signed tokens: Kafka's OAuthBearerValidatorCallbackHandler on the SASL
listener, validating RS256 JWTs against a JWKS file (`sasl.oauthbearer.jwks.endpoint.url=
file://...`) with an expected audience and issuer. Run against Gregor and Apache Kafka 4.3.1
configured alike (Kafka also needs the URL in the JVM property
`org.apache.kafka.sasl.oauthbearer.allowed.urls`).

Tokens are made here: an RSA key from `openssl genrsa`, the JWKS from its modulus, and the
RS256 signature from `openssl dgst -sha256 -sign`. Clients: confluent-kafka with an
`oauth_cb` handing out the token, and raw SaslAuthenticate frames."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import gregor_binary
from test_sasl import (SASL_AUTHENTICATION_FAILED, SaslGregor, SaslKafka, auth_error, b64url,
                       oauth_exchange, roundtrip, sasl_properties)
from test_tls import certs  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP")),
    reason="starts its own brokers with SASL listeners")

ISSUER = "https://issuer.test"
HANDLER = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"


class Signer:
    """An RSA key (`openssl genrsa`) that signs RS256 JWTs, with its JWKS (kid `k1`)."""

    def __init__(self, d: Path, name: str):
        self.key = d / f"{name}.key"
        subprocess.run(["openssl", "genrsa", "-out", str(self.key), "2048"], check=True,
                       capture_output=True, timeout=60)
        modulus = subprocess.run(["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"],
                                 check=True, capture_output=True, text=True, timeout=60)
        n = bytes.fromhex(modulus.stdout.strip().split("=", 1)[1])
        self.jwks = {"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
                               "n": b64url(n), "e": "AQAB"}]}

    def token(self, **claims) -> str:
        now = time.time()
        body = {"sub": "alice", "iss": ISSUER, "aud": "kafka", "iat": int(now),
                "exp": int(now) + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        header = {"alg": "RS256", "typ": "JWT", "kid": "k1"}
        signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signed.encode(), check=True, capture_output=True, timeout=60)
        return f"{signed}.{b64url(sig.stdout)}"


@pytest.fixture(scope="module")
def signers(tmp_path_factory) -> tuple[Signer, Signer, Path]:
    """The trusted signer, an untrusted one, and the JWKS file of the trusted one."""
    d = tmp_path_factory.mktemp("jwks")
    trusted, other = Signer(d, "trusted"), Signer(d, "other")
    jwks = d / "jwks.json"
    jwks.write_text(json.dumps(trusted.jwks))
    return trusted, other, jwks


@pytest.fixture(scope="module", params=["gregor", "kafka"])
def jwks_broker(request, certs, signers, tmp_path_factory):  # noqa: F811
    _, _, jwks = signers
    url = f"file://{jwks}"
    props = sasl_properties(certs, {
        "listener.name.sasl.oauthbearer.sasl.server.callback.handler.class": HANDLER,
        "sasl.oauthbearer.jwks.endpoint.url": url,
        "sasl.oauthbearer.expected.audience": "kafka",
        "sasl.oauthbearer.expected.issuer": ISSUER,
    })
    workdir = tmp_path_factory.mktemp(f"jwks-{request.param}")
    if request.param == "gregor":
        if not gregor_binary().exists():
            pytest.fail(f"gregor binary not found at {gregor_binary()}")
        b = SaslGregor(gregor_binary(), workdir, certs, props)
        b.start()
    else:
        b = SaslKafka(workdir, certs, props)
        saved = os.environ.get("KAFKA_JVM_OPTS")
        os.environ["KAFKA_JVM_OPTS"] = f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={url}"
        try:
            b.start()
        finally:
            if saved is None:
                del os.environ["KAFKA_JVM_OPTS"]
            else:
                os.environ["KAFKA_JVM_OPTS"] = saved
    yield b
    b.stop()


def oauth_cb_conf(broker, token: str) -> dict:
    return {"bootstrap.servers": f"127.0.0.1:{broker.sasl_port}",
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": lambda _config: (token, time.time() + 600)}


def test_a_token_signed_by_a_jwks_key_produces_and_consumes(jwks_broker, signers):
    trusted, _, _ = signers
    assert roundtrip(oauth_cb_conf(jwks_broker, trusted.token()), 2) == [b"m0", b"m1"]


@pytest.mark.parametrize("case", ["untrusted-key", "wrong-audience", "wrong-issuer",
                                  "no-audience-claim", "expired", "no-iat"])
def test_tokens_the_validator_refuses_read_invalid_token(jwks_broker, signers, case):
    trusted, other, _ = signers
    token = {
        "untrusted-key": lambda: other.token(),
        "wrong-audience": lambda: trusted.token(aud="elsewhere"),
        "wrong-issuer": lambda: trusted.token(iss="https://evil.test"),
        # An expected audience is required of the token (jose4j's rule, which Kafka keeps).
        "no-audience-claim": lambda: trusted.token(aud=None),
        "expired": lambda: trusted.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "no-iat": lambda: trusted.token(iat=None),
    }[case]()
    raw, (error, _message, challenge, _lifetime) = oauth_exchange(jwks_broker, token)
    try:
        assert (error, challenge.decode()) == (0, '{"status":"invalid_token"}')
        error, message, _auth, _lifetime = raw.authenticate(b"\x01")
        assert (error, message) == (SASL_AUTHENTICATION_FAILED, '{"status":"invalid_token"}')
        assert raw.closed()
    finally:
        raw.close()


def test_an_unsecured_token_is_refused_by_the_jwks_validator(jwks_broker):
    unsecured = (f"{b64url(json.dumps({'alg': 'none'}).encode())}."
                 f"{b64url(json.dumps({'sub': 'alice', 'exp': time.time() + 600}).encode())}.")
    assert "invalid_token" in auth_error(oauth_cb_conf(jwks_broker, unsecured))
