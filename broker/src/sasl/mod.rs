//! SASL mechanisms, pure: PLAIN (users from the listener's JAAS config) and SCRAM-SHA-256/512
//! (credentials from the metadata log). The connection's session (`server::session`) drives
//! them one token at a time; nothing here does I/O.

pub mod bootstrap;
pub mod jwks;
pub mod jwks_endpoint;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

pub use gregor_client::sasl::Mechanism;

/// Why a SASL exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// What the client is told (credential failures), or what went wrong (protocol errors).
    pub message: String,
    /// A malformed message rather than a wrong credential. Kafka answers both with
    /// SASL_AUTHENTICATION_FAILED; a protocol error's client message is the generic one.
    pub protocol_error: bool,
}

impl AuthFailure {
    /// A wrong or unknown credential, with the message the client sees.
    pub fn credentials(message: String) -> AuthFailure {
        AuthFailure {
            message,
            protocol_error: false,
        }
    }

    /// A malformed exchange.
    pub fn protocol(message: String) -> AuthFailure {
        AuthFailure {
            message,
            protocol_error: true,
        }
    }

    /// The message the client gets for this failure with `mechanism`: a credential failure's
    /// own message, else Kafka's generic one (which says nothing about the user).
    pub fn client_message(&self, mechanism: Mechanism) -> String {
        if self.protocol_error {
            format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {}",
                mechanism.name()
            )
        } else {
            self.message.clone()
        }
    }
}
