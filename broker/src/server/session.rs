//! One connection's authentication state, as Kafka's SaslServerAuthenticator keeps it: on a
//! SASL listener a client may send only ApiVersions and SaslHandshake until it has
//! authenticated with SaslAuthenticate; every other request closes the connection. The
//! authenticated user becomes the principal requests are authorized as. With
//! `connections.max.reauth.ms`, the session expires and the client must re-authenticate
//! (KIP-368) as the same principal; a request on an expired session closes the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use crate::authz::ANONYMOUS;
use crate::config::sasl::SaslConfig;
use crate::sasl::scram::{ScramServer, ScramStep};
use crate::sasl::{plain, AuthFailure, Mechanism};

/// A connection's authentication state.
#[derive(Debug)]
pub struct Session {
    /// The listener's SASL settings; `None` on a PLAINTEXT or SSL listener.
    sasl: Option<Arc<SaslConfig>>,
    /// Who the requests are authorized as.
    principal: Arc<str>,
    /// Where the SASL exchange is.
    state: State,
    /// When the authenticated session ends (`connections.max.reauth.ms`).
    expires: Option<Instant>,
    /// Set when the connection must close once the current response is written.
    closing: bool,
    /// Whether the client has authenticated (a re-authentication keeps this).
    authenticated: bool,
    /// When the last re-authentication started: Kafka starts at most one a second.
    last_reauth: Option<Instant>,
    /// Until when the connection reads nothing (a client over its quota, KIP-219).
    muted_until: Option<Instant>,
}

/// The least time between two re-authentications' starts (Kafka's
/// `MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS`).
const MIN_REAUTH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum State {
    /// Not (yet) authenticated; waiting for a SaslHandshake.
    Unauthenticated,
    /// A handshake chose `mechanism`; waiting for SaslAuthenticate tokens.
    Exchange(Mechanism, Step),
    /// Authenticated (or no SASL on this listener).
    Authenticated,
}

/// Where a mechanism's exchange is.
#[derive(Debug)]
enum Step {
    /// Nothing received yet (PLAIN and OAUTHBEARER's first message).
    Fresh,
    /// SCRAM's server, between its messages.
    Scram(ScramServer),
    /// OAUTHBEARER sent this JSON error; the client's `\x01` ends the exchange with it.
    OAuthError(String),
}

/// What one OAUTHBEARER message did.
enum OAuthStep {
    Continue(Vec<u8>),
    Fail(String),
    Done { user: String, expires_ms: i64 },
}

/// One OAUTHBEARER message (RFC 7628; Kafka's OAuthBearerSaslServer): the client's first,
/// or its `\x01` after an error. `now_ms` is the wall clock the token's expiry is checked
/// against.
fn oauthbearer_step(sasl: &SaslConfig, token: &[u8], step: &mut Step, now_ms: i64) -> OAuthStep {
    use crate::sasl::oauthbearer::parse_client_first;
    if let Step::OAuthError(json) = step {
        if token == [1] {
            return OAuthStep::Fail(json.clone());
        }
    }
    let generic = |f: AuthFailure| OAuthStep::Fail(f.client_message(Mechanism::OAuthBearer));
    let first = match parse_client_first(token) {
        Ok(f) => f,
        Err(f) => return generic(f),
    };
    let Some(validator) = &sasl.oauthbearer else {
        return generic(AuthFailure::protocol("OAUTHBEARER has no validator".into()));
    };
    match validator.validate(&first.token, now_ms) {
        Err(invalid) => {
            tracing::debug!(reason = %invalid.reason, "OAUTHBEARER token refused");
            let json = invalid.json();
            *step = Step::OAuthError(json.clone());
            OAuthStep::Continue(json.into_bytes())
        }
        Ok(v) => match first.authzid {
            Some(a) if a != v.principal => OAuthStep::Fail(format!(
                "Authentication failed: Client requested an authorization id ({a}) that is \
                 different from the token's principal name ({})",
                v.principal
            )),
            _ => OAuthStep::Done {
                user: v.principal,
                expires_ms: v.expires_ms,
            },
        },
    }
}

/// Whether a request may be served in the connection's current state.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Serve it.
    Admit,
    /// Close the connection without an answer, for this reason.
    Close(String),
}

/// What a SaslHandshake did.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// The mechanism is enabled: the exchange starts.
    Accepted(Vec<&'static str>),
    /// The mechanism is not enabled here: answer UNSUPPORTED_SASL_MECHANISM with the enabled
    /// ones, then close.
    Unsupported(Vec<&'static str>),
    /// No handshake is expected (not a SASL listener, or authenticated without expiry):
    /// ILLEGAL_SASL_STATE.
    Illegal,
}

/// What a SaslAuthenticate token did.
#[derive(Debug, PartialEq, Eq)]
pub enum Authenticate {
    /// The exchange goes on: send this challenge.
    Continue(Vec<u8>),
    /// Authenticated: send this last message and the session lifetime (0: none).
    Done {
        /// The mechanism's final message to the client.
        reply: Vec<u8>,
        /// `session_lifetime_ms` (SaslAuthenticate v1+).
        lifetime_ms: i64,
    },
    /// Failed: answer SASL_AUTHENTICATION_FAILED with this message after the configured
    /// delay, then close.
    Failed(String),
    /// Not in an exchange: ILLEGAL_SASL_STATE with this message.
    Illegal(&'static str),
}

impl Session {
    /// A new connection's session on a listener with `sasl` settings (`None`: no SASL, the
    /// connection is ANONYMOUS from the start).
    /// `principal` is what the client's certificate names (SSL listeners), else ANONYMOUS.
    pub fn new(sasl: Option<Arc<SaslConfig>>, principal: Option<Arc<str>>) -> Session {
        let sasl_none = sasl.is_none();
        let state = if sasl.is_some() {
            State::Unauthenticated
        } else {
            State::Authenticated
        };
        Session {
            sasl,
            principal: principal.unwrap_or_else(|| Arc::from(ANONYMOUS)),
            state,
            expires: None,
            closing: false,
            authenticated: sasl_none,
            last_reauth: None,
            muted_until: None,
        }
    }

    /// The principal requests are authorized as.
    pub fn principal(&self) -> Arc<str> {
        Arc::clone(&self.principal)
    }

    /// Whether the connection must close after the response now being written.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Mutes the connection for `throttle` from `now`: it reads no request before then.
    pub fn mute(&mut self, now: Instant, throttle: Duration) {
        let until = now + throttle;
        self.muted_until = Some(self.muted_until.map_or(until, |u| u.max(until)));
    }

    /// Until when the connection must read nothing, taken (once).
    pub fn take_mute(&mut self) -> Option<Instant> {
        self.muted_until.take()
    }

    /// Closes the connection once the current response is written.
    pub fn close_after_response(&mut self) {
        self.closing = true;
    }

    /// The largest frame to accept now: `sasl.server.max.receive.size` until the client has
    /// authenticated, `max` after.
    pub fn frame_limit(&self, max: usize) -> usize {
        match (&self.sasl, &self.state) {
            (Some(sasl), State::Unauthenticated | State::Exchange(..)) if !self.authenticated => {
                sasl.max_receive_size.min(max)
            }
            _ => max,
        }
    }

    /// The delay before a failed authentication's answer.
    pub fn failure_delay(&self) -> Duration {
        Duration::from_millis(self.sasl.as_ref().map_or(0, |s| s.failed_auth_delay_ms))
    }

    /// Whether a request of `api` may be served now.
    pub fn admits(&self, api: ApiKey, now: Instant) -> Gate {
        let sasl_api = matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        match &self.state {
            State::Authenticated => match self.expires {
                Some(at) if now >= at && api != ApiKey::SaslHandshake => {
                    Gate::Close("the SASL session expired without re-authentication".into())
                }
                _ => Gate::Admit,
            },
            State::Unauthenticated
                if api == ApiKey::ApiVersions || api == ApiKey::SaslHandshake =>
            {
                Gate::Admit
            }
            // Re-authenticating: the previous authentication still holds for other requests.
            State::Exchange(..) if sasl_api || self.authenticated => Gate::Admit,
            State::Unauthenticated | State::Exchange(..) => Gate::Close(format!(
                "unexpected {api:?} request during SASL authentication"
            )),
        }
    }

    /// A SaslHandshake for `mechanism`, at `now`.
    pub fn handshake(&mut self, mechanism: &str, now: Instant) -> Handshake {
        let Some(sasl) = &self.sasl else {
            return Handshake::Illegal;
        };
        if matches!(self.state, State::Authenticated) {
            // A re-authentication: only when sessions expire, at most one a second.
            let too_soon = self
                .last_reauth
                .is_some_and(|t| now.duration_since(t) < MIN_REAUTH_INTERVAL);
            if self.expires.is_none() || too_soon {
                return Handshake::Illegal;
            }
            self.last_reauth = Some(now);
        }
        let enabled: Vec<&'static str> = sasl.mechanisms.iter().map(|m| m.name()).collect();
        match sasl.mechanisms.iter().find(|m| m.name() == mechanism) {
            Some(&m) => {
                let step = match m {
                    Mechanism::Plain | Mechanism::OAuthBearer => Step::Fresh,
                    Mechanism::Scram(s) => Step::Scram(ScramServer::new(s)),
                };
                self.state = State::Exchange(m, step);
                Handshake::Accepted(enabled)
            }
            None => {
                self.closing = true;
                Handshake::Unsupported(enabled)
            }
        }
    }

    /// A SaslAuthenticate token; `scram` finds a user's stored credential for a mechanism.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        scram: &dyn Fn(
            &str,
            crate::sasl::scram::ScramMechanism,
        ) -> Option<crate::sasl::scram::ScramCredential>,
        now: Instant,
    ) -> Authenticate {
        let (Some(sasl), State::Exchange(mechanism, exchange)) = (&self.sasl, &mut self.state)
        else {
            // Kafka's words on a listener without SASL too.
            return Authenticate::Illegal(
                "SaslAuthenticate request received after successful authentication",
            );
        };
        let mechanism = *mechanism;
        let step = match (mechanism, exchange) {
            (Mechanism::Plain, _) => {
                plain::authenticate(token, &sasl.plain_users).map(|user| (user, Vec::new(), None))
            }
            (Mechanism::Scram(m), Step::Scram(server)) => {
                match server.step(token, &|user| scram(user, m)) {
                    Ok(ScramStep::Continue(challenge)) => return Authenticate::Continue(challenge),
                    Ok(ScramStep::Authenticated { user, reply }) => Ok((user, reply, None)),
                    Err(e) => Err(e),
                }
            }
            (Mechanism::Scram(_), _) => Err(AuthFailure::protocol("no SCRAM exchange".into())),
            (Mechanism::OAuthBearer, step) => {
                match oauthbearer_step(sasl, token, step, crate::cluster::now_ms()) {
                    OAuthStep::Continue(challenge) => return Authenticate::Continue(challenge),
                    OAuthStep::Fail(message) => return self.fail(message),
                    OAuthStep::Done { user, expires_ms } => {
                        Ok((user, Vec::new(), Some(expires_ms)))
                    }
                }
            }
        };
        let (user, reply, credential_expiry) = match step {
            Ok(done) => done,
            Err(failure) => return self.fail(failure.client_message(mechanism)),
        };
        let principal = format!("User:{user}");
        let previous = self.principal.as_ref();
        if self.authenticated && previous != principal {
            let dotted = |p: &str| p.replacen(':', ".", 1);
            return self.fail(format!(
                "Cannot change principals during re-authentication from {}: {}",
                dotted(previous),
                dotted(&principal)
            ));
        }
        // As Kafka: a credential that expires (an OAUTHBEARER token) ends the session then, or
        // earlier with `connections.max.reauth.ms`.
        let max = sasl.max_reauth_ms;
        let lifetime_ms = match credential_expiry {
            Some(exp) => {
                let left = (exp - crate::cluster::now_ms()).max(0);
                if max > 0 {
                    left.min(max)
                } else {
                    left
                }
            }
            None => max,
        };
        self.expires = (credential_expiry.is_some() || lifetime_ms > 0)
            .then(|| now + Duration::from_millis(lifetime_ms as u64));
        self.principal = Arc::from(principal);
        self.authenticated = true;
        self.state = State::Authenticated;
        Authenticate::Done { reply, lifetime_ms }
    }

    fn fail(&mut self, message: String) -> Authenticate {
        self.closing = true;
        self.state = State::Unauthenticated;
        Authenticate::Failed(message)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::ssl::Secret;
    use crate::sasl::scram::{ScramCredential, ScramMechanism};

    fn sasl(reauth_ms: i64) -> Option<Arc<SaslConfig>> {
        Some(Arc::new(SaslConfig {
            mechanisms: vec![Mechanism::Plain, Mechanism::Scram(ScramMechanism::Sha512)],
            plain_users: BTreeMap::from([
                ("alice".into(), Secret::new("alice-secret")),
                ("bob".into(), Secret::new("bob-secret")),
            ]),
            oauthbearer: None,
            max_reauth_ms: reauth_ms,
            failed_auth_delay_ms: 100,
            max_receive_size: 1000,
        }))
    }

    fn no_scram(_: &str, _: ScramMechanism) -> Option<ScramCredential> {
        None
    }

    fn login(s: &mut Session, token: &[u8], now: Instant) -> Authenticate {
        assert!(matches!(s.handshake("PLAIN", now), Handshake::Accepted(_)));
        s.authenticate(token, &no_scram, now)
    }

    #[test]
    fn only_api_versions_and_the_handshake_come_before_authentication() {
        let now = Instant::now();
        let mut s = Session::new(sasl(0), None);
        assert_eq!(s.admits(ApiKey::ApiVersions, now), Gate::Admit);
        assert_eq!(s.admits(ApiKey::SaslHandshake, now), Gate::Admit);
        assert!(matches!(s.admits(ApiKey::Metadata, now), Gate::Close(_)));
        assert!(matches!(
            s.admits(ApiKey::SaslAuthenticate, now),
            Gate::Close(_)
        ));
        assert_eq!(s.frame_limit(1 << 20), 1000);
        assert!(matches!(s.handshake("PLAIN", now), Handshake::Accepted(_)));
        assert!(matches!(s.admits(ApiKey::Produce, now), Gate::Close(_)));
        let done = s.authenticate(b"\0alice\0alice-secret", &no_scram, now);
        assert_eq!(
            done,
            Authenticate::Done {
                reply: vec![],
                lifetime_ms: 0
            }
        );
        assert_eq!(&*s.principal(), "User:alice");
        assert_eq!(s.admits(ApiKey::Produce, now), Gate::Admit);
        assert_eq!(s.frame_limit(1 << 20), 1 << 20);
        assert_eq!(s.handshake("PLAIN", now), Handshake::Illegal);
        assert!(matches!(
            s.authenticate(b"x", &no_scram, now),
            Authenticate::Illegal(_)
        ));
        assert!(!s.closing());
    }

    #[test]
    fn a_failed_login_closes_after_answering_and_an_unknown_mechanism_too() {
        let now = Instant::now();
        let mut s = Session::new(sasl(0), None);
        let failed = login(&mut s, b"\0alice\0wrong", now);
        assert_eq!(
            failed,
            Authenticate::Failed("Authentication failed: Invalid username or password".into())
        );
        assert!(s.closing());
        assert_eq!(&*s.principal(), ANONYMOUS);
        let mut s = Session::new(sasl(0), None);
        assert_eq!(
            s.handshake("SCRAM-SHA-256", now),
            Handshake::Unsupported(vec!["PLAIN", "SCRAM-SHA-512"])
        );
        assert!(s.closing());
    }

    #[test]
    fn a_session_expires_and_re_authenticates_only_as_the_same_principal() {
        let now = Instant::now();
        let mut s = Session::new(sasl(3000), None);
        assert_eq!(
            login(&mut s, b"\0alice\0alice-secret", now),
            Authenticate::Done {
                reply: vec![],
                lifetime_ms: 3000
            }
        );
        let later = now + Duration::from_millis(3000);
        assert!(matches!(s.admits(ApiKey::Fetch, later), Gate::Close(_)));
        assert_eq!(s.admits(ApiKey::SaslHandshake, later), Gate::Admit);
        // Re-authenticating: other requests still flow under the old authentication.
        assert!(matches!(s.handshake("PLAIN", now), Handshake::Accepted(_)));
        assert_eq!(s.admits(ApiKey::Fetch, now), Gate::Admit);
        assert!(matches!(
            s.authenticate(b"\0alice\0alice-secret", &no_scram, later),
            Authenticate::Done { .. }
        ));
        assert_eq!(s.admits(ApiKey::Fetch, later), Gate::Admit);
        // At most one re-authentication starts a second.
        let soon = now + Duration::from_millis(500);
        assert_eq!(s.handshake("PLAIN", soon), Handshake::Illegal);
        let bob = login(&mut s, b"\0bob\0bob-secret", later);
        assert_eq!(
            bob,
            Authenticate::Failed(
                "Cannot change principals during re-authentication from User.alice: User.bob"
                    .into()
            )
        );
    }

    #[test]
    fn scram_runs_two_round_trips_and_a_bad_message_gets_the_generic_text() {
        let now = Instant::now();
        let cred = ScramCredential::from_password(ScramMechanism::Sha512, "pw", 4096);
        let lookup = move |u: &str, m: ScramMechanism| {
            (u == "carol" && m == ScramMechanism::Sha512).then(|| cred.clone())
        };
        let mut s = Session::new(sasl(0), None);
        assert!(matches!(
            s.handshake("SCRAM-SHA-512", now),
            Handshake::Accepted(_)
        ));
        let step = s.authenticate(b"n,,n=carol,r=abc", &lookup, now);
        assert!(matches!(step, Authenticate::Continue(ref c) if c.starts_with(b"r=abc")));
        let bad = s.authenticate(b"c=biws,r=nonsense,p=AAAA", &lookup, now);
        assert_eq!(
            bad,
            Authenticate::Failed(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism SCRAM-SHA-512"
                    .into()
            )
        );
    }

    #[test]
    fn oauthbearer_fails_in_two_steps_and_a_token_sets_the_sessions_end() {
        use crate::sasl::oauthbearer::{unsecured_token, UnsecuredValidator};
        let now = Instant::now();
        let mut config = (*sasl(0).expect("sasl")).clone();
        config.mechanisms.push(Mechanism::OAuthBearer);
        config.oauthbearer = Some(crate::sasl::oauthbearer::Validation::Unsecured(
            UnsecuredValidator::default(),
        ));
        let config = Some(Arc::new(config));
        let first = |claims: serde_json::Value| {
            format!("n,,\x01auth=Bearer {}\x01\x01", unsecured_token(&claims)).into_bytes()
        };
        let wall = crate::cluster::now_ms() / 1000;

        let mut s = Session::new(config.clone(), None);
        assert!(matches!(
            s.handshake("OAUTHBEARER", now),
            Handshake::Accepted(_)
        ));
        let expired = first(serde_json::json!({"sub": "alice", "exp": wall - 10}));
        let challenge = s.authenticate(&expired, &no_scram, now);
        assert_eq!(
            challenge,
            Authenticate::Continue(br#"{"status":"invalid_token"}"#.to_vec())
        );
        assert!(!s.closing());
        assert_eq!(
            s.authenticate(&[1], &no_scram, now),
            Authenticate::Failed(r#"{"status":"invalid_token"}"#.into())
        );
        assert!(s.closing());

        let mut s = Session::new(config, None);
        assert!(matches!(
            s.handshake("OAUTHBEARER", now),
            Handshake::Accepted(_)
        ));
        let valid = first(serde_json::json!({"sub": "alice", "exp": wall + 100}));
        let Authenticate::Done { lifetime_ms, .. } = s.authenticate(&valid, &no_scram, now) else {
            panic!("a valid token authenticates");
        };
        assert!((90_000..=100_000).contains(&lifetime_ms), "{lifetime_ms}");
        assert_eq!(&*s.principal(), "User:alice");
        let later = now + Duration::from_millis(lifetime_ms as u64);
        assert!(matches!(s.admits(ApiKey::Fetch, later), Gate::Close(_)));
    }

    #[test]
    fn a_listener_without_sasl_is_anonymous_and_refuses_sasl_requests() {
        let now = Instant::now();
        let mut s = Session::new(None, None);
        assert_eq!(&*s.principal(), ANONYMOUS);
        assert_eq!(s.admits(ApiKey::Produce, now), Gate::Admit);
        assert_eq!(s.handshake("PLAIN", now), Handshake::Illegal);
        assert!(matches!(
            s.authenticate(b"\0a\0b", &no_scram, now),
            Authenticate::Illegal(_)
        ));
        assert_eq!(s.frame_limit(77), 77);
    }
}
