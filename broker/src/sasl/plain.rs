//! SASL/PLAIN (RFC 4616) as Kafka's PlainSaslServer checks it: one token
//! `authzid NUL authcid NUL password`, the password compared with the user's entry in the
//! listener's JAAS config (`user_<name>="<password>"`).

use std::collections::BTreeMap;

use super::AuthFailure;
use crate::config::ssl::Secret;

/// Checks a PLAIN token against `users`; the authenticated user name.
pub fn authenticate(token: &[u8], users: &BTreeMap<String, Secret>) -> Result<String, AuthFailure> {
    let text = std::str::from_utf8(token)
        .map_err(|_| AuthFailure::protocol("SASL/PLAIN token is not UTF-8".into()))?;
    let parts: Vec<&str> = text.splitn(4, '\0').collect();
    let [authzid, user, password] = parts[..] else {
        return Err(AuthFailure::protocol(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            parts.len()
        )));
    };
    let fail = |m: &str| {
        Err(AuthFailure::credentials(format!(
            "Authentication failed: {m}"
        )))
    };
    if user.is_empty() {
        return fail("username not specified");
    }
    if password.is_empty() {
        return fail("password not specified");
    }
    let known = users.get(user).map(Secret::expose);
    // Compare against something even for an unknown user, so timing does not tell.
    let expected = known.unwrap_or("\u{0}unknown-user\u{0}");
    let matches = super::scram::same_bytes(expected.as_bytes(), password.as_bytes());
    if known.is_none() || !matches {
        return fail("Invalid username or password");
    }
    // As Kafka: the authorization id is checked only once the password is.
    if !authzid.is_empty() && authzid != user {
        return fail("Client requested an authorization id that is different from username");
    }
    Ok(user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BTreeMap<String, Secret> {
        BTreeMap::from([("alice".to_string(), Secret::new("alice-secret"))])
    }

    #[test]
    fn the_right_password_authenticates_with_or_without_authzid() {
        assert_eq!(
            authenticate(b"\0alice\0alice-secret", &users()).as_deref(),
            Ok("alice")
        );
        assert_eq!(
            authenticate(b"alice\0alice\0alice-secret", &users()).as_deref(),
            Ok("alice")
        );
    }

    #[test]
    fn a_wrong_password_and_an_unknown_user_read_the_same() {
        let wrong = authenticate(b"\0alice\0nope", &users()).expect_err("wrong");
        let unknown = authenticate(b"\0mallory\0nope", &users()).expect_err("unknown");
        assert_eq!(wrong, unknown);
        assert_eq!(
            wrong.message,
            "Authentication failed: Invalid username or password"
        );
    }

    #[test]
    fn malformed_tokens_name_the_problem() {
        let cases: [(&[u8], &str); 4] = [
            (b"alice", "expected 3 tokens, got 1"),
            (b"\0\0pw", "username not specified"),
            (b"\0alice\0", "password not specified"),
            (b"bob\0alice\0alice-secret", "authorization id"),
        ];
        for (token, want) in cases {
            let err = authenticate(token, &users()).expect_err("malformed");
            assert!(err.message.contains(want), "{token:?}: {}", err.message);
        }
    }
}
