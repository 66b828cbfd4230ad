//! The SASL keys of a SASL_PLAINTEXT or SASL_SSL listener, in Kafka's names:
//! `sasl.enabled.mechanisms` (global, or `listener.name.<l>.sasl.enabled.mechanisms`), the
//! PLAIN users from `listener.name.<l>.plain.sasl.jaas.config` (Kafka's PlainLoginModule
//! `user_<name>="<password>"` options), and the node-wide `connections.max.reauth.ms`,
//! `connection.failed.authentication.delay.ms` and `sasl.server.max.receive.size`.

use std::collections::BTreeMap;

use gregor_client::jaas::{parse_jaas, JaasModule, OAUTHBEARER_MODULE, PLAIN_MODULE, SCRAM_MODULE};

use super::ssl::Secret;
use super::{ConfigError, Props};
use crate::sasl::Mechanism;

/// The node-wide keys this module reads (the per-listener ones are recognised by shape).
pub(super) const KEYS: &[&str] = &[
    "sasl.enabled.mechanisms",
    "connections.max.reauth.ms",
    "connection.failed.authentication.delay.ms",
    "sasl.server.max.receive.size",
    "sasl.oauthbearer.jwks.endpoint.url",
    "sasl.oauthbearer.expected.audience",
    "sasl.oauthbearer.expected.issuer",
    "sasl.oauthbearer.sub.claim.name",
    "sasl.oauthbearer.clock.skew.seconds",
    "sasl.oauthbearer.jwks.endpoint.refresh.ms",
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
];

/// Whether `rest` (a key after `listener.name.<l>.`) is a per-listener SASL key.
pub(super) fn is_listener_key(rest: &str) -> bool {
    rest == "sasl.enabled.mechanisms"
        || rest.ends_with(".sasl.jaas.config")
        || rest.ends_with(".sasl.server.callback.handler.class")
        || rest.starts_with("oauthbearer.sasl.oauthbearer.")
        || rest.ends_with(".connections.max.reauth.ms")
}

/// One SASL listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    /// The enabled mechanisms, in the configured order (SaslHandshake lists them so).
    pub mechanisms: Vec<Mechanism>,
    /// The PLAIN users and their passwords, when PLAIN is enabled.
    pub plain_users: BTreeMap<String, Secret>,
    /// How OAUTHBEARER tokens are validated, when OAUTHBEARER is enabled.
    pub oauthbearer: Option<crate::sasl::oauthbearer::Validation>,
    /// `connections.max.reauth.ms`: the session lifetime a client is told (KIP-368); 0 means
    /// sessions never expire.
    pub max_reauth_ms: i64,
    /// `connection.failed.authentication.delay.ms`: how long a failed authentication waits
    /// before its answer and the close, so guessing passwords is slow.
    pub failed_auth_delay_ms: u64,
    /// `sasl.server.max.receive.size`: the largest SASL token accepted.
    pub max_receive_size: usize,
}

/// The SASL settings of listener `name`.
pub(super) fn parse(p: &Props, name: &str) -> Result<SaslConfig, ConfigError> {
    let prefix = format!("listener.name.{}.", name.to_ascii_lowercase());
    let own = format!("{prefix}sasl.enabled.mechanisms");
    let (key, value) = match p.get(&own) {
        Some(v) => (own.as_str(), v),
        // Kafka's default is GSSAPI, which Gregor does not serve: refused below, naming it.
        None => (
            "sasl.enabled.mechanisms",
            p.get("sasl.enabled.mechanisms").unwrap_or("GSSAPI"),
        ),
    };
    let mut mechanisms = Vec::new();
    for m in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let mechanism = Mechanism::from_name(m).ok_or_else(|| {
            Props::invalid(
                key,
                value,
                format!(
                    "listener {name} enables {m}, which Gregor does not serve; enable PLAIN, \
                     SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER{}",
                    if m == "GSSAPI" {
                        " (GSSAPI is Kafka's default: set sasl.enabled.mechanisms)"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    if mechanisms.is_empty() {
        return Err(Props::invalid(
            key,
            value,
            format!("listener {name} enables no SASL mechanism"),
        ));
    }
    let mut plain_users = BTreeMap::new();
    let mut oauthbearer = None;
    for m in &mechanisms {
        let jaas_key = format!("{prefix}{}.sasl.jaas.config", m.name().to_ascii_lowercase());
        let jaas = p.get(&jaas_key).filter(|v| !v.is_empty());
        match (m, jaas) {
            (Mechanism::Plain, None) => {
                return Err(Props::invalid(
                    &jaas_key,
                    "",
                    format!(
                        "listener {name} enables PLAIN, whose users come from this key: set it \
                         to `{PLAIN_MODULE} required user_<name>=\"<password>\";`"
                    ),
                ))
            }
            (Mechanism::Plain, Some(text)) => {
                let module = parse_jaas(text).map_err(|e| hidden(&jaas_key, e))?;
                expect_module(&jaas_key, &module, PLAIN_MODULE)?;
                plain_users = self::plain_users(&module);
            }
            (Mechanism::Scram(_), Some(text)) => {
                let module = parse_jaas(text).map_err(|e| hidden(&jaas_key, e))?;
                expect_module(&jaas_key, &module, SCRAM_MODULE)?;
            }
            (Mechanism::Scram(_), None) => {}
            (Mechanism::OAuthBearer, jaas) => {
                oauthbearer = Some(oauthbearer_validator(p, &prefix, name, &jaas_key, jaas)?);
            }
        }
    }
    Ok(SaslConfig {
        mechanisms,
        plain_users,
        oauthbearer,
        max_reauth_ms: p.num("connections.max.reauth.ms", 0, 0)?,
        failed_auth_delay_ms: p.num("connection.failed.authentication.delay.ms", 100, 0)?,
        max_receive_size: p.num("sasl.server.max.receive.size", 524_288, 1)?,
    })
}

/// Kafka's secured OAUTHBEARER validator class.
const JWKS_HANDLER: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler";

/// OAUTHBEARER's validation on listener `name`: Kafka's default, the unsecured validator, with
/// the `unsecuredValidator*` options of the listener's OAuthBearerLoginModule entry (which
/// Kafka requires), or, with Kafka's OAuthBearerValidatorCallbackHandler as the listener's
/// server callback handler, signed JWTs against the JWKS `sasl.oauthbearer.jwks.endpoint.url`
/// names.
fn oauthbearer_validator(
    p: &Props,
    prefix: &str,
    name: &str,
    jaas_key: &str,
    jaas: Option<&str>,
) -> Result<crate::sasl::oauthbearer::Validation, ConfigError> {
    use crate::sasl::oauthbearer::{UnsecuredValidator, Validation};
    let Some(text) = jaas else {
        return Err(Props::invalid(
            jaas_key,
            "",
            format!(
                "listener {name} enables OAUTHBEARER, which needs this key (as in Kafka): set it \
                 to `{OAUTHBEARER_MODULE} required;`"
            ),
        ));
    };
    let module = parse_jaas(text).map_err(|e| hidden(jaas_key, e))?;
    expect_module(jaas_key, &module, OAUTHBEARER_MODULE)?;
    let handler_key = format!("{prefix}oauthbearer.sasl.server.callback.handler.class");
    match p.get(&handler_key) {
        None => {
            let options: BTreeMap<String, String> = module.options.iter().cloned().collect();
            UnsecuredValidator::from_options(&options)
                .map(Validation::Unsecured)
                .map_err(|e| Props::invalid(jaas_key, "[hidden]", e))
        }
        Some(JWKS_HANDLER) => Ok(Validation::Jwks {
            settings: jwks_settings(p, prefix, name, &module.options)?,
            loaded: None,
        }),
        Some(class) => Err(Props::invalid(
            &handler_key,
            class,
            format!(
                "listener {name}: Gregor validates OAUTHBEARER tokens with Kafka's default \
                 unsecured validator or with {JWKS_HANDLER}"
            ),
        )),
    }
}

/// The JWKS settings of listener `name` (key prefix `prefix`), whose OAUTHBEARER JAAS config
/// has `options` (an https endpoint's trust store comes from their `ssl.*` ones, as in Kafka).
fn jwks_settings(
    p: &Props,
    prefix: &str,
    name: &str,
    options: &[(String, String)],
) -> Result<crate::sasl::oauthbearer::JwksSettings, ConfigError> {
    // Kafka reads the listener's OAUTHBEARER-prefixed key first, then the global one.
    let own = |key: &str| {
        let scoped = format!("{prefix}oauthbearer.{key}");
        match p.get(&scoped) {
            Some(v) => Some((scoped, v)),
            None => p.get(key).map(|v| (key.to_string(), v)),
        }
    };
    const URL: &str = "sasl.oauthbearer.jwks.endpoint.url";
    let (url_key, url) = own(URL).ok_or_else(|| {
        ConfigError::Missing(format!(
            "{URL} (listener {name} validates OAUTHBEARER tokens against a JWKS)"
        ))
    })?;
    if !["file:", "http://", "https://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        return Err(Props::invalid(
            &url_key,
            url,
            "expected a file:, http:// or https:// URL",
        ));
    }
    let number = |key: &str, default: u64| match own(key) {
        None => Ok(default),
        Some((k, v)) => v
            .parse::<u64>()
            .map_err(|_| Props::invalid(&k, v, "expected a whole number, 0 or more")),
    };
    Ok(crate::sasl::oauthbearer::JwksSettings {
        url: url.to_string(),
        audience: own("sasl.oauthbearer.expected.audience")
            .map(|(key, _)| p.list(&key))
            .unwrap_or_default(),
        issuer: own("sasl.oauthbearer.expected.issuer").map(|(_, v)| v.to_string()),
        sub_claim: own("sasl.oauthbearer.sub.claim.name")
            .map_or_else(|| "sub".to_string(), |(_, v)| v.to_string()),
        clock_skew_s: number("sasl.oauthbearer.clock.skew.seconds", 30)? as i64,
        refresh_ms: number("sasl.oauthbearer.jwks.endpoint.refresh.ms", 3_600_000)?,
        retry_backoff_ms: number("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", 100)?,
        retry_backoff_max_ms: number(
            "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
            10_000,
        )?,
        trust: options
            .iter()
            .filter(|(k, _)| k.starts_with("ssl."))
            .map(|(k, v)| (k.clone(), super::ssl::Secret::new(v.clone())))
            .collect(),
    })
}

/// A refusal of a JAAS key: the value holds passwords, so it is never quoted.
fn hidden(key: &str, reason: String) -> ConfigError {
    Props::invalid(key, "[hidden]", reason)
}

fn expect_module(key: &str, module: &JaasModule, class: &str) -> Result<(), ConfigError> {
    if module.class == class {
        Ok(())
    } else {
        Err(hidden(
            key,
            format!("names login module {}; expected {class}", module.class),
        ))
    }
}

/// The PLAIN users of a login module: each `user_<name>` option is that user's password.
fn plain_users(module: &JaasModule) -> BTreeMap<String, Secret> {
    module
        .options
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix("user_")?.to_string(),
                Secret::new(v.as_str()),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_properties, Config};
    use crate::sasl::oauthbearer::Validation;
    use crate::sasl::scram::ScramMechanism;

    const BASE: &str = "node.id=1\nlisteners=PLAINTEXT://:9092,SASL://:9094\n\
                        listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL:SASL_PLAINTEXT\n";

    fn config(extra: &str) -> Result<Config, ConfigError> {
        Config::from_properties(parse_properties(&format!("{BASE}{extra}")))
    }

    fn err(extra: &str) -> String {
        config(extra).expect_err("refused").to_string()
    }

    #[test]
    fn plain_users_come_from_the_listeners_jaas_config() {
        let c = config(
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512\n\
             listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.\
             PlainLoginModule required username=\"admin\" password=\"admin-secret\" \
             user_admin=\"admin-secret\" user_alice=\"a;b c\";\n",
        )
        .expect("valid");
        let sasl = &c.sasl_listeners["SASL"];
        assert_eq!(
            sasl.mechanisms,
            [Mechanism::Plain, Mechanism::Scram(ScramMechanism::Sha512)]
        );
        assert_eq!(sasl.plain_users["alice"].expose(), "a;b c");
        assert_eq!(sasl.plain_users.len(), 2);
        assert_eq!(sasl.max_reauth_ms, 0);
        assert_eq!(sasl.failed_auth_delay_ms, 100);
        assert_eq!(sasl.max_receive_size, 524_288);
    }

    #[test]
    fn kafkas_gssapi_default_is_refused_with_what_to_set() {
        let e = err("");
        assert!(e.contains("GSSAPI is Kafka's default"), "{e}");
        let e = err("listener.name.sasl.sasl.enabled.mechanisms=OAUTHBEARER\n");
        assert!(
            e.contains("enables OAUTHBEARER, which needs this key"),
            "{e}"
        );
    }

    #[test]
    fn oauthbearer_takes_the_unsecured_validators_options_or_kafkas_jwks_handler() {
        let jaas = "listener.name.sasl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.\
                    security.oauthbearer.OAuthBearerLoginModule required \
                    unsecuredValidatorRequiredScope=\"read write\";\n";
        let c = config(&format!("sasl.enabled.mechanisms=OAUTHBEARER\n{jaas}")).expect("valid");
        let Some(Validation::Unsecured(v)) = c.sasl_listeners["SASL"].oauthbearer.clone() else {
            panic!("the unsecured validator");
        };
        assert_eq!(v.required_scope, ["read", "write"]);
        assert_eq!(v.principal_claim, "sub");
        let handler = "listener.name.sasl.oauthbearer.sasl.server.callback.handler.class=org.\
                       apache.kafka.common.security.oauthbearer.\
                       OAuthBearerValidatorCallbackHandler\n";
        let e = err(&format!(
            "sasl.enabled.mechanisms=OAUTHBEARER\n{jaas}{handler}"
        ));
        assert!(e.contains("sasl.oauthbearer.jwks.endpoint.url"), "{e}");
        let e = err(&format!(
            "sasl.enabled.mechanisms=OAUTHBEARER\n{jaas}{handler}\
             sasl.oauthbearer.jwks.endpoint.url=ftp://idp/jwks\n"
        ));
        assert!(
            e.contains("expected a file:, http:// or https:// URL"),
            "{e}"
        );
        let e = err(&format!(
            "sasl.enabled.mechanisms=OAUTHBEARER\n{jaas}{handler}\
             sasl.oauthbearer.jwks.endpoint.url=https://idp/jwks\n\
             sasl.oauthbearer.jwks.endpoint.refresh.ms=soon\n"
        ));
        assert!(
            e.contains("sasl.oauthbearer.jwks.endpoint.refresh.ms"),
            "{e}"
        );
        let c = config(&format!(
            "sasl.enabled.mechanisms=OAUTHBEARER\n{jaas}{handler}\
             listener.name.sasl.oauthbearer.sasl.oauthbearer.jwks.endpoint.url=file:///k.json\n\
             sasl.oauthbearer.expected.audience=kafka, other\n"
        ))
        .expect("JWKS");
        let Some(Validation::Jwks {
            settings,
            loaded: None,
        }) = c.sasl_listeners["SASL"].oauthbearer.clone()
        else {
            panic!("the JWKS validator, not loaded yet");
        };
        assert_eq!(settings.url, "file:///k.json");
        assert_eq!(settings.audience, ["kafka", "other"]);
        assert_eq!(settings.clock_skew_s, 30);
        assert_eq!(
            (
                settings.refresh_ms,
                settings.retry_backoff_ms,
                settings.retry_backoff_max_ms
            ),
            (3_600_000, 100, 10_000)
        );
    }

    #[test]
    fn plain_without_its_jaas_config_is_refused_naming_the_key() {
        let e = err("sasl.enabled.mechanisms=PLAIN\n");
        assert!(
            e.contains("listener.name.sasl.plain.sasl.jaas.config"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_jaas_config_is_refused_without_quoting_it() {
        for jaas in [
            "org.apache.kafka.common.security.plain.PlainLoginModule required user_a=\"pw\"",
            "org.apache.kafka.common.security.plain.PlainLoginModule user_a=\"pw\";",
            "com.example.Other required user_a=\"pw\";",
            "org.apache.kafka.common.security.plain.PlainLoginModule required user_a=\"pw;",
        ] {
            let e = err(&format!(
                "sasl.enabled.mechanisms=PLAIN\nlistener.name.sasl.plain.sasl.jaas.config={jaas}\n"
            ));
            assert!(!e.contains("pw"), "{e}");
            assert!(e.contains("sasl.jaas.config"), "{e}");
        }
    }

    #[test]
    fn scram_needs_no_jaas_config_but_a_wrong_module_is_refused() {
        let c = config("sasl.enabled.mechanisms=SCRAM-SHA-256\n").expect("valid");
        assert!(c.sasl_listeners["SASL"].plain_users.is_empty());
        let e = err("sasl.enabled.mechanisms=SCRAM-SHA-256\n\
             listener.name.sasl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.\
             plain.PlainLoginModule required;\n");
        assert!(
            e.contains("expected org.apache.kafka.common.security.scram"),
            "{e}"
        );
    }
}
