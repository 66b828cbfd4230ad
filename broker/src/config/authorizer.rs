//! The authorizer keys of `server.properties`, parsed into [`AuthorizerConfig`]: ACLs are
//! enforced only when `authorizer.class.name` names Kafka's StandardAuthorizer, and any other
//! class fails start-up naming it (Gregor cannot load a Java class).

use super::{ConfigError, Props};

/// The one authorizer class Gregor implements (Kafka's KRaft authorizer, ACLs in the
/// metadata log).
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// The keys this module reads.
pub(super) const KEYS: &[&str] = &[
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
];

/// How requests are authorized, when an authorizer is configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizerConfig {
    /// `super.users`: principals (`User:alice`) allowed everything, semicolon-separated as in
    /// Kafka.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`: a resource no ACL matches is open to everyone
    /// (Kafka's default is false: denied).
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Reads the keys of [`KEYS`]: `None` when `authorizer.class.name` is unset or empty (no
    /// authorization, as in Kafka), an error naming any class but the StandardAuthorizer.
    pub(super) fn from_props(p: &Props<'_>) -> Result<Option<AuthorizerConfig>, ConfigError> {
        match p.get("authorizer.class.name") {
            None | Some("") => return Ok(None),
            Some(STANDARD_AUTHORIZER) => {}
            Some(other) => {
                return Err(Props::invalid(
                    "authorizer.class.name",
                    other,
                    format!("Gregor implements only {STANDARD_AUTHORIZER}"),
                ))
            }
        }
        let super_users = p
            .get("super.users")
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Some(AuthorizerConfig {
            super_users,
            allow_everyone_if_no_acl_found: p.bool("allow.everyone.if.no.acl.found", false)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_properties, Config};
    use super::*;

    fn authorizer(extra: &str) -> Result<Option<AuthorizerConfig>, ConfigError> {
        Config::from_properties(parse_properties(&format!("node.id=1\n{extra}")))
            .map(|c| c.authorizer)
    }

    #[test]
    fn no_class_or_an_empty_one_means_no_authorizer() {
        assert_eq!(authorizer("").expect("parses"), None);
        assert_eq!(
            authorizer("authorizer.class.name=\nsuper.users=User:a").expect("parses"),
            None
        );
    }

    #[test]
    fn the_standard_authorizer_reads_super_users_and_the_default_rule() {
        let c = authorizer(&format!(
            "authorizer.class.name={STANDARD_AUTHORIZER}\nsuper.users=User:admin; User:ops;\n\
             allow.everyone.if.no.acl.found=true"
        ))
        .expect("parses")
        .expect("configured");
        assert_eq!(c.super_users, ["User:admin", "User:ops"]);
        assert!(c.allow_everyone_if_no_acl_found);
        let c = authorizer(&format!("authorizer.class.name={STANDARD_AUTHORIZER}"))
            .expect("parses")
            .expect("configured");
        assert_eq!(
            c,
            AuthorizerConfig::default(),
            "Kafka's defaults: deny, none"
        );
    }

    #[test]
    fn any_other_class_fails_start_up_naming_it() {
        let e = authorizer("authorizer.class.name=kafka.security.authorizer.AclAuthorizer")
            .expect_err("refused");
        let text = e.to_string();
        assert!(
            text.contains("kafka.security.authorizer.AclAuthorizer")
                && text.contains("authorizer.class.name"),
            "{text}"
        );
        assert!(
            authorizer(&format!(
                "authorizer.class.name={STANDARD_AUTHORIZER}\nallow.everyone.if.no.acl.found=yes"
            ))
            .is_err(),
            "a bad boolean names its key"
        );
    }
}
