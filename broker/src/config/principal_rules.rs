//! `ssl.principal.mapping.rules` (Kafka's SslPrincipalMapper): how a client certificate's
//! distinguished name (RFC 2253, `CN=alice,OU=eng,O=example`) becomes the name of a
//! `User:` principal. `DEFAULT` keeps the whole DN; `RULE:<regex>/<replacement>/[L|U]` applies
//! when the regex matches the whole DN and gives the DN with the regex replaced (Java's
//! `replaceAll`, `$1` for groups), lower- or upper-cased with `L` / `U`. The first rule that
//! applies wins; a DN no rule applies to is refused.

use regex::Regex;

/// One mapping rule.
#[derive(Debug, Clone)]
pub enum PrincipalRule {
    /// The DN as it is.
    Default,
    /// A rewrite.
    Rule {
        /// The regex, anchored to match the whole DN.
        pattern: Regex,
        /// The replacement, in the regex crate's syntax.
        replacement: String,
        /// `L` / `U`.
        case: Option<Case>,
        /// The rule as written, for messages.
        text: String,
    },
}

/// The case a rule's result is turned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// `L`: lower case.
    Lower,
    /// `U`: upper case.
    Upper,
}

impl PartialEq for PrincipalRule {
    fn eq(&self, other: &PrincipalRule) -> bool {
        self.text() == other.text()
    }
}

impl Eq for PrincipalRule {}

impl PrincipalRule {
    fn text(&self) -> &str {
        match self {
            PrincipalRule::Default => "DEFAULT",
            PrincipalRule::Rule { text, .. } => text,
        }
    }
}

/// Parses a `ssl.principal.mapping.rules` value: rules separated by commas (a `\`-escaped
/// character, e.g. `\/` or `\,`, belongs to the rule).
pub fn parse(value: &str) -> Result<Vec<PrincipalRule>, String> {
    let mut rules = Vec::new();
    for text in split_rules(value) {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        rules.push(parse_rule(text)?);
    }
    if rules.is_empty() {
        rules.push(PrincipalRule::Default);
    }
    Ok(rules)
}

/// Splits at the commas that separate rules.
fn split_rules(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut slashes = 0;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                current.extend(chars.next());
            }
            '/' => {
                slashes += 1;
                current.push(c);
            }
            // In a RULE, commas may appear in the regex and the replacement (before the
            // second `/`).
            ',' if slashes >= 2 || !current.trim_start().starts_with("RULE:") => {
                out.push(std::mem::take(&mut current));
                slashes = 0;
            }
            c => current.push(c),
        }
    }
    out.push(current);
    out
}

fn parse_rule(text: &str) -> Result<PrincipalRule, String> {
    if text == "DEFAULT" {
        return Ok(PrincipalRule::Default);
    }
    let invalid = || format!("Invalid rule: {text}");
    let body = text.strip_prefix("RULE:").ok_or_else(invalid)?;
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                current.extend(chars.next());
            }
            '/' if parts.len() < 2 => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    let [pattern, replacement] = <[String; 2]>::try_from(parts).map_err(|_| invalid())?;
    let case = match current.trim() {
        "" => None,
        "L" => Some(Case::Lower),
        "U" => Some(Case::Upper),
        _ => return Err(invalid()),
    };
    let pattern = Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("Invalid rule: {text}: {e}"))?;
    Ok(PrincipalRule::Rule {
        pattern,
        replacement: java_replacement(&replacement),
        case,
        text: text.to_string(),
    })
}

/// A Java `replaceAll` replacement (`$1`, `\` escapes) in the regex crate's syntax.
fn java_replacement(java: &str) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut digits = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    digits.push(d);
                }
                out.push_str(&format!("${{{digits}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// The principal name of `dn` by `rules`, or why none applies.
pub fn map(rules: &[PrincipalRule], dn: &str) -> Result<String, String> {
    for rule in rules {
        match rule {
            PrincipalRule::Default => return Ok(dn.to_string()),
            PrincipalRule::Rule {
                pattern,
                replacement,
                case,
                ..
            } => {
                if !pattern.is_match(dn) {
                    continue;
                }
                let name = pattern.replace_all(dn, replacement.as_str()).into_owned();
                return Ok(match case {
                    None => name,
                    Some(Case::Lower) => name.to_lowercase(),
                    Some(Case::Upper) => name.to_uppercase(),
                });
            }
        }
    }
    let texts: Vec<&str> = rules.iter().map(PrincipalRule::text).collect();
    Err(format!(
        "No rules apply to {dn}, rules [{}]",
        texts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_keeps_the_whole_dn() {
        let rules = parse("DEFAULT").expect("rules");
        assert_eq!(
            map(&rules, "CN=alice,OU=eng").as_deref(),
            Ok("CN=alice,OU=eng")
        );
        assert_eq!(parse("").expect("empty"), vec![PrincipalRule::Default]);
    }

    #[test]
    fn kafkas_documented_rules_map_as_documented() {
        // From Kafka's security documentation.
        let rules = parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT",
        )
        .expect("rules");
        assert_eq!(rules.len(), 4);
        let cases = [
            (
                "CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown",
                "serviceuser",
            ),
            (
                "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown",
                "adminuser@admin",
            ),
            ("CN=Bob,O=Example", "bob"),
            ("OU=nobody", "OU=nobody"),
        ];
        for (dn, want) in cases {
            assert_eq!(map(&rules, dn).as_deref(), Ok(want), "{dn}");
        }
    }

    #[test]
    fn escaped_slashes_belong_to_the_rule_and_upper_case_applies() {
        let rules = parse(r"RULE:^CN=([^,]*)\/x,.*$/$1-svc/U").expect("rules");
        assert_eq!(map(&rules, "CN=app/x,O=e").as_deref(), Ok("APP-SVC"));
    }

    #[test]
    fn a_dn_no_rule_applies_to_and_bad_rules_are_refused() {
        let rules = parse("RULE:^CN=(.*)$/$1/").expect("rules");
        let err = map(&rules, "OU=x").expect_err("no rule");
        assert!(err.starts_with("No rules apply to OU=x"), "{err}");
        for bad in ["RULE:abc", "RULE:a/b/Q", "NOPE", "RULE:(/x/"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.starts_with("Invalid rule: "), "{bad}: {err}");
        }
    }
}
