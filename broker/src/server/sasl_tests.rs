//! SASL through the request path: SCRAM credentials made with AlterUserScramCredentials log a
//! client in with SaslHandshake/SaslAuthenticate, the authenticated user is the principal the
//! authorizer checks, and nothing but ApiVersions and the handshake is served before that.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::dispatch::Outcome;
use super::session::Session;
use super::tests::{broker_with, call, call_in, two_brokers_image};
use super::Broker;
use crate::cluster::image::MetadataImage;
use crate::cluster::metadata::MetadataRecord;
use crate::config::STANDARD_AUTHORIZER;
use crate::sasl::scram::test_client::client_final_message;
use crate::sasl::scram::{ScramCredential, ScramMechanism};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A SASL_PLAINTEXT listener `SASL` with PLAIN (alice) and both SCRAM mechanisms.
const SASL_LISTENER: &str = "listeners=PLAINTEXT://:9092,SASL://:9094\n\
    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL:SASL_PLAINTEXT\n\
    listener.name.sasl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n\
    listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.\
    PlainLoginModule required user_alice=\"alice-secret\";\n\
    connection.failed.authentication.delay.ms=0\n";

fn sasl_broker(dir: &std::path::Path, extra: &str) -> Arc<Broker> {
    broker_with(
        dir,
        &two_brokers_image(),
        &format!("{SASL_LISTENER}{extra}"),
    )
}

fn new_session(b: &Broker) -> parking_lot::Mutex<Session> {
    let sasl = b.cluster.config.sasl_listeners.get("SASL").cloned();
    parking_lot::Mutex::new(Session::new(sasl.map(Arc::new), None))
}

fn upsertion(
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> ScramCredentialUpsertion {
    let salt = b"0123456789abcdef".to_vec();
    let salted = m.salted_password(password.as_bytes(), &salt, iterations);
    ScramCredentialUpsertion::default()
        .with_name(s(user))
        .with_mechanism(m.id())
        .with_iterations(iterations)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted))
}

async fn handshake(
    b: &Arc<Broker>,
    session: &parking_lot::Mutex<Session>,
    m: &str,
) -> SaslHandshakeResponse {
    let req = SaslHandshakeRequest::default().with_mechanism(s(m));
    call_in(b, "SASL", session, 1, req)
        .await
        .1
        .expect("handshake answered")
}

async fn token(
    b: &Arc<Broker>,
    session: &parking_lot::Mutex<Session>,
    bytes: &[u8],
) -> SaslAuthenticateResponse {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(bytes));
    call_in(b, "SASL", session, 2, req)
        .await
        .1
        .expect("token answered")
}

/// Logs in with SCRAM as `user`; the last SaslAuthenticate response.
async fn scram_login(
    b: &Arc<Broker>,
    session: &parking_lot::Mutex<Session>,
    m: ScramMechanism,
    user: &str,
    password: &str,
) -> SaslAuthenticateResponse {
    assert_eq!(handshake(b, session, m.name()).await.error_code, 0);
    let bare = format!("n={user},r=clientnonce");
    let first = token(b, session, format!("n,,{bare}").as_bytes()).await;
    if first.error_code != 0 {
        return first;
    }
    let challenge = String::from_utf8(first.auth_bytes.to_vec()).expect("utf8");
    let last = client_final_message(m, password, &bare, &challenge);
    token(b, session, last.as_bytes()).await
}

#[tokio::test]
async fn a_credential_set_through_the_api_logs_a_scram_client_in_and_a_wrong_password_out() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = sasl_broker(d.path(), "");
    let altered = call(
        &b,
        0,
        AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion(
            "bob",
            ScramMechanism::Sha256,
            "bob-secret",
            8192,
        )]),
    )
    .await;
    assert_eq!(altered.results.len(), 1);
    assert_eq!(altered.results[0].error_code, 0, "{:?}", altered.results[0]);

    let session = new_session(&b);
    let done = scram_login(&b, &session, ScramMechanism::Sha256, "bob", "bob-secret").await;
    assert_eq!(done.error_code, 0, "{:?}", done.error_message);
    assert!(done.auth_bytes.starts_with(b"v="));
    assert_eq!(&*session.lock().principal(), "User:bob");
    let (outcome, _) = call_in(&b, "SASL", &session, 12, MetadataRequest::default()).await;
    assert!(matches!(outcome, Outcome::Respond), "{outcome:?}");

    let session = new_session(&b);
    let failed = scram_login(&b, &session, ScramMechanism::Sha256, "bob", "guess").await;
    assert_eq!(
        failed.error_code,
        ResponseError::SaslAuthenticationFailed.code()
    );
    assert_eq!(
        failed.error_message.as_deref(),
        Some(
            "Authentication failed during authentication due to invalid credentials with SASL \
             mechanism SCRAM-SHA-256"
        )
    );
    assert!(session.lock().closing());
    // SHA-512 was never set for bob: the same answer as a wrong password.
    let session = new_session(&b);
    let other = scram_login(&b, &session, ScramMechanism::Sha512, "bob", "bob-secret").await;
    assert_eq!(
        other.error_code,
        ResponseError::SaslAuthenticationFailed.code()
    );
}

#[tokio::test]
async fn nothing_but_api_versions_and_the_handshake_is_served_before_authentication() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = sasl_broker(d.path(), "");
    let session = new_session(&b);
    let (versions, _) = call_in(&b, "SASL", &session, 3, ApiVersionsRequest::default()).await;
    assert!(matches!(versions, Outcome::Respond));
    let (metadata, _) = call_in(&b, "SASL", &session, 12, MetadataRequest::default()).await;
    assert!(matches!(metadata, Outcome::Close(_)), "{metadata:?}");
    let session = new_session(&b);
    let early = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0a\0b"));
    let (outcome, _) = call_in(&b, "SASL", &session, 2, early).await;
    assert!(matches!(outcome, Outcome::Close(_)), "{outcome:?}");

    let session = new_session(&b);
    let unknown = handshake(&b, &session, "GSSAPI").await;
    assert_eq!(
        unknown.error_code,
        ResponseError::UnsupportedSaslMechanism.code()
    );
    let listed: Vec<&str> = unknown.mechanisms.iter().map(|m| &**m).collect();
    assert_eq!(listed, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(session.lock().closing());

    // On a listener without SASL, both SASL requests are answered ILLEGAL_SASL_STATE.
    let plain = parking_lot::Mutex::new(Session::new(None, None));
    let req = SaslHandshakeRequest::default().with_mechanism(s("PLAIN"));
    let (_, r) = call_in(&b, "PLAINTEXT", &plain, 1, req).await;
    assert_eq!(
        r.expect("answered").error_code,
        ResponseError::IllegalSaslState.code()
    );
}

#[tokio::test]
async fn the_sasl_user_is_the_principal_the_authorizer_checks() {
    let d = tempfile::tempdir().expect("tempdir");
    let extra = format!("authorizer.class.name={STANDARD_AUTHORIZER}\nsuper.users=User:alice\n");
    let b = sasl_broker(d.path(), &extra);
    let create = || {
        CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(kafka_protocol::messages::TopicName(s("made-by-alice")))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ])
    };
    let session = new_session(&b);
    assert_eq!(handshake(&b, &session, "PLAIN").await.error_code, 0);
    let login = token(&b, &session, b"\0alice\0alice-secret").await;
    assert_eq!(login.error_code, 0, "{:?}", login.error_message);
    assert_eq!(login.session_lifetime_ms, 0);
    let (_, r) = call_in(&b, "SASL", &session, 7, create()).await;
    assert_eq!(r.expect("answered").topics[0].error_code, 0);
    // Anyone else (ANONYMOUS, on the PLAINTEXT listener) is refused.
    let r = call(
        &b,
        7,
        create().with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(kafka_protocol::messages::TopicName(s("made-by-nobody")))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
    )
    .await;
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    // And alice's SCRAM admin calls pass the cluster check; ANONYMOUS's do not.
    let (_, described) = call_in(
        &b,
        "SASL",
        &session,
        0,
        DescribeUserScramCredentialsRequest::default(),
    )
    .await;
    assert_eq!(described.expect("answered").error_code, 0);
    let denied = call(&b, 0, DescribeUserScramCredentialsRequest::default()).await;
    assert_eq!(
        denied.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
}

#[tokio::test]
async fn scram_credential_changes_are_checked_as_kafka_checks_them() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = sasl_broker(d.path(), "");
    let m = ScramMechanism::Sha512;
    let r = call(
        &b,
        0,
        AlterUserScramCredentialsRequest::default()
            .with_upsertions(vec![
                upsertion("carol", m, "pw", 4096),
                upsertion("low", m, "pw", 1000),
                upsertion("high", m, "pw", 20000),
                upsertion("", m, "pw", 4096),
                upsertion("twice", m, "pw", 4096),
                upsertion("weird", m, "pw", 4096).with_mechanism(7),
            ])
            .with_deletions(vec![
                ScramCredentialDeletion::default()
                    .with_name(s("ghost"))
                    .with_mechanism(1),
                ScramCredentialDeletion::default()
                    .with_name(s("twice"))
                    .with_mechanism(2),
            ]),
    )
    .await;
    let got: Vec<(&str, i16, Option<&str>)> = r
        .results
        .iter()
        .map(|r| (&*r.user, r.error_code, r.error_message.as_deref()))
        .collect();
    let code = |e: ResponseError| e.code();
    assert_eq!(
        got,
        [
            (
                "ghost",
                code(ResponseError::ResourceNotFound),
                Some("Attempt to delete a user credential that does not exist")
            ),
            (
                "twice",
                code(ResponseError::DuplicateResource),
                Some("A user credential cannot be altered twice in the same request")
            ),
            ("carol", 0, None),
            (
                "low",
                code(ResponseError::UnacceptableCredential),
                Some("Too few iterations")
            ),
            (
                "high",
                code(ResponseError::UnacceptableCredential),
                Some("Too many iterations")
            ),
            (
                "",
                code(ResponseError::UnacceptableCredential),
                Some("Username must not be empty")
            ),
            (
                "weird",
                code(ResponseError::UnsupportedSaslMechanism),
                Some("Unknown SCRAM mechanism")
            ),
        ]
    );
    let d = call(
        &b,
        0,
        DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(s("carol")),
            UserName::default().with_name(s("nobody")),
            UserName::default().with_name(s("carol2")),
            UserName::default().with_name(s("carol2")),
        ])),
    )
    .await;
    assert_eq!(d.results.len(), 3);
    assert_eq!(d.results[0].credential_infos.len(), 1);
    assert_eq!(d.results[0].credential_infos[0].mechanism, 2);
    assert_eq!(d.results[0].credential_infos[0].iterations, 4096);
    assert_eq!(
        d.results[1].error_message.as_deref(),
        Some("Attempt to describe a user credential that does not exist: nobody")
    );
    assert_eq!(
        d.results[2].error_code,
        ResponseError::DuplicateResource.code()
    );
    // Deleting carol's only credential removes her.
    let r = call(
        &b,
        0,
        AlterUserScramCredentialsRequest::default().with_deletions(vec![
            ScramCredentialDeletion::default()
                .with_name(s("carol"))
                .with_mechanism(2),
        ]),
    )
    .await;
    assert_eq!(r.results[0].error_code, 0);
    let all = call(&b, 0, DescribeUserScramCredentialsRequest::default()).await;
    assert!(all.results.is_empty(), "{:?}", all.results);
}

#[test]
fn bootstrap_credentials_apply_once_and_deletions_stick() {
    let m = ScramMechanism::Sha256;
    let admin = ScramCredential::from_password(m, "admin-secret", 4096);
    let bootstrap = MetadataRecord::Bootstrap {
        scram: vec![("admin".into(), m, admin.clone())],
    };
    let mut image = MetadataImage::default();
    assert!(image.apply(&bootstrap));
    assert!(image.bootstrapped);
    assert_eq!(image.scram["admin"][&m], admin);
    assert!(image.apply(&MetadataRecord::RemoveScramCredential {
        user: "admin".into(),
        mechanism: m,
    }));
    assert!(image.scram.is_empty());
    // A controller starting later with the same bootstrap file changes nothing.
    assert!(!image.apply(&bootstrap));
    assert!(image.scram.is_empty());
    let json = serde_json::to_string(&image).expect("json");
    let back: MetadataImage = serde_json::from_str(&json).expect("back");
    assert_eq!(back, image);
}
