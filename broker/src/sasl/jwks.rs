//! OAUTHBEARER's secured validator, as Kafka's OAuthBearerValidatorCallbackHandler checks a
//! token: a JWS signed by a key of the JWKS `sasl.oauthbearer.jwks.endpoint.url` names
//! (fetched by `super::jwks_endpoint`), with `exp` and `iat`, `nbf` when present, the
//! expected issuer and audience when configured (a token with an audience is refused when none
//! is expected), and the principal from the subject claim. RS256/384/512 and ES256/384 are
//! verified (with ring); `none` never is. Every refusal reaches the client as
//! `invalid_token`; the reason is logged only. Pure.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};

use super::oauthbearer::{Invalid, Validated};

/// One verification key of the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// An RSA public key (`n`, `e`, big-endian).
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An EC public key on `crv`, as an uncompressed point (0x04 ‖ x ‖ y).
    Ec { crv: String, point: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: Key,
}

/// The secured validator's settings and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksValidator {
    keys: Vec<Jwk>,
    /// `sasl.oauthbearer.expected.audience` (any one of them).
    pub expected_audience: Vec<String>,
    /// `sasl.oauthbearer.expected.issuer`.
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name` (default `sub`).
    pub sub_claim: String,
    /// `sasl.oauthbearer.clock.skew.seconds` (default 30).
    pub clock_skew_s: i64,
}

impl JwksValidator {
    /// A validator over the keys of the JWKS document `jwks` (JSON text).
    pub fn from_jwks(
        jwks: &str,
        expected_audience: Vec<String>,
        expected_issuer: Option<String>,
        sub_claim: String,
        clock_skew_s: i64,
    ) -> Result<JwksValidator, String> {
        let doc: Value = serde_json::from_str(jwks).map_err(|e| format!("not JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no \"keys\" array")?;
        let mut parsed = Vec::new();
        for k in keys {
            // Keys of other types or uses (encryption) are skipped, as jose4j's selector does.
            if k.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            if let Some(key) = parse_key(k)? {
                parsed.push(Jwk {
                    kid: k.get("kid").and_then(Value::as_str).map(str::to_string),
                    alg: k.get("alg").and_then(Value::as_str).map(str::to_string),
                    key,
                });
            }
        }
        if parsed.is_empty() {
            return Err("no RSA or EC signature key".into());
        }
        Ok(JwksValidator {
            keys: parsed,
            expected_audience,
            expected_issuer,
            sub_claim,
            clock_skew_s,
        })
    }

    /// Whether the set holds a key with id `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Checks a signed JWT at `now_ms` (milliseconds since the epoch).
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<Validated, Invalid> {
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, sig] = parts[..] else {
            return Err(Invalid::token(format!(
                "Malformed JWT provided; expected three sections (header, payload, and \
                 signature), but {} sections provided",
                parts.len()
            )));
        };
        if header.is_empty() || payload.is_empty() || sig.is_empty() {
            return Err(Invalid::token("Malformed JWT provided: an empty section"));
        }
        let header_json = object(header)?;
        let claims = object(payload)?;
        let alg = header_json
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let verification = algorithm(alg)
            .ok_or_else(|| Invalid::token(format!("'{alg}' is not an accepted algorithm")))?;
        let signature = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| Invalid::token("the signature is not base64url"))?;
        let kid = header_json.get("kid").and_then(Value::as_str);
        let signed = format!("{header}.{payload}");
        let verified = self
            .keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg))
            .any(|k| verify(&k.key, alg, verification, signed.as_bytes(), &signature));
        if !verified {
            return Err(Invalid::token(format!(
                "no key of the JWKS (kid {kid:?}) verifies the {alg} signature"
            )));
        }
        self.check_claims(&claims, now_ms)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now_ms: i64) -> Result<Validated, Invalid> {
        let skew_ms = self.clock_skew_s * 1000;
        let seconds = |name: &str| claims.get(name).and_then(Value::as_f64);
        let exp = seconds("exp").ok_or_else(|| Invalid::token("No Expiration Time (exp) claim"))?;
        if seconds("iat").is_none() {
            return Err(Invalid::token("No Issued At (iat) claim present"));
        }
        if now_ms - skew_ms >= (exp * 1000.0).round() as i64 {
            return Err(Invalid::token(format!(
                "The JWT is no longer valid: the exp claim ({exp}) is past"
            )));
        }
        if seconds("nbf").is_some_and(|nbf| nbf * 1000.0 > (now_ms + skew_ms) as f64) {
            return Err(Invalid::token("The JWT is not yet valid (nbf)"));
        }
        if let Some(issuer) = &self.expected_issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(Invalid::token(
                    "Issuer (iss) claim value is not the expected one",
                ));
            }
        }
        let audience: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        match (audience.is_empty(), self.expected_audience.is_empty()) {
            (false, true) => {
                return Err(Invalid::token(
                    "Audience (aud) claim present in the JWT but no expected audience value(s) \
                     were configured",
                ))
            }
            (_, false)
                if !audience
                    .iter()
                    .any(|a| self.expected_audience.iter().any(|e| e == a)) =>
            {
                return Err(Invalid::token(
                    "Audience (aud) claim doesn't contain an acceptable identifier",
                ))
            }
            _ => {}
        }
        let principal = claims
            .get(&self.sub_claim)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Invalid::token(format!(
                    "{} value must be a non-blank string",
                    self.sub_claim
                ))
            })?;
        Ok(Validated {
            principal: principal.to_string(),
            expires_ms: (exp * 1000.0) as i64,
        })
    }
}

/// The key id (`kid`) a JWT's header names, if it reads.
pub fn kid_of(token: &str) -> Option<String> {
    let header = object(token.split('.').next()?).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}

fn object(part: &str) -> Result<Map<String, Value>, Invalid> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| Invalid::token("a section is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Invalid::token("a section is not a JSON object")),
    }
}

/// ring's verification algorithm for a JWS `alg` Gregor accepts.
fn algorithm(alg: &str) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
        "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
        _ => return None,
    })
}

fn verify(
    key: &Key,
    alg: &str,
    verification: &'static dyn VerificationAlgorithm,
    message: &[u8],
    sig: &[u8],
) -> bool {
    match key {
        Key::Rsa { n, e } if alg.starts_with("RS") || alg.starts_with("PS") => {
            // ring's RSA verification takes the key as a DER RSAPublicKey.
            let der = rsa_public_key_der(n, e);
            UnparsedPublicKey::new(verification, der)
                .verify(message, sig)
                .is_ok()
        }
        Key::Ec { crv, point } => {
            let matches = (crv == "P-256" && alg == "ES256") || (crv == "P-384" && alg == "ES384");
            matches
                && UnparsedPublicKey::new(verification, point)
                    .verify(message, sig)
                    .is_ok()
        }
        Key::Rsa { .. } => false,
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn length(len: usize, out: &mut Vec<u8>) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }
    fn integer(v: &[u8], out: &mut Vec<u8>) {
        let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        let pad = v.first().is_none_or(|b| b & 0x80 != 0);
        out.push(0x02);
        length(v.len() + usize::from(pad), out);
        if pad {
            out.push(0);
        }
        out.extend(v);
    }
    let mut body = Vec::new();
    integer(n, &mut body);
    integer(e, &mut body);
    let mut out = vec![0x30];
    length(body.len(), &mut out);
    out.extend(body);
    out
}

/// An RSA or EC key of a JWKS entry; `None` for key types Gregor does not verify with.
fn parse_key(k: &Value) -> Result<Option<Key>, String> {
    let field = |name: &str| -> Result<Vec<u8>, String> {
        let text = k
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a key has no \"{name}\""))?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| format!("a key's \"{name}\" is not base64url"))
    };
    Ok(match k.get("kty").and_then(Value::as_str) {
        Some("RSA") => Some(Key::Rsa {
            n: field("n")?,
            e: field("e")?,
        }),
        Some("EC") => {
            let crv = k.get("crv").and_then(Value::as_str).unwrap_or_default();
            if crv != "P-256" && crv != "P-384" {
                return Ok(None);
            }
            let mut point = vec![4u8];
            point.extend(field("x")?);
            point.extend(field("y")?);
            Some(Key::Ec {
                crv: crv.to_string(),
                point,
            })
        }
        _ => None,
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Keys and tokens for the tests of the validator and of its endpoint.

    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    pub fn b64(v: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    /// An EC P-256 key pair and its JWKS, the key named `kid`.
    pub fn key_with_id(kid: &str) -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let point = pair.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
        (pair, jwks.to_string())
    }

    /// An EC P-256 key pair and its JWKS (kid `k1`).
    pub fn key() -> (EcdsaKeyPair, String) {
        key_with_id("k1")
    }

    pub fn sign(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .expect("sign");
        format!("{signed}.{}", b64(sig.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000_000;

    fn validator(jwks: &str, audience: &[&str]) -> JwksValidator {
        JwksValidator::from_jwks(
            jwks,
            audience.iter().map(|a| a.to_string()).collect(),
            Some("https://issuer".into()),
            "sub".into(),
            30,
        )
        .expect("jwks")
    }

    #[test]
    fn a_signed_token_names_its_trimmed_subject() {
        let (pair, jwks) = key();
        let v = validator(&jwks, &["kafka"]);
        let header = json!({"alg": "ES256", "kid": "k1"});
        let claims = json!({"sub": " alice ", "iat": 1_799_999_990, "exp": 1_800_000_600,
            "iss": "https://issuer", "aud": ["kafka", "other"]});
        let ok = v
            .validate(&sign(&pair, &header, &claims), NOW)
            .expect("valid");
        assert_eq!(ok.principal, "alice");
        assert_eq!(ok.expires_ms, 1_800_000_600_000);
    }

    #[test]
    fn a_wrong_key_issuer_audience_or_expiry_is_refused() {
        let (pair, jwks) = key();
        let (other, _) = key();
        let v = validator(&jwks, &["kafka"]);
        let header = json!({"alg": "ES256", "kid": "k1"});
        let good = json!({"sub": "alice", "iat": 1_799_999_990, "exp": 1_800_000_600,
            "iss": "https://issuer", "aud": "kafka"});
        let with = |k: &str, val: Value| {
            let mut c = good.clone();
            c[k] = val;
            c
        };
        let cases = [
            (sign(&other, &header, &good), "verifies"),
            (
                sign(&pair, &json!({"alg": "ES256", "kid": "k2"}), &good),
                "verifies",
            ),
            (
                sign(&pair, &header, &with("iss", json!("https://evil"))),
                "Issuer",
            ),
            (
                sign(&pair, &header, &with("aud", json!("elsewhere"))),
                "Audience",
            ),
            (
                sign(&pair, &header, &with("exp", json!(1_799_999_000))),
                "exp",
            ),
            (sign(&pair, &header, &with("sub", json!(" "))), "sub value"),
        ];
        for (token, why) in cases {
            let e = v.validate(&token, NOW).expect_err(why);
            assert_eq!(e.json(), r#"{"status":"invalid_token"}"#);
            assert!(e.reason.contains(why), "{why}: {}", e.reason);
        }
        let unsecured = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(good.to_string().as_bytes())
        );
        assert!(v.validate(&unsecured, NOW).is_err());
        // No expected audience configured: a token with one is refused (jose4j's default).
        let open = validator(&jwks, &[]);
        let e = open
            .validate(&sign(&pair, &header, &good), NOW)
            .expect_err("aud");
        assert!(e.reason.contains("no expected audience"), "{}", e.reason);
    }

    #[test]
    fn rsa_keys_verify_rs256_over_their_der_encoding() {
        // ring cannot generate RSA keys: this checks the DER the verifier is given.
        let der = rsa_public_key_der(&[0x80, 1], &[1, 0, 1]);
        assert_eq!(
            der,
            [0x30, 0x0a, 0x02, 0x03, 0, 0x80, 1, 0x02, 0x03, 1, 0, 1]
        );
        assert!(
            JwksValidator::from_jwks(r#"{"keys":[]}"#, vec![], None, "sub".into(), 30).is_err()
        );
    }
}
