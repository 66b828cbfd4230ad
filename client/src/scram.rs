//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them: the mechanisms
//! and their primitives (Hi, HMAC, H, saslname escaping), which the broker's server side also
//! uses, and the client's side of the exchange. Kafka's dialect: no channel binding (gs2
//! header `n,,`), iterations between 4096 and 16384.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// Fewest PBKDF2 iterations Kafka accepts for a credential (and its clients from a server).
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

    /// The HMAC key of `key` for this mechanism's hash.
    fn hmac_key(self, key: &[u8]) -> hmac::Key {
        match self {
            ScramMechanism::Sha256 => hmac::Key::new(hmac::HMAC_SHA256, key),
            ScramMechanism::Sha512 => hmac::Key::new(hmac::HMAC_SHA512, key),
        }
    }

    /// HMAC(key, data) of RFC 5802 with this mechanism's hash.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.hmac_key(key), data).as_ref().to_vec()
    }

    /// H(data) of RFC 5802: this mechanism's hash.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
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

/// Compares without leaking where the first difference is.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
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

/// A `saslname` of RFC 5802: `,` as `=2C` and `=` as `=3D`.
pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The client's side of one SCRAM exchange: [`ScramClient::first_message`], then
/// [`ScramClient::final_message`] with the server's challenge, then
/// [`ScramClient::verify_server_final`], which proves the server knew the credential too.
pub struct ScramClient {
    /// The mechanism, which fixes the hash.
    mechanism: ScramMechanism,
    /// client-first-message-bare: `n=<saslname>,r=<client nonce>`; starts the AuthMessage.
    first_bare: String,
    /// The client's nonce, which the server's must extend.
    nonce: String,
    /// The password; needed once, for the salted password.
    password: String,
    /// The ServerSignature expected in the server-final message, once the proof is sent.
    expected_server_signature: Option<Vec<u8>>,
}

/// The value of field `name` (`r=`, ...) of a server-first message.
fn field<'a>(f: Option<&'a str>, name: &str) -> Result<&'a str, String> {
    f.and_then(|f| f.strip_prefix(name))
        .ok_or_else(|| format!("the SCRAM server-first message has no {name} field"))
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A new exchange for `user` with a fresh random nonce.
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> ScramClient {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 24];
        // The system random source failing leaves zeros; the nonce then is still unique
        // enough per connection for a CLI tool, and the proof stays correct.
        let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
        ScramClient::with_nonce(mechanism, user, password, &B64.encode(bytes))
    }

    /// A new exchange with the given client nonce (the tests' fixed one).
    pub fn with_nonce(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        nonce: &str,
    ) -> ScramClient {
        ScramClient {
            mechanism,
            first_bare: format!("n={},r={nonce}", encode_saslname(user)),
            nonce: nonce.to_owned(),
            password: password.to_owned(),
            expected_server_signature: None,
        }
    }

    /// The client-first message: the gs2 header (no channel binding, no authzid) and the bare
    /// message.
    pub fn first_message(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// The client-final message answering `server_first` (`r=<nonce>,s=<salt>,i=<n>`), with
    /// the proof; the error says what is wrong with the challenge.
    pub fn final_message(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| "the SCRAM server-first message is not UTF-8".to_owned())?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(format!("the server refused the SCRAM exchange: {error}"));
        }
        let mut fields = text.split(',');
        let nonce = field(fields.next(), "r=")?;
        let salt = field(fields.next(), "s=")?;
        let iterations = field(fields.next(), "i=")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the SCRAM server nonce does not extend the client's".into());
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| "the SCRAM salt is not base64".to_owned())?;
        let iterations: i32 = iterations
            .parse()
            .ok()
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .ok_or_else(|| {
                format!(
                    "the SCRAM iteration count {iterations} is outside \
                     {MIN_ITERATIONS}..={MAX_ITERATIONS}"
                )
            })?;
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(m.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (`v=<ServerSignature>`): a server that does not know
    /// the credential cannot produce it.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| "the SCRAM server-final message is not UTF-8".to_owned())?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(format!("the server refused the SCRAM exchange: {error}"));
        }
        let expected = self
            .expected_server_signature
            .as_deref()
            .ok_or_else(|| "the SCRAM server-final message came before the proof".to_owned())?;
        let signature = text
            .split(',')
            .find_map(|f| f.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| "the SCRAM server-final message has no server signature".to_owned())?;
        if same_bytes(&signature, expected) {
            Ok(())
        } else {
            Err(
                "the SCRAM server signature is wrong: the server does not know the credential"
                    .into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc7677() -> ScramClient {
        ScramClient::with_nonce(ScramMechanism::Sha256, "user", "pencil", NONCE)
    }

    #[test]
    fn the_client_reproduces_the_rfc7677_exchange() {
        let mut client = rfc7677();
        assert_eq!(client.first_message(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let last = client
            .final_message(SERVER_FIRST.as_bytes())
            .expect("challenge");
        assert_eq!(String::from_utf8(last).expect("utf8"), CLIENT_FINAL);
        client
            .verify_server_final(SERVER_FINAL.as_bytes())
            .expect("the server's signature");
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let mut client = rfc7677();
        client
            .final_message(SERVER_FIRST.as_bytes())
            .expect("challenge");
        let e = client
            .verify_server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .expect_err("forged");
        assert!(e.contains("server signature is wrong"), "{e}");
        let e = client
            .verify_server_final(b"e=invalid-proof")
            .expect_err("error");
        assert!(e.contains("invalid-proof"), "{e}");
    }

    #[test]
    fn a_bad_challenge_is_refused_saying_why() {
        for (challenge, why) in [
            ("r=other%x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
            (
                "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "nonce",
            ),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=4096", "base64"),
            (
                "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=100",
                "iteration",
            ),
            ("r=rOprNGfwEbeRWgbNEkqOx,i=4096", "s="),
        ] {
            let e = rfc7677()
                .final_message(challenge.as_bytes())
                .expect_err(challenge);
            assert!(e.contains(why), "{challenge}: {e}");
        }
    }

    #[test]
    fn user_names_are_escaped_as_saslnames() {
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(
            decode_saslname(&encode_saslname("a,b=c")).as_deref(),
            Some("a,b=c")
        );
        let client = ScramClient::with_nonce(ScramMechanism::Sha512, "x=y", "pw", "n");
        assert_eq!(client.first_message(), b"n,,n=x=3Dy,r=n");
        assert!(!format!("{client:?}").contains("pw"));
    }

    #[test]
    fn saslnames_decode_escapes_and_refuse_stray_equals() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("plain").as_deref(), Some("plain"));
        assert_eq!(decode_saslname("a=4"), None);
        assert_eq!(decode_saslname("a=ZZb"), None);
    }
}
