//! SASL/OAUTHBEARER (RFC 7628) as Kafka's OAuthBearerSaslServer serves it, with the token
//! checked as Kafka's default OAuthBearerUnsecuredValidatorCallbackHandler checks it: an
//! unsecured JWS (`alg` none, no signature) whose claims name the principal (`sub`), the
//! expiry (`exp`, which is also the session's end) and optionally the scope.
//!
//! The client's first message is `n,[a=<authzid>],\x01auth=Bearer <token>\x01[k=v\x01]*\x01`.
//! A token that fails validation is answered, not refused: the server sends the JSON error
//! (`{"status":"invalid_token"}`), the client acknowledges it with a lone `\x01`, and only
//! then does the exchange fail with that JSON as the message. Why a token failed is logged,
//! never sent. Pure: the caller supplies the time.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use super::AuthFailure;

/// The unsecured validator's options, from the listener's OAuthBearerLoginModule JAAS entry
/// (Kafka's `unsecuredValidator*` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsecuredValidator {
    /// `unsecuredValidatorPrincipalClaimName` (default `sub`).
    pub principal_claim: String,
    /// `unsecuredValidatorScopeClaimName` (default `scope`).
    pub scope_claim: String,
    /// `unsecuredValidatorRequiredScope`: space-separated scopes every token must carry.
    pub required_scope: Vec<String>,
    /// `unsecuredValidatorAllowableClockSkewMs` (default 0).
    pub clock_skew_ms: i64,
}

impl Default for UnsecuredValidator {
    fn default() -> Self {
        UnsecuredValidator {
            principal_claim: "sub".into(),
            scope_claim: "scope".into(),
            required_scope: Vec::new(),
            clock_skew_ms: 0,
        }
    }
}

impl UnsecuredValidator {
    /// The validator the JAAS `options` describe; an error names the bad option.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut v = UnsecuredValidator::default();
        let get = |k: &str| options.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        if let Some(c) = get("unsecuredValidatorPrincipalClaimName") {
            v.principal_claim = c.to_string();
        }
        if let Some(c) = get("unsecuredValidatorScopeClaimName") {
            v.scope_claim = c.to_string();
        }
        if let Some(s) = get("unsecuredValidatorRequiredScope") {
            v.required_scope = s.split_whitespace().map(str::to_string).collect();
        }
        if let Some(ms) = get("unsecuredValidatorAllowableClockSkewMs") {
            v.clock_skew_ms = ms.parse().map_err(|_| {
                format!("unsecuredValidatorAllowableClockSkewMs: {ms} is not a number")
            })?;
            if v.clock_skew_ms < 0 {
                return Err(format!(
                    "Allowable clock skew millis must not be negative: {ms}"
                ));
            }
        }
        Ok(v)
    }
}

/// Where a listener's JWKS comes from and what its tokens must say (Kafka's
/// `sasl.oauthbearer.*` keys), for [`super::jwks_endpoint::JwksKeys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// `sasl.oauthbearer.jwks.endpoint.url`: a `file:`, `http:` or `https:` URL.
    pub url: String,
    /// `sasl.oauthbearer.expected.audience`.
    pub audience: Vec<String>,
    /// `sasl.oauthbearer.expected.issuer`.
    pub issuer: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name`.
    pub sub_claim: String,
    /// `sasl.oauthbearer.clock.skew.seconds`.
    pub clock_skew_s: i64,
    /// `sasl.oauthbearer.jwks.endpoint.refresh.ms` (an http(s) endpoint's).
    pub refresh_ms: u64,
    /// `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms`.
    pub retry_backoff_ms: u64,
    /// `sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms`.
    pub retry_backoff_max_ms: u64,
    /// The `ssl.*` options of the listener's OAUTHBEARER JAAS config: an https endpoint's
    /// trust store, as Kafka reads it (kept as secrets: a store password is among them).
    pub trust: BTreeMap<String, crate::config::ssl::Secret>,
}

/// How a listener validates OAUTHBEARER tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// Kafka's default: unsecured JWS.
    Unsecured(UnsecuredValidator),
    /// Kafka's OAuthBearerValidatorCallbackHandler: JWTs signed by a JWKS key, the keys loaded
    /// when the listener starts (and an http(s) endpoint's kept current).
    Jwks {
        /// The keys' source and the claims expected.
        settings: JwksSettings,
        /// The loaded keys (`None` until the listener starts).
        loaded: Option<std::sync::Arc<super::jwks_endpoint::JwksKeys>>,
    },
}

impl Validation {
    /// Checks `token` at `now_ms`.
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<Validated, Invalid> {
        match self {
            Validation::Unsecured(v) => v.validate(token, now_ms),
            Validation::Jwks {
                loaded: Some(v), ..
            } => v.validate(token, now_ms),
            Validation::Jwks { loaded: None, .. } => Err(Invalid::token("the JWKS was not loaded")),
        }
    }

    /// Loads the JWKS of a `Jwks` validation (blocking; an http(s) endpoint is fetched on the
    /// runtime this is called from); `Unsecured` has nothing to load.
    pub fn load(&mut self) -> Result<(), String> {
        if let Validation::Jwks { settings, loaded } = self {
            *loaded = Some(std::sync::Arc::new(super::jwks_endpoint::JwksKeys::load(
                settings,
            )?));
        }
        Ok(())
    }
}

/// The parts of a client's first message Gregor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// `a=<authzid>`, when given.
    pub authzid: Option<String>,
    /// The bearer token.
    pub token: String,
}

/// Parses the client's first message; a malformed one is a protocol failure (Kafka's generic
/// message).
pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, AuthFailure> {
    let bad = |why: &str| {
        AuthFailure::protocol(format!("Invalid OAUTHBEARER client first message: {why}"))
    };
    let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
    let rest = text
        .strip_prefix("n,")
        .ok_or_else(|| bad("GS2 header must be 'n,'"))?;
    let (authzid, rest) = rest
        .split_once(",\x01")
        .ok_or_else(|| bad("no GS2 separator"))?;
    let authzid = match authzid {
        "" => None,
        a => Some(
            a.strip_prefix("a=")
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad("malformed authorization id"))?
                .to_string(),
        ),
    };
    let pairs = rest
        .strip_suffix('\x01')
        .ok_or_else(|| bad("not terminated"))?;
    let mut auth = None;
    for pair in pairs.split('\x01').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("malformed key=value"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad("malformed extension key"));
        }
        if key == "auth" {
            auth = Some(value);
        }
    }
    let auth = auth.ok_or_else(|| bad("'auth' not specified"))?;
    let (scheme, token) = auth
        .split_once(' ')
        .ok_or_else(|| bad("invalid 'auth' format"))?;
    let token = token.trim_start_matches(' ');
    let token_chars = |c: char| c.is_ascii_alphanumeric() || "-_~+/.".contains(c);
    let body = token.trim_end_matches('=');
    if !scheme.eq_ignore_ascii_case("bearer") || body.is_empty() || !body.chars().all(token_chars) {
        return Err(bad("invalid 'auth' format"));
    }
    Ok(ClientFirst {
        authzid,
        token: token.to_string(),
    })
}

/// A token that passed: who it names and when it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The principal claim's value (the user name).
    pub principal: String,
    /// `exp`, in milliseconds since the epoch.
    pub expires_ms: i64,
}

/// A token that failed: what the client is sent (`status`, and the required scope for
/// `insufficient_scope`) and why (for the log only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `invalid_token` or `insufficient_scope`.
    pub status: &'static str,
    /// The required scope, as Kafka prints a list (`[a, b]`), for `insufficient_scope`.
    pub scope: Option<String>,
    /// Why, in Kafka's words; logged, never sent.
    pub reason: String,
}

impl Invalid {
    /// An `invalid_token` refusal for `reason`.
    pub fn token(reason: impl Into<String>) -> Invalid {
        Invalid {
            status: "invalid_token",
            scope: None,
            reason: reason.into(),
        }
    }

    /// The JSON the client is sent, spaced as Kafka writes it.
    pub fn json(&self) -> String {
        let quote = |s: &str| Value::String(s.to_string()).to_string();
        match &self.scope {
            None => format!("{{\"status\":{}}}", quote(self.status)),
            Some(scope) => format!(
                "{{\"status\":{}, \"scope\":{}}}",
                quote(self.status),
                quote(scope)
            ),
        }
    }
}

/// Decodes one base64url part (the standard alphabet is accepted too; padding optional).
fn decode_part(part: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let part = part.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(part)
        .or_else(|_| STANDARD_NO_PAD.decode(part))
        .ok()
}

fn json_part(part: &str) -> Result<serde_json::Map<String, Value>, Invalid> {
    let bytes =
        decode_part(part).ok_or_else(|| Invalid::token("malformed Base64 URL encoded value"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Invalid::token("malformed JSON")),
    }
}

/// A claim as a number, or why not.
fn number(claims: &serde_json::Map<String, Value>, name: &str) -> Result<Option<f64>, Invalid> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(Invalid::token(format!(
            "The '{name}' claim was not of type Number: {}",
            type_name(other)
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "String",
        Value::Number(_) => "Number",
        Value::Bool(_) => "Boolean",
        Value::Array(_) => "List",
        Value::Object(_) => "Map",
        Value::Null => "Null",
    }
}

impl UnsecuredValidator {
    /// Checks an unsecured JWS at `now_ms` (milliseconds since the epoch).
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<Validated, Invalid> {
        if token.contains("..") {
            return Err(Invalid::token(
                "Malformed compact serialization contains '..'",
            ));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err(Invalid::token(
                "Unsecured JWS compact serializations must have 3 dot-separated Base64URL-encoded values",
            ));
        };
        let header = json_part(header)?;
        let claims = json_part(payload)?;
        if header.get("alg").and_then(Value::as_str) != Some("none") {
            return Err(Invalid::token(
                "Unsecured JWS must have 'none' for an algorithm",
            ));
        }
        if !signature.is_empty() {
            return Err(Invalid::token(
                "Unsecured JWS must not contain a digital signature",
            ));
        }
        let scope = self.scope(&claims)?;
        let exp =
            number(&claims, "exp")?.ok_or_else(|| Invalid::token("No expiration time in JWT"))?;
        let principal = match claims.get(&self.principal_claim) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(Invalid::token(format!(
                    "No principal name in JWT claim: {}",
                    self.principal_claim
                )))
            }
            Some(other) => {
                return Err(Invalid::token(format!(
                    "The '{}' claim was not of type String: {}",
                    self.principal_claim,
                    type_name(other)
                )))
            }
        };
        let skew = self.clock_skew_ms;
        let iat = number(&claims, "iat")?;
        // NumericDates are compared in whole milliseconds: a client's `iat` of "now" with
        // sub-millisecond digits must not read as the future within the same millisecond.
        let ms = |seconds: f64| (seconds * 1000.0).round() as i64;
        if let Some(iat) = iat {
            if ms(iat) > now_ms + skew {
                return Err(Invalid::token(format!(
                    "The Issued At value ({iat} seconds) was after the indicated time ({now_ms} \
                     ms) plus allowable clock skew ({skew} ms)"
                )));
            }
        }
        if now_ms - skew >= ms(exp) {
            return Err(Invalid::token(format!(
                "The indicated time ({now_ms} ms) minus allowable clock skew ({skew} ms) was on \
                 or after the Expiration Time value ({exp} seconds)"
            )));
        }
        if iat.is_some_and(|iat| exp <= iat) {
            return Err(Invalid::token(format!(
                "The Expiration Time time ({exp} seconds) was not after the Issued At time"
            )));
        }
        if let Some(missing) = self.required_scope.iter().find(|r| !scope.contains(*r)) {
            return Err(Invalid {
                status: "insufficient_scope",
                scope: Some(format!("[{}]", self.required_scope.join(", "))),
                reason: format!("The provided scope was missing a required scope ({missing})"),
            });
        }
        Ok(Validated {
            principal,
            expires_ms: ms(exp),
        })
    }

    /// The token's scope claim: a string is one scope, a list its trimmed non-blank items.
    fn scope(&self, claims: &serde_json::Map<String, Value>) -> Result<Vec<String>, Invalid> {
        match claims.get(&self.scope_claim) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.trim().to_string()]),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.trim().to_string(),
                    other => other.to_string(),
                })
                .filter(|s| !s.is_empty())
                .collect()),
            Some(other) => Err(Invalid::token(format!(
                "The '{}' claim was not of type List: {}",
                self.scope_claim,
                type_name(other)
            ))),
        }
    }
}

/// An unsecured JWS with `claims` (the token Kafka's and librdkafka's unsecured logins make).
pub fn unsecured_token(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000_000;

    fn first(token: &str) -> Vec<u8> {
        format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
    }

    #[test]
    fn the_client_first_message_gives_the_token_and_authzid() {
        let parsed = parse_client_first(&first("abc.def.")).expect("parsed");
        assert_eq!(parsed.token, "abc.def.");
        assert_eq!(parsed.authzid, None);
        let with = b"n,a=alice,\x01traceId=7\x01auth=bearer  x.y.\x01\x01";
        let parsed = parse_client_first(with).expect("extensions and authzid");
        assert_eq!(
            (parsed.authzid.as_deref(), parsed.token.as_str()),
            (Some("alice"), "x.y.")
        );
        for bad in [
            &b"y,,\x01auth=Bearer x\x01\x01"[..],
            b"n,,\x01traceId=7\x01\x01",
            b"n,,\x01auth=Basic x\x01\x01",
            b"n,,\x01auth=Bearer x",
        ] {
            let e = parse_client_first(bad).expect_err("malformed");
            assert!(e.protocol_error, "{bad:?}");
        }
    }

    #[test]
    fn a_valid_unsecured_token_names_its_principal_and_expiry_in_exponent_form_too() {
        let v = UnsecuredValidator::default();
        // The Java client writes NumericDates as Double.toString does.
        let token = "eyJhbGciOiJub25lIn0.".to_string()
            + &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"exp":1.8000036E9,"iat":1.7999999E9,"sub":"alice"}"#)
            + ".";
        let ok = v.validate(&token, NOW).expect("valid");
        assert_eq!(ok.principal, "alice");
        assert_eq!(ok.expires_ms, 1_800_003_600_000);
        let librdkafka =
            unsecured_token(&json!({"sub":"bob","iat":1799999999.5,"exp":1800000100.25}));
        assert_eq!(
            v.validate(&librdkafka, NOW).expect("valid").expires_ms,
            1_800_000_100_250
        );
    }

    #[test]
    fn each_refusal_is_invalid_token_with_kafkas_reason() {
        let v = UnsecuredValidator::default();
        let cases = [
            (
                json!({"sub":"a","exp":1_799_999_999}),
                "was on or after the Expiration Time",
            ),
            (json!({"sub":"a"}), "No expiration time in JWT"),
            (
                json!({"exp":1_900_000_000}),
                "No principal name in JWT claim: sub",
            ),
            (
                json!({"sub":7,"exp":1_900_000_000}),
                "not of type String: Number",
            ),
            (
                json!({"sub":"a","exp":"soon"}),
                "not of type Number: String",
            ),
            (
                json!({"sub":"a","exp":1_900_000_000,"iat":1_850_000_000}),
                "Issued At",
            ),
        ];
        for (claims, reason) in cases {
            let e = v
                .validate(&unsecured_token(&claims), NOW)
                .expect_err("refused");
            assert_eq!(e.json(), r#"{"status":"invalid_token"}"#);
            assert!(e.reason.contains(reason), "{claims}: {}", e.reason);
        }
        let signed = unsecured_token(&json!({"sub":"a","exp":1_900_000_000})) + "c2ln";
        assert!(v
            .validate(&signed, NOW)
            .expect_err("signed")
            .reason
            .contains("signature"));
        let rs256 = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"sub":"a","exp":1900000000}"#)
        );
        assert!(v
            .validate(&rs256, NOW)
            .expect_err("alg")
            .reason
            .contains("'none'"));
        assert!(v.validate("a.b", NOW).is_err());
    }

    #[test]
    fn a_missing_required_scope_is_insufficient_scope_listing_what_is_required() {
        let options = BTreeMap::from([
            (
                "unsecuredValidatorRequiredScope".to_string(),
                "read write".to_string(),
            ),
            (
                "unsecuredValidatorAllowableClockSkewMs".to_string(),
                "5000".to_string(),
            ),
        ]);
        let v = UnsecuredValidator::from_options(&options).expect("options");
        let token = unsecured_token(&json!({"sub":"a","exp":1_800_000_001,"scope":["read"]}));
        let e = v.validate(&token, NOW).expect_err("scope");
        assert_eq!(
            e.json(),
            r#"{"status":"insufficient_scope", "scope":"[read, write]"}"#
        );
        let token =
            unsecured_token(&json!({"sub":"a","exp":1_799_999_998,"scope":["write","read"]}));
        assert!(v.validate(&token, NOW).is_ok(), "within the clock skew");
        let bad = BTreeMap::from([(
            "unsecuredValidatorAllowableClockSkewMs".to_string(),
            "-1".to_string(),
        )]);
        assert!(UnsecuredValidator::from_options(&bad).is_err());
    }
}
