//! SaslHandshake and SaslAuthenticate, which move the connection's session
//! (`server::session`), and the SCRAM credential APIs: AlterUserScramCredentials (ALTER on the
//! cluster, committed through the metadata log) and DescribeUserScramCredentials (DESCRIBE on
//! the cluster), with Kafka's ScramControlManager checks and messages.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::authz::{Operation, Resource};
use crate::cluster::security::ScramChange;
use crate::sasl::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::server::dispatch::{sb, Ctx};
use crate::server::session::{Authenticate, Handshake};

/// Counts an authentication's result.
fn count(ctx: &Ctx<'_>, result: &str) {
    ctx.broker
        .metrics
        .authentications
        .with_label_values(&[result])
        .inc();
}

/// SaslHandshake: starts an exchange with an enabled mechanism; an unknown one is answered
/// UNSUPPORTED_SASL_MECHANISM after the failed-authentication delay, then the connection
/// closes.
pub async fn sasl_handshake(
    ctx: &Ctx<'_>,
    req: SaslHandshakeRequest,
) -> Option<SaslHandshakeResponse> {
    let outcome = ctx.session.lock().handshake(&req.mechanism, Instant::now());
    let (error, mechanisms) = match outcome {
        Handshake::Accepted(enabled) if ctx.version == 0 => {
            // v0 sends the tokens unframed, without SaslAuthenticate: no client Gregor
            // supports does, so the exchange ends here.
            tracing::info!(peer = %ctx.peer, "SaslHandshake v0 (unframed SASL tokens) is not supported: use v1");
            ctx.session.lock().close_after_response();
            (None, enabled)
        }
        Handshake::Accepted(enabled) => (None, enabled),
        Handshake::Unsupported(enabled) => {
            count(ctx, "failure");
            tracing::info!(peer = %ctx.peer, mechanism = %&*req.mechanism, "unsupported SASL mechanism");
            let delay = ctx.session.lock().failure_delay();
            tokio::time::sleep(delay).await;
            (Some(ResponseError::UnsupportedSaslMechanism), enabled)
        }
        Handshake::Illegal => (Some(ResponseError::IllegalSaslState), Vec::new()),
    };
    Some(
        SaslHandshakeResponse::default()
            .with_error_code(error.map_or(0, |e| e.code()))
            .with_mechanisms(mechanisms.into_iter().map(sb).collect()),
    )
}

/// SaslAuthenticate: one token of the exchange. A failure is answered
/// SASL_AUTHENTICATION_FAILED after the failed-authentication delay, then the connection
/// closes; nothing of the credential is logged.
pub async fn sasl_authenticate(
    ctx: &Ctx<'_>,
    req: SaslAuthenticateRequest,
) -> Option<SaslAuthenticateResponse> {
    let cluster = &ctx.broker.cluster;
    let lookup = |user: &str, m: ScramMechanism| cluster.scram_credential(user, m);
    let outcome = ctx
        .session
        .lock()
        .authenticate(&req.auth_bytes, &lookup, Instant::now());
    // Kafka answers an empty (not null) message on success.
    let response = SaslAuthenticateResponse::default();
    Some(match outcome {
        Authenticate::Continue(challenge) => response.with_auth_bytes(Bytes::from(challenge)),
        Authenticate::Done { reply, lifetime_ms } => {
            count(ctx, "success");
            tracing::debug!(peer = %ctx.peer, principal = %ctx.session.lock().principal(), "authenticated");
            response
                .with_auth_bytes(Bytes::from(reply))
                .with_session_lifetime_ms(lifetime_ms)
        }
        Authenticate::Failed(message) => {
            count(ctx, "failure");
            tracing::info!(peer = %ctx.peer, listener = ctx.listener, "failed authentication: {message}");
            let delay = ctx.session.lock().failure_delay();
            tokio::time::sleep(delay).await;
            response
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(sb(message)))
        }
        Authenticate::Illegal(message) => response
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(sb(message))),
    })
}

/// A per-user refusal: code and message.
type Refusal = (ResponseError, String);

fn refusal(e: ResponseError, message: &str) -> Refusal {
    (e, message.to_string())
}

/// Checks a user name and mechanism id as Kafka does, in its order.
fn check_user(name: &str, mechanism: i8) -> Result<ScramMechanism, Refusal> {
    if name.is_empty() {
        return Err(refusal(
            ResponseError::UnacceptableCredential,
            "Username must not be empty",
        ));
    }
    ScramMechanism::from_id(mechanism).ok_or_else(|| {
        refusal(
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism",
        )
    })
}

/// AlterUserScramCredentials: deletions, then upsertions, one result per user; a user named
/// twice is refused DUPLICATE_RESOURCE; the valid changes commit together.
pub async fn alter_user_scram_credentials(
    ctx: &Ctx<'_>,
    req: AlterUserScramCredentialsRequest,
) -> Option<AlterUserScramCredentialsResponse> {
    let mut named: BTreeMap<&str, usize> = BTreeMap::new();
    let users = req
        .deletions
        .iter()
        .map(|d| &*d.name)
        .chain(req.upsertions.iter().map(|u| &*u.name));
    for user in users.clone() {
        *named.entry(user).or_default() += 1;
    }
    let mut results: Vec<(String, Option<Refusal>)> = Vec::new();
    let mut changes = Vec::new();
    let denied = ctx.authorize(Operation::Alter, Resource::cluster()).err();
    let current = ctx.broker.cluster.scram_credentials();
    for d in &req.deletions {
        if results.iter().any(|(u, _)| u == &*d.name) {
            continue;
        }
        let outcome = if let Some(e) = &denied {
            Err((admin_error_code(e), e.to_string()))
        } else if named[&*d.name] > 1 {
            Err(duplicate())
        } else {
            check_user(&d.name, d.mechanism).and_then(|m| {
                let exists = current.get(&*d.name).is_some_and(|c| c.contains_key(&m));
                if exists {
                    changes.push(ScramChange::Delete(d.name.to_string(), m));
                    Ok(())
                } else {
                    Err(refusal(
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist",
                    ))
                }
            })
        };
        results.push((d.name.to_string(), outcome.err()));
    }
    for u in &req.upsertions {
        if results.iter().any(|(r, _)| r == &*u.name) {
            continue;
        }
        let outcome = if let Some(e) = &denied {
            Err((admin_error_code(e), e.to_string()))
        } else if named[&*u.name] > 1 {
            Err(duplicate())
        } else {
            upsertion(u).map(|m| {
                let credential = ScramCredential::from_salted(
                    m,
                    u.salt.to_vec(),
                    &u.salted_password,
                    u.iterations,
                );
                changes.push(ScramChange::Upsert(u.name.to_string(), m, credential));
            })
        };
        results.push((u.name.to_string(), outcome.err()));
    }
    if !changes.is_empty() {
        let cluster = ctx.broker.cluster.clone();
        let committed = blocking(move || cluster.alter_scram_credentials(&changes)).await?;
        if let Err(e) = committed {
            for (_, r) in results.iter_mut().filter(|(_, r)| r.is_none()) {
                *r = Some((admin_error_code(&e), e.to_string()));
            }
        }
    }
    let results = results
        .into_iter()
        .map(|(user, refused)| {
            let result = AlterUserScramCredentialsResult::default().with_user(sb(user));
            match refused {
                None => result.with_error_message(None),
                Some((e, message)) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(message))),
            }
        })
        .collect();
    Some(AlterUserScramCredentialsResponse::default().with_results(results))
}

fn duplicate() -> Refusal {
    refusal(
        ResponseError::DuplicateResource,
        "A user credential cannot be altered twice in the same request",
    )
}

/// Checks one upsertion: its mechanism, then the iteration bounds.
fn upsertion(
    u: &alter_user_scram_credentials_request::ScramCredentialUpsertion,
) -> Result<ScramMechanism, Refusal> {
    let m = check_user(&u.name, u.mechanism)?;
    if u.iterations < MIN_ITERATIONS {
        return Err(refusal(
            ResponseError::UnacceptableCredential,
            "Too few iterations",
        ));
    }
    if u.iterations > MAX_ITERATIONS {
        return Err(refusal(
            ResponseError::UnacceptableCredential,
            "Too many iterations",
        ));
    }
    Ok(m)
}

/// DescribeUserScramCredentials: every user with credentials when no user is named, else each
/// named one (unknown: RESOURCE_NOT_FOUND; named twice: DUPLICATE_RESOURCE, once).
pub async fn describe_user_scram_credentials(
    ctx: &Ctx<'_>,
    req: DescribeUserScramCredentialsRequest,
) -> Option<DescribeUserScramCredentialsResponse> {
    let requested: Vec<String> = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    let response = DescribeUserScramCredentialsResponse::default().with_error_message(None);
    if let Err(e) = ctx.authorize(Operation::Describe, Resource::cluster()) {
        let code = admin_error_code(&e).code();
        let results = requested
            .iter()
            .map(|u| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(sb(u.as_str()))
                    .with_error_code(code)
                    .with_error_message(Some(sb(e.to_string())))
            })
            .collect();
        return Some(
            response
                .with_error_code(code)
                .with_error_message(Some(sb(e.to_string())))
                .with_results(results),
        );
    }
    let all = ctx.broker.cluster.scram_credentials();
    let users: Vec<String> = if requested.is_empty() {
        all.keys().cloned().collect()
    } else {
        requested.clone()
    };
    let mut results = Vec::new();
    for (i, user) in users.iter().enumerate() {
        if users[..i].contains(user) {
            continue;
        }
        let result = DescribeUserScramCredentialsResult::default()
            .with_user(sb(user.as_str()))
            .with_error_message(None);
        let result = if users[i + 1..].contains(user) {
            result
                .with_error_code(ResponseError::DuplicateResource.code())
                .with_error_message(Some(sb(format!(
                    "Cannot describe SCRAM credentials for the same user twice in a single \
                     request: {user}"
                ))))
        } else if let Some(creds) = all.get(user) {
            result.with_credential_infos(
                creds
                    .iter()
                    .map(|(m, c)| {
                        CredentialInfo::default()
                            .with_mechanism(m.id())
                            .with_iterations(c.iterations)
                    })
                    .collect(),
            )
        } else {
            result
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(sb(format!(
                    "Attempt to describe a user credential that does not exist: {user}"
                ))))
        };
        results.push(result);
    }
    Some(response.with_results(results))
}
