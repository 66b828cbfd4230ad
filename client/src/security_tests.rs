//! Client properties into [`ClientSecurity`]: what is accepted, and each refusal naming its
//! key without quoting a password.

use super::*;
use crate::properties::parse_properties;
use crate::scram::ScramMechanism;

const SCRAM_LOGIN: &str = "org.apache.kafka.common.security.scram.ScramLoginModule required \
                           username=\"admin\" password=\"s3cret-pw\";";

fn parse(text: &str) -> Result<ClientSecurity, SecurityError> {
    ClientSecurity::from_properties(&parse_properties(text))
}

/// The refusal of `text`, checked to name `key` and never to print the password.
fn refusal(text: &str, key: &str) -> String {
    let e = parse(text).expect_err(text).to_string();
    assert!(e.starts_with(&format!("{key}: ")), "{e}");
    assert!(!e.contains("s3cret-pw"), "{e}");
    e
}

#[test]
fn no_properties_is_plaintext() {
    let s = parse("# nothing\nsome.unknown.key=1\n").expect("valid");
    assert_eq!(s.protocol(), SecurityProtocol::Plaintext);
    assert!(s.tls().is_none() && s.sasl().is_none());
}

#[test]
fn sasl_plaintext_with_scram_takes_the_login_from_the_jaas_config() {
    let s = parse(&format!(
        "security.protocol=sasl_plaintext\nsasl.mechanism=SCRAM-SHA-512\n\
         sasl.jaas.config={SCRAM_LOGIN}\n"
    ))
    .expect("valid");
    assert_eq!(s.protocol(), SecurityProtocol::SaslPlaintext);
    let sasl = s.sasl().expect("sasl");
    assert_eq!(sasl.mechanism, Mechanism::Scram(ScramMechanism::Sha512));
    assert_eq!(sasl.username, "admin");
    assert_eq!(sasl.password(), "s3cret-pw");
    assert!(s.tls().is_none());
    assert!(!format!("{s:?}").contains("s3cret-pw"));
}

#[test]
fn an_unknown_protocol_is_refused() {
    let e = refusal("security.protocol=TLS\n", "security.protocol");
    assert!(e.contains("SASL_SSL"), "{e}");
}

#[test]
fn kafkas_gssapi_default_is_refused_saying_what_to_set() {
    let e = refusal(
        &format!("security.protocol=SASL_PLAINTEXT\nsasl.jaas.config={SCRAM_LOGIN}\n"),
        "sasl.mechanism",
    );
    assert!(e.contains("GSSAPI, Kerberos, is Kafka's default"), "{e}");
    let e = refusal(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n",
        "sasl.mechanism",
    );
    assert!(e.contains("GSSAPI is not supported"), "{e}");
}

#[test]
fn oauthbearer_logs_in_with_an_unsecured_token_naming_its_sub_claim() {
    let base = "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n";
    let e = refusal(
        &format!("{base}sasl.jaas.config={SCRAM_LOGIN}\n"),
        "sasl.jaas.config",
    );
    assert!(
        e.contains("needs org.apache.kafka.common.security.oauthbearer"),
        "{e}"
    );
    let p = crate::properties::parse_properties(&format!(
        "{base}sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule \
         required unsecuredLoginStringClaim_sub=\"alice\" unsecuredLoginListClaim_scope=\"|a|b\";\n"
    ));
    let s = ClientSecurity::from_properties(&p).expect("OAUTHBEARER");
    let sasl = s.sasl().expect("sasl");
    assert_eq!(sasl.username, "alice");
    assert_eq!(sasl.scope(), ["a", "b"]);
    let token = crate::sasl::unsecured_token("alice", sasl.scope(), 60);
    assert!(
        token.starts_with("eyJhbGciOiJub25lIn0.") && token.ends_with('.'),
        "{token}"
    );
}

#[test]
fn sasl_login_refusals_name_the_jaas_key_without_quoting_it() {
    let base = "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n";
    let e = refusal(base, "sasl.jaas.config");
    assert!(e.contains("required"), "{e}");
    let e = refusal(
        &format!("{base}sasl.jaas.config={SCRAM_LOGIN}\n"),
        "sasl.jaas.config",
    );
    assert!(
        e.contains("needs org.apache.kafka.common.security.plain"),
        "{e}"
    );
    let e = refusal(
        &format!(
            "{base}sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
             required password=\"s3cret-pw\";\n"
        ),
        "sasl.jaas.config",
    );
    assert!(e.contains("no username"), "{e}");
    refusal(
        &format!(
            "{base}sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
             required username=\"u\" password=\"s3cret-pw\"\n"
        ),
        "sasl.jaas.config",
    );
}

#[test]
fn tls_without_a_trust_store_is_refused() {
    let e = refusal("security.protocol=SSL\n", "ssl.truststore.location");
    assert!(e.contains("no default trust store"), "{e}");
    refusal(
        "security.protocol=SSL\nssl.truststore.location=/a\nssl.truststore.certificates=x\n",
        "ssl.truststore.location",
    );
}

#[test]
fn store_refusals_name_their_keys() {
    let e = refusal(
        "security.protocol=SSL\nssl.truststore.type=JKS\nssl.truststore.location=/a\n",
        "ssl.truststore.type",
    );
    assert!(e.contains("keytool"), "{e}");
    let e = refusal(
        "security.protocol=SSL\nssl.truststore.location=/no/such/ca.pem\n",
        "ssl.truststore.location",
    );
    assert!(e.contains("/no/such/ca.pem"), "{e}");
    refusal(
        "security.protocol=SSL\nssl.truststore.type=PKCS12\nssl.truststore.certificates=x\n",
        "ssl.truststore.certificates",
    );
    refusal(
        "security.protocol=SSL\nssl.truststore.certificates=not pem\n",
        "ssl.truststore.certificates",
    );
}

#[test]
fn a_bad_endpoint_identification_algorithm_is_refused() {
    let e = refusal(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n\
         sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"u\" password=\"s3cret-pw\";\nssl.endpoint.identification.algorithm=ldap\n",
        "ssl.endpoint.identification.algorithm",
    );
    assert!(e.contains("expected https or empty"), "{e}");
}

#[test]
fn an_empty_trust_store_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "").expect("write");
    refusal(
        &format!(
            "security.protocol=SSL\nssl.truststore.location={}\n",
            ca.display()
        ),
        "ssl.truststore.location",
    );
}

#[test]
fn an_unreadable_properties_file_names_the_file() {
    let e = ClientSecurity::from_file(Path::new("/no/such/client.properties"))
        .expect_err("missing")
        .to_string();
    assert!(e.contains("/no/such/client.properties"), "{e}");
}
