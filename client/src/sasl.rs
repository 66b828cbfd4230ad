//! The client's side of SASL on a Kafka connection: SaslHandshake v1 naming the mechanism,
//! then the mechanism's tokens in SaslAuthenticate requests (PLAIN: one token; SCRAM: the
//! client-first and client-final messages, and the server signature checked). A refusal is a
//! [`ClientError::Authentication`] carrying the broker's own message.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use crate::scram::{ScramClient, ScramMechanism};
use crate::security::SaslCredentials;
use crate::{Client, ClientError};

/// A SASL mechanism Gregor speaks, as broker and client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(ScramMechanism),
    /// OAUTHBEARER (RFC 7628) with a bearer token (a JWT).
    OAuthBearer,
}

impl Mechanism {
    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism called `name` (case-sensitive, as SASL names are), if Gregor speaks it.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// How long an unsecured OAUTHBEARER token lasts (Kafka's `unsecuredLoginLifetimeSeconds`
/// default).
const UNSECURED_LIFETIME_S: u64 = 3600;

/// An unsecured JWS (`alg` none, no signature) naming `principal` in `sub` and claiming
/// `scope`, valid for `lifetime_s` from now: what Kafka's OAuthBearerLoginModule makes from its
/// `unsecuredLoginStringClaim_sub` and `unsecuredLoginListClaim_scope` options, for
/// development clusters.
pub fn unsecured_token(principal: &str, scope: &[String], lifetime_s: u64) -> String {
    use base64::Engine;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as f64
        / 1000.0;
    let mut claims = serde_json::json!({
        "sub": principal,
        "iat": now,
        "exp": now + lifetime_s as f64,
    });
    if !scope.is_empty() {
        claims["scope"] = serde_json::json!(scope);
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none"}"#),
        b64.encode(claims.to_string())
    )
}

/// SaslHandshake v1 is the first version whose tokens travel in SaslAuthenticate requests.
const HANDSHAKE_VERSION: i16 = 1;

impl Client {
    /// Authenticates this connection with `credentials` (after ApiVersions, before anything
    /// else, as Kafka's clients do).
    pub(crate) async fn authenticate(
        &mut self,
        credentials: &SaslCredentials,
    ) -> Result<(), ClientError> {
        let mechanism = credentials.mechanism;
        self.version::<SaslHandshakeRequest>(None)?;
        let req = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(mechanism.name()));
        let resp = self.send_at(req, HANDSHAKE_VERSION).await?;
        if resp.error_code == ResponseError::UnsupportedSaslMechanism.code() {
            let enabled: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(self.refused(format!(
                "the listener does not enable SASL mechanism {}; it enables {}",
                mechanism.name(),
                enabled.join(", ")
            )));
        }
        if let Some(e) = ClientError::from_code(resp.error_code, || {
            format!("SaslHandshake with {}", self.addr())
        }) {
            return Err(e);
        }
        match mechanism {
            Mechanism::Plain => {
                let token = format!("\0{}\0{}", credentials.username, credentials.password());
                self.sasl_token(token.into_bytes()).await?;
            }
            Mechanism::Scram(m) => {
                let mut scram = ScramClient::new(m, &credentials.username, credentials.password());
                let server_first = self.sasl_token(scram.first_message()).await?;
                let last = scram
                    .final_message(&server_first)
                    .map_err(|e| self.refused(e))?;
                let server_final = self.sasl_token(last).await?;
                scram
                    .verify_server_final(&server_final)
                    .map_err(|e| self.refused(e))?;
            }
            Mechanism::OAuthBearer => {
                let token = unsecured_token(
                    &credentials.username,
                    credentials.scope(),
                    UNSECURED_LIFETIME_S,
                );
                let first = format!("n,,\x01auth=Bearer {token}\x01\x01");
                let reply = self.sasl_token(first.into_bytes()).await?;
                if !reply.is_empty() {
                    // The broker's JSON error: acknowledged with \x01, after which it refuses
                    // the exchange with that JSON as the message (RFC 7628).
                    self.sasl_token(vec![1]).await?;
                    return Err(self.refused(String::from_utf8_lossy(&reply).into_owned()));
                }
            }
        }
        Ok(())
    }

    /// Sends one SASL token and returns the broker's; a refusal carries the broker's message.
    async fn sasl_token(&mut self, token: Vec<u8>) -> Result<Bytes, ClientError> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let resp = self.send(req).await?;
        if resp.error_code == 0 {
            return Ok(resp.auth_bytes);
        }
        let message = match (
            &resp.error_message,
            ResponseError::try_from_code(resp.error_code),
        ) {
            (Some(m), _) if !m.is_empty() => m.as_str().to_owned(),
            (_, Some(e)) => e.to_string(),
            (_, None) => format!("error code {}", resp.error_code),
        };
        Err(self.refused(message))
    }

    fn refused(&self, message: String) -> ClientError {
        ClientError::Authentication {
            addr: self.addr().to_owned(),
            message,
        }
    }
}
