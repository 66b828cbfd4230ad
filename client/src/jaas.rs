//! JAAS login-module text (`sasl.jaas.config`), as Kafka's clients and brokers both read it:
//! `<class> <flag> key="value" ...;`. The broker takes PLAIN users from it, a client its
//! `username` and `password`.

/// Kafka's PLAIN login module.
pub const PLAIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
/// Kafka's SCRAM login module.
pub const SCRAM_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";
/// Kafka's OAUTHBEARER login module (its unsecured options make a development token).
pub const OAUTHBEARER_MODULE: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";

/// One login module of a JAAS config: `<class> <flag> key="value" ...;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaasModule {
    /// The login module class.
    pub class: String,
    /// `required`, `requisite`, `sufficient` or `optional`.
    pub flag: String,
    /// The options, in order.
    pub options: Vec<(String, String)>,
}

impl JaasModule {
    /// The value of option `key`, if given.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `sasl.jaas.config` value as Kafka does: exactly one login module. Errors never
/// quote the text (it holds passwords).
pub fn parse_jaas(text: &str) -> Result<JaasModule, String> {
    let tokens = jaas_tokens(text)?;
    let mut it = tokens.into_iter().peekable();
    let word = |t: Option<JaasToken>, what: &str| match t {
        Some(JaasToken::Word(w)) => Ok(w),
        _ => Err(format!("expected {what}")),
    };
    let class = word(it.next(), "a login module class")?;
    let flag = word(it.next(), "a control flag after the login module class")?;
    if !matches!(
        flag.as_str(),
        "required" | "requisite" | "sufficient" | "optional"
    ) {
        return Err("the control flag must be required, requisite, sufficient or optional".into());
    }
    let mut options = Vec::new();
    loop {
        match it.next() {
            Some(JaasToken::Semicolon) => break,
            Some(JaasToken::Word(key)) => {
                if it.next() != Some(JaasToken::Equals) {
                    return Err(format!("option {key} has no `=`"));
                }
                let value = match it.next() {
                    Some(JaasToken::Word(v) | JaasToken::Quoted(v)) => v,
                    _ => return Err(format!("option {key} has no value")),
                };
                options.push((key, value));
            }
            _ => return Err("the login module must end with `;`".into()),
        }
    }
    if it.peek().is_some() {
        return Err("must contain exactly one login module".into());
    }
    Ok(JaasModule {
        class,
        flag,
        options,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum JaasToken {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn jaas_tokens(text: &str) -> Result<Vec<JaasToken>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '=' => tokens.push(JaasToken::Equals),
            ';' => tokens.push(JaasToken::Semicolon),
            '"' => {
                let mut v = String::new();
                loop {
                    match chars.next() {
                        None => return Err("a quoted value is not closed".into()),
                        Some('"') => break,
                        Some('\\') => v.extend(chars.next()),
                        Some(c) => v.push(c),
                    }
                }
                tokens.push(JaasToken::Quoted(v));
            }
            c => {
                let mut v = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '=' | ';' | '"') {
                        break;
                    }
                    v.push(n);
                    chars.next();
                }
                tokens.push(JaasToken::Word(v));
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_take_escapes_and_unquoted_ones_end_at_blanks() {
        let m = parse_jaas("x.Module optional a=\"q\\\"uote\" b=plain c = \"\";").expect("valid");
        assert_eq!(m.class, "x.Module");
        assert_eq!(m.flag, "optional");
        let opts: Vec<(&str, &str)> = m.options.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(opts, [("a", "q\"uote"), ("b", "plain"), ("c", "")]);
        let e = parse_jaas("x.A required; x.B required;").expect_err("two modules");
        assert!(e.contains("exactly one"), "{e}");
    }
}
