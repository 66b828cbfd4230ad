//! Java `.properties` text (`server.properties`, a client's `--command-config` file) into
//! key/value pairs, as `java.util.Properties#load` reads it.

use std::collections::BTreeMap;

/// Parses Java `.properties` text: `key=value` / `key: value` / `key value`, `#`/`!` comments,
/// backslash line continuations and escapes.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if logical.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with('!')) {
            continue;
        }
        let trailing_backslashes = trimmed.chars().rev().take_while(|c| *c == '\\').count();
        if trailing_backslashes % 2 == 1 {
            logical.push_str(&trimmed[..trimmed.len() - 1]);
            continue;
        }
        logical.push_str(trimmed);
        let entry = std::mem::take(&mut logical);
        if entry.trim().is_empty() {
            continue;
        }
        let sep = entry
            .char_indices()
            .find(|(_, c)| *c == '=' || *c == ':' || c.is_whitespace())
            .map(|(i, _)| i);
        let (key, value) = match sep {
            Some(i) => {
                let rest = entry[i..].trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                (&entry[..i], rest.trim())
            }
            None => (entry.as_str(), ""),
        };
        out.insert(unescape(key), unescape(value));
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_comments_separators_and_continuations() {
        let m = parse_properties("# c\n! c\na=1\nb : 2\nc 3\nd=x\\\n   y\ne=\n");
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "2");
        assert_eq!(m["c"], "3");
        assert_eq!(m["d"], "xy");
        assert_eq!(m["e"], "");
    }
}
