//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them: the stored
//! credential (salt, StoredKey, ServerKey, iterations; never the password), and the server's
//! side of the exchange, one client message at a time. Kafka's dialect: no channel binding
//! (gs2 header `n,,` or `n,a=<user>,`), the `tokenauth` extension for delegation tokens (which
//! Gregor refuses: it has no delegation tokens), iterations between 4096 and 16384.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub(super) use gregor_client::scram::same_bytes;
pub use gregor_client::scram::{decode_saslname, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

use super::AuthFailure;

/// A stored SCRAM credential (Kafka's ScramCredential / UserScramCredentialRecord): what the
/// server needs to verify a client and prove itself, from which the password cannot be had.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// The salt, as given to PBKDF2.
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    /// H(HMAC(SaltedPassword, "Client Key")).
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: i32,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential of a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: i32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// The credential of `password` with a fresh random salt.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        iterations: i32,
    ) -> ScramCredential {
        let salt = random_bytes(32);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted(mechanism, salt, &salted, iterations)
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

/// Base64 (standard, padded) for the credential's byte fields in metadata records.
mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Where the server's side of one SCRAM exchange is.
#[derive(Debug)]
pub enum ScramServer {
    /// Waiting for the client-first message.
    Start(ScramMechanism),
    /// Sent the server-first message; waiting for the client-final one.
    Challenged(Box<Challenged>),
    /// Finished (successfully or not): no further message is expected.
    Done,
}

/// The state between the server-first and the client-final message.
#[derive(Debug)]
pub struct Challenged {
    mechanism: ScramMechanism,
    user: String,
    credential: ScramCredential,
    nonce: String,
    /// client-first-message-bare "," server-first-message: the start of the AuthMessage.
    auth_prefix: String,
}

/// What one SCRAM step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send this challenge and wait for the next message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send the server-final message.
    Authenticated {
        /// The user (from the client-first message).
        user: String,
        /// The server-final message.
        reply: Vec<u8>,
    },
}

/// The message every SCRAM failure gives the client, whether the user exists or not.
const INVALID_CREDENTIALS: &str = "Authentication failed during authentication due to invalid \
                                   credentials with SASL mechanism";

impl ScramServer {
    /// A new exchange for `mechanism`.
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer::Start(mechanism)
    }

    /// Takes the client's next message; `lookup` finds a user's stored credential.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: &dyn Fn(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, AuthFailure> {
        match std::mem::replace(self, ScramServer::Done) {
            ScramServer::Start(mechanism) => {
                let (challenge, next) = client_first(mechanism, message, lookup)?;
                *self = ScramServer::Challenged(Box::new(next));
                Ok(ScramStep::Continue(challenge))
            }
            ScramServer::Challenged(state) => client_final(*state, message),
            ScramServer::Done => Err(AuthFailure::protocol(
                "SCRAM exchange already finished".into(),
            )),
        }
    }
}

fn invalid(mechanism: ScramMechanism) -> AuthFailure {
    AuthFailure::credentials(format!("{INVALID_CREDENTIALS} {}", mechanism.name()))
}

/// Parses the client-first message and answers the server-first one.
fn client_first(
    mechanism: ScramMechanism,
    message: &[u8],
    lookup: &dyn Fn(&str) -> Option<ScramCredential>,
) -> Result<(Vec<u8>, Challenged), AuthFailure> {
    let bad =
        |what: &str| AuthFailure::protocol(format!("Invalid SCRAM client first message: {what}"));
    let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
    // gs2-header: "n," [ "a=" authzid ] ","; Kafka supports no channel binding.
    let rest = text
        .strip_prefix("n,")
        .ok_or_else(|| bad("expected gs2 header n,"))?;
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| bad("truncated gs2 header"))?;
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .and_then(decode_saslname)
        .ok_or_else(|| bad("missing or invalid user name"))?;
    let client_nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("missing nonce"))?;
    for extension in fields {
        if extension.starts_with("tokenauth=") {
            // Delegation tokens: Gregor has none, so a token login is an invalid credential.
            return Err(invalid(mechanism));
        }
    }
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if decode_saslname(authzid).as_deref() != Some(user.as_str()) {
            return Err(AuthFailure::credentials(
                "Authentication failed: Client requested an authorization id that is different \
                 from username"
                    .into(),
            ));
        }
    } else if !authzid.is_empty() {
        return Err(bad("invalid authorization id"));
    }
    let credential = lookup(&user).ok_or_else(|| invalid(mechanism))?;
    let nonce = format!("{client_nonce}{}", server_nonce());
    let server_first = format!(
        "r={nonce},s={},i={}",
        B64.encode(&credential.salt),
        credential.iterations
    );
    let auth_prefix = format!("{bare},{server_first}");
    Ok((
        server_first.into_bytes(),
        Challenged {
            mechanism,
            user,
            credential,
            nonce,
            auth_prefix,
        },
    ))
}

/// A random server nonce of printable characters (no comma).
fn server_nonce() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    URL_SAFE_NO_PAD.encode(random_bytes(24))
}

/// Verifies the client-final message's proof and answers the server-final one.
fn client_final(state: Challenged, message: &[u8]) -> Result<ScramStep, AuthFailure> {
    let mechanism = state.mechanism;
    let bad =
        |what: &str| AuthFailure::protocol(format!("Invalid SCRAM client final message: {what}"));
    let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or_else(|| bad("missing proof"))?;
    let mut fields = without_proof.split(',');
    // Kafka reads the channel binding but does not compare it with the gs2 header; the proof
    // covers it either way (it is part of the AuthMessage).
    let binding = fields
        .next()
        .and_then(|f| f.strip_prefix("c="))
        .ok_or_else(|| bad("missing channel binding"))?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or_else(|| bad("missing nonce"))?;
    if B64.decode(binding).is_err() {
        return Err(bad("channel binding is not base64"));
    }
    if nonce != state.nonce {
        return Err(AuthFailure::protocol(
            "Invalid client nonce in the final client message.".into(),
        ));
    }
    let proof = B64.decode(proof).map_err(|_| bad("proof is not base64"))?;
    let auth_message = format!("{},{without_proof}", state.auth_prefix);
    let signature = mechanism.hmac(&state.credential.stored_key, auth_message.as_bytes());
    if proof.len() != signature.len() {
        return Err(invalid(mechanism));
    }
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    if !same_bytes(&mechanism.hash(&client_key), &state.credential.stored_key) {
        return Err(invalid(mechanism));
    }
    let server_signature = mechanism.hmac(&state.credential.server_key, auth_message.as_bytes());
    Ok(ScramStep::Authenticated {
        user: state.user,
        reply: format!("v={}", B64.encode(server_signature)).into_bytes(),
    })
}

/// The client side of SCRAM, for tests: gregor-client's [`ScramClient`], which the tools use.
///
/// [`ScramClient`]: gregor_client::scram::ScramClient
#[cfg(test)]
pub(crate) mod test_client {
    use super::*;
    use gregor_client::scram::ScramClient;

    /// The client-final message for `client_first_bare` (`n=<user>,r=<nonce>`) answering
    /// `server_first`.
    pub(crate) fn client_final_message(
        mechanism: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let (user, nonce) = client_first_bare
            .split_once(",r=")
            .expect("n=<user>,r=<nonce>");
        let user = decode_saslname(user.strip_prefix("n=").expect("n=")).expect("saslname");
        let mut client = ScramClient::with_nonce(mechanism, &user, password, nonce);
        let last = client
            .final_message(server_first.as_bytes())
            .expect("a valid challenge");
        String::from_utf8(last).expect("utf8")
    }
}

#[cfg(test)]
mod tests {
    use super::test_client::client_final_message;
    use super::*;

    #[test]
    fn rfc7677_sha256_test_vector_verifies() {
        // RFC 7677 section 3: user "user", password "pencil".
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let cred = ScramCredential::from_salted(m, salt, &salted, 4096);
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let final_msg = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{bare},{server_first},{final_msg}");
        let sig = m.hmac(&cred.stored_key, auth.as_bytes());
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("proof");
        let client_key: Vec<u8> = proof.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(m.hash(&client_key), cred.stored_key);
        let server_sig = m.hmac(&cred.server_key, auth.as_bytes());
        assert_eq!(
            B64.encode(server_sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    fn exchange(
        m: ScramMechanism,
        stored: &ScramCredential,
        first: &str,
        password: &str,
    ) -> Result<ScramStep, AuthFailure> {
        let stored = stored.clone();
        let lookup = move |u: &str| (u == "alice").then(|| stored.clone());
        let mut server = ScramServer::new(m);
        let ScramStep::Continue(challenge) = server.step(first.as_bytes(), &lookup)? else {
            panic!("expected a challenge")
        };
        let challenge = String::from_utf8(challenge).expect("utf8");
        // client-first-message-bare: after the gs2 header's two commas.
        let bare = first.splitn(3, ',').nth(2).expect("bare");
        let last = client_final_message(m, password, bare, &challenge);
        server.step(last.as_bytes(), &lookup)
    }

    #[test]
    fn both_mechanisms_authenticate_the_right_password_only() {
        for m in ScramMechanism::ALL {
            let cred = ScramCredential::from_password(m, "alice-secret", 4096);
            let ok = exchange(m, &cred, "n,,n=alice,r=abc", "alice-secret").expect("auth");
            assert!(
                matches!(&ok, ScramStep::Authenticated { user, reply }
                    if user == "alice" && reply.starts_with(b"v=")),
                "{ok:?}"
            );
            let wrong = exchange(m, &cred, "n,,n=alice,r=abc", "nope").expect_err("wrong");
            assert!(wrong.message.contains(m.name()), "{}", wrong.message);
            assert!(!wrong.protocol_error);
        }
    }

    #[test]
    fn an_unknown_user_fails_with_the_wrong_password_message() {
        let m = ScramMechanism::Sha512;
        let cred = ScramCredential::from_password(m, "pw", 4096);
        let wrong = exchange(m, &cred, "n,,n=alice,r=abc", "nope").expect_err("wrong");
        let mut server = ScramServer::new(m);
        let unknown = server
            .step(b"n,,n=mallory,r=abc", &|_| None)
            .expect_err("unknown");
        assert_eq!(wrong.message, unknown.message);
    }

    #[test]
    fn a_matching_authzid_is_accepted_and_another_refused() {
        let m = ScramMechanism::Sha256;
        let cred = ScramCredential::from_password(m, "pw", 4096);
        exchange(m, &cred, "n,a=alice,n=alice,r=x", "pw").expect("same authzid");
        let lookup = |_: &str| Some(cred.clone());
        let err = ScramServer::new(m)
            .step(b"n,a=bob,n=alice,r=x", &lookup)
            .expect_err("other authzid");
        assert!(err.message.contains("authorization id"), "{}", err.message);
    }

    #[test]
    fn malformed_messages_are_protocol_errors() {
        let lookup = |_: &str| None;
        for msg in [
            &b"y,,n=a,r=x"[..],
            b"n,,r=x",
            b"n,,n=a",
            b"n,,n=a=ZZ,r=x",
            b"\xff\xfe",
            b"",
        ] {
            let err = ScramServer::new(ScramMechanism::Sha256)
                .step(msg, &lookup)
                .expect_err("malformed");
            assert!(err.protocol_error, "{msg:?}: {}", err.message);
        }
    }

    #[test]
    fn a_token_login_is_refused_as_invalid_credentials() {
        let lookup = |_: &str| None;
        let err = ScramServer::new(ScramMechanism::Sha256)
            .step(b"n,,n=a,r=x,tokenauth=true", &lookup)
            .expect_err("token");
        assert!(!err.protocol_error);
    }

    #[test]
    fn credentials_round_trip_through_json_without_the_password() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha512, "hunter2", 4096);
        let json = serde_json::to_string(&cred).expect("json");
        assert!(!json.contains("hunter2"));
        let back: ScramCredential = serde_json::from_str(&json).expect("back");
        assert_eq!(back, cred);
        assert!(!format!("{cred:?}").contains("salt"));
    }
}
