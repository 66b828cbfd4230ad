//! `storage format --add-scram` (Kafka's ScramParser): the first SCRAM users of a cluster,
//! given as `SCRAM-SHA-256=[name=alice,password=alice-secret]`, turned into credentials (the
//! password itself is never kept) that the first active controller commits.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

/// One bootstrapped credential: user, mechanism, credential.
pub type BootstrapCredential = (String, ScramMechanism, ScramCredential);

/// Parses one `--add-scram` argument, with Kafka's messages for bad input.
pub fn parse_add_scram(arg: &str) -> Result<BootstrapCredential, String> {
    let (name, config) = arg
        .split_once('=')
        .ok_or_else(|| format!("Failed to find equals sign in SCRAM argument '{arg}'"))?;
    let mechanism = ScramMechanism::from_name(name.trim())
        .ok_or_else(|| format!("The add-scram mechanism {} is not supported.", name.trim()))?;
    let config = config.trim();
    let inner = config
        .strip_prefix('[')
        .ok_or("Expected configuration string to start with [")?
        .strip_suffix(']')
        .ok_or("Expected configuration string to end with ]")?;
    let mut user = None;
    let mut password = None;
    let mut salt = None;
    let mut salted = None;
    let mut iterations = MIN_ITERATIONS;
    let mut unknown = Vec::new();
    for component in inner.split(',').filter(|c| !c.trim().is_empty()) {
        let (key, value) = component
            .split_once('=')
            .ok_or_else(|| format!("No equals sign found in SCRAM component: {component}"))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        match key.trim() {
            "name" => user = Some(value.to_string()),
            "password" => password = Some(value.to_string()),
            "salt" => {
                let bytes = B64
                    .decode(value)
                    .map_err(|e| format!("Failed to decode given salt: {e}"))?;
                salt = Some(bytes);
            }
            "saltedpassword" => {
                let bytes = B64
                    .decode(value)
                    .map_err(|e| format!("Failed to decode given saltedPassword: {e}"))?;
                salted = Some(bytes);
            }
            "iterations" => {
                iterations = value
                    .parse()
                    .map_err(|e| format!("Failed to parse iterations count: {e}"))?;
            }
            other => unknown.push(other.to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "Unknown SCRAM configurations: {}",
            unknown.join(", ")
        ));
    }
    let user = user.ok_or("You must supply 'name' to add-scram")?;
    if iterations < MIN_ITERATIONS {
        return Err(format!(
            "The 'iterations' value must be >= {MIN_ITERATIONS} for add-scram using {}",
            mechanism.name()
        ));
    }
    if iterations > MAX_ITERATIONS {
        return Err(format!(
            "The 'iterations' value must be <= {MAX_ITERATIONS} for add-scram using {}",
            mechanism.name()
        ));
    }
    let credential = match (password, salted, salt) {
        (Some(password), None, salt) => match salt {
            Some(salt) => {
                let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
                ScramCredential::from_salted(mechanism, salt, &salted, iterations)
            }
            None => ScramCredential::from_password(mechanism, &password, iterations),
        },
        (None, Some(salted), Some(salt)) => {
            ScramCredential::from_salted(mechanism, salt, &salted, iterations)
        }
        (None, Some(_), None) => {
            return Err("You must supply 'salt' with 'saltedpassword' to add-scram".into())
        }
        _ => {
            return Err("You must supply one of 'password' or 'saltedpassword' to add-scram".into())
        }
    };
    Ok((user, mechanism, credential))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_becomes_a_salted_credential() {
        let (user, m, c) =
            parse_add_scram("SCRAM-SHA-512=[name=admin,password=\"admin-secret\"]").expect("ok");
        assert_eq!(
            (user.as_str(), m, c.iterations),
            ("admin", ScramMechanism::Sha512, 4096)
        );
        let salt = B64.encode(b"saltsalt");
        let (_, _, c) = parse_add_scram(&format!(
            "SCRAM-SHA-256=[name=a,password=pw,salt={salt},iterations=8192]"
        ))
        .expect("ok");
        let again = ScramCredential::from_salted(
            ScramMechanism::Sha256,
            b"saltsalt".to_vec(),
            &ScramMechanism::Sha256.salted_password(b"pw", b"saltsalt", 8192),
            8192,
        );
        assert_eq!(c, again);
    }

    #[test]
    fn bad_arguments_get_kafkas_messages() {
        let cases = [
            ("SCRAM-SHA-256", "Failed to find equals sign"),
            (
                "SCRAM-SHA-1=[name=a,password=b]",
                "mechanism SCRAM-SHA-1 is not supported",
            ),
            ("SCRAM-SHA-256=name=a]", "start with ["),
            ("SCRAM-SHA-256=[name=a", "end with ]"),
            (
                "SCRAM-SHA-256=[name]",
                "No equals sign found in SCRAM component: name",
            ),
            ("SCRAM-SHA-256=[password=b]", "You must supply 'name'"),
            (
                "SCRAM-SHA-256=[name=a]",
                "one of 'password' or 'saltedpassword'",
            ),
            (
                "SCRAM-SHA-256=[name=a,saltedpassword=AAAA]",
                "supply 'salt' with",
            ),
            (
                "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
                "must be >= 4096",
            ),
            (
                "SCRAM-SHA-256=[name=a,password=b,iterations=99999]",
                "must be <= 16384",
            ),
            (
                "SCRAM-SHA-256=[name=a,password=b,colour=red]",
                "Unknown SCRAM configurations: colour",
            ),
            (
                "SCRAM-SHA-256=[name=a,password=b,iterations=x]",
                "Failed to parse iterations",
            ),
        ];
        for (arg, want) in cases {
            let err = parse_add_scram(arg).expect_err(arg);
            assert!(err.contains(want), "{arg}: {err}");
        }
    }
}
