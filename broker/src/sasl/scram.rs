//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them: the stored
//! credential (salt, StoredKey, ServerKey, iterations; never the password), and the server's
//! side of the exchange, one client message at a time. Kafka's dialect: no channel binding
//! (gs2 header `n,,` or `n,a=<user>,`), the `tokenauth` extension for delegation tokens (which
//! Gregor refuses: it has no delegation tokens), iterations between 4096 and 16384.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use super::AuthFailure;

/// Fewest PBKDF2 iterations Kafka accepts for a credential.
pub const MIN_ITERATIONS: i32 = 4096;
/// Most PBKDF2 iterations Kafka accepts for a credential.
pub const MAX_ITERATIONS: i32 = 16384;

/// A SCRAM mechanism. The numbers are Kafka's wire ids (AlterUserScramCredentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// Both, in Kafka's order.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism called `name` (case-sensitive, as SASL names are).
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's wire id: 1 for SHA-256, 2 for SHA-512.
    pub fn id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism with wire id `id`.
    pub fn from_id(id: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.id() == id)
    }

    fn hmac_key(self, key: &[u8]) -> hmac::Key {
        match self {
            ScramMechanism::Sha256 => hmac::Key::new(hmac::HMAC_SHA256, key),
            ScramMechanism::Sha512 => hmac::Key::new(hmac::HMAC_SHA512, key),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.hmac_key(key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let (alg, len) = match self {
            ScramMechanism::Sha256 => (pbkdf2::PBKDF2_HMAC_SHA256, 32),
            ScramMechanism::Sha512 => (pbkdf2::PBKDF2_HMAC_SHA512, 64),
        };
        let rounds = std::num::NonZeroU32::new(iterations.max(1) as u32)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let mut out = vec![0u8; len];
        pbkdf2::derive(alg, rounds, salt, password, &mut out);
        out
    }
}

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

/// Compares without leaking where the first difference is.
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The username of a SCRAM `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is invalid.
pub fn decode_saslname(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
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

/// The client side of SCRAM, for tests: RFC 5802's computations from the password.
#[cfg(test)]
pub(crate) mod test_client {
    use super::*;

    /// The client side, for the tests: RFC 5802's computations from the password.
    pub(crate) fn client_final_message(
        mechanism: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let fields: Vec<&str> = server_first.split(',').collect();
        let nonce = fields[0].strip_prefix("r=").expect("nonce");
        let salt = B64
            .decode(fields[1].strip_prefix("s=").expect("salt"))
            .expect("b64");
        let iterations: i32 = fields[2].strip_prefix("i=").expect("i").parse().expect("n");
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = mechanism.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
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
    fn saslnames_decode_escapes_and_refuse_stray_equals() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("plain").as_deref(), Some("plain"));
        assert_eq!(decode_saslname("a=4"), None);
        assert_eq!(decode_saslname("a=ZZb"), None);
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
