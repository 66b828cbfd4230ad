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

from conftest import gregor_binary, wait_for
from test_sasl import (SASL_AUTHENTICATION_FAILED, SaslGregor, SaslKafka, auth_error, b64url,
                       oauth_exchange, roundtrip, sasl_properties)
from test_tls import certs  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP")),
    reason="starts its own brokers with SASL listeners")

ISSUER = "https://issuer.test"
HANDLER = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"


class Signer:
    """An RSA key (`openssl genrsa`) that signs RS256 JWTs, with its JWKS (kid `kid`)."""

    def __init__(self, d: Path, name: str, kid: str = "k1"):
        self.kid = kid
        self.key = d / f"{name}.key"
        subprocess.run(["openssl", "genrsa", "-out", str(self.key), "2048"], check=True,
                       capture_output=True, timeout=60)
        modulus = subprocess.run(["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"],
                                 check=True, capture_output=True, text=True, timeout=60)
        n = bytes.fromhex(modulus.stdout.strip().split("=", 1)[1])
        self.jwks = {"keys": [{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                               "n": b64url(n), "e": "AQAB"}]}

    def token(self, **claims) -> str:
        now = time.time()
        body = {"sub": "alice", "iss": ISSUER, "aud": "kafka", "iat": int(now),
                "exp": int(now) + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
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
    b = start_jwks_broker(request.param, certs, props, url, tmp_path_factory)
    yield b
    b.stop()


def start_jwks_broker(kind: str, certs: Path, props: dict, url: str, tmp_path_factory):  # noqa: F811
    """Gregor or Kafka with `props`; Kafka with `url` in its allowed OAuth URLs."""
    workdir = tmp_path_factory.mktemp(f"jwks-{kind}")
    if kind == "gregor":
        if not gregor_binary().exists():
            pytest.fail(f"gregor binary not found at {gregor_binary()}")
        b = SaslGregor(gregor_binary(), workdir, certs, props)
        b.start()
        return b
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
    return b


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


# --- a JWKS over https, refreshed for a new key id ------------------------------------------

class JwksServer:
    """An https server on a loopback port answering GET /jwks.json with `doc`, which a test
    may replace; its certificate is the test CA's localhost one."""

    def __init__(self, certs: Path, doc: dict):
        import http.server
        import ssl
        import threading
        self.doc = doc
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                body = json.dumps(server.doc).encode()
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://localhost:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module", params=["gregor", "kafka"])
def https_jwks_broker(request, certs, tmp_path_factory):  # noqa: F811
    """A broker validating tokens against a JWKS fetched over https (trusted through the
    ssl.truststore.* options of the OAUTHBEARER JAAS config, as Kafka reads them), with the
    server and two signers: `k1`, published from the start, and `k2`, published later."""
    d = tmp_path_factory.mktemp("https-jwks")
    first, second = Signer(d, "first", "k1"), Signer(d, "second", "k2")
    server = JwksServer(certs, first.jwks)
    # (Kafka's broker logs in too, with an unsecured token naming a subject.)
    jaas = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            'unsecuredLoginStringClaim_sub="admin" ssl.truststore.type="PEM" '
            f'ssl.truststore.location="{certs / "ca.pem"}";')
    props = sasl_properties(certs, {
        "listener.name.sasl.oauthbearer.sasl.server.callback.handler.class": HANDLER,
        "listener.name.sasl.oauthbearer.sasl.jaas.config": jaas,
        "sasl.oauthbearer.jwks.endpoint.url": server.url,
        "sasl.oauthbearer.expected.audience": "kafka",
        "sasl.oauthbearer.expected.issuer": ISSUER,
    })
    try:
        b = start_jwks_broker(request.param, certs, props, server.url, tmp_path_factory)
        try:
            yield b, server, first, second
        finally:
            b.stop()
    finally:
        server.close()


def accepted(broker, token: str) -> bool:
    """Whether the broker takes `token` (its first SaslAuthenticate answer has no error and no
    challenge)."""
    raw, (error, _message, challenge, _lifetime) = oauth_exchange(broker, token)
    raw.close()
    return error == 0 and not challenge


def test_a_jwks_over_https_is_fetched_again_for_a_new_key_id(https_jwks_broker):
    """The JWKS comes from an https endpoint when the broker starts; once the identity provider
    publishes a second key and signs with it, the new key id makes the broker fetch the set
    again (a first token may be refused meanwhile), and tokens of both keys are taken."""
    b, server, first, second = https_jwks_broker
    assert roundtrip(oauth_cb_conf(b, first.token()), 1) == [b"m0"]
    server.doc = {"keys": first.jwks["keys"] + second.jwks["keys"]}
    wait_for(lambda: accepted(b, second.token()), 60, "a token of the new key to be taken",
             interval=1.0)
    assert accepted(b, first.token())
    assert roundtrip(oauth_cb_conf(b, second.token()), 1) == [b"m0"]


@pytest.mark.parametrize("kind", ["gregor", "kafka"])
def test_an_https_jwks_endpoint_the_broker_cannot_trust_fails_its_start(
        kind, certs, tmp_path_factory):  # noqa: F811
    """No trust store in the JAAS options, and the endpoint's certificate comes from the test
    CA, which the system bundle does not hold: the first fetch fails and the broker does not
    start (as Kafka), saying why."""
    signer = Signer(tmp_path_factory.mktemp("untrusted-jwks"), "key")
    server = JwksServer(certs, signer.jwks)
    try:
        props = sasl_properties(certs, {
            "listener.name.sasl.oauthbearer.sasl.server.callback.handler.class": HANDLER,
            "listener.name.sasl.oauthbearer.sasl.jaas.config":
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                'unsecuredLoginStringClaim_sub="admin";',
            "sasl.oauthbearer.jwks.endpoint.url": server.url,
        })
        with pytest.raises((RuntimeError, subprocess.CalledProcessError)) as failed:
            b = start_jwks_broker(kind, certs, props, server.url, tmp_path_factory)
            b.stop()
        if kind == "gregor":
            why = str(failed.value)
            # Refused by the system bundle, or none to be found on this host.
            assert server.url in why and ("TLS" in why or "no trust store" in why), why[-2000:]
    finally:
        server.close()
