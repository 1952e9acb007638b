//! Dotenv files: `KEY=value` lines, `export` prefixes, `#` comments, single quotes (literal),
//! double quotes (with `\n \t \r \" \\ \$` escapes, may span lines), unquoted values
//! (trimmed, ` #` starts a comment).
//!
//! Errors name the line number and key, never the value.

use crate::error::{Error, Result};
use crate::value::{SecretMap, SecretValue};

/// Parses dotenv text. `file` names the file in errors.
pub fn parse(text: &str, file: &str) -> Result<SecretMap> {
    let mut out = SecretMap::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(Error::invalid(format!("{file}:{line_no}: expected KEY=VALUE")));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(Error::invalid(format!(
                "{file}:{line_no}: invalid key (letters, digits, `_`, `.`, `-`)"
            )));
        }
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            match body.find('\'') {
                Some(end) => body[..end].to_string(),
                None => {
                    return Err(Error::invalid(format!(
                        "{file}:{line_no}: key `{key}`: unterminated single quote"
                    )));
                }
            }
        } else if let Some(body) = rest.strip_prefix('"') {
            // May continue on following lines.
            let mut raw = body.to_string();
            let mut out = String::new();
            loop {
                let mut chars = raw.chars();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some('n') => out.push('\n'),
                            Some('t') => out.push('\t'),
                            Some('r') => out.push('\r'),
                            Some(c @ ('"' | '\\' | '$' | '\'')) => out.push(c),
                            Some(c) => {
                                out.push('\\');
                                out.push(c);
                            }
                            None => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
                if closed {
                    break;
                }
                if i >= lines.len() {
                    return Err(Error::invalid(format!(
                        "{file}:{line_no}: key `{key}`: unterminated double quote"
                    )));
                }
                out.push('\n');
                raw = lines[i].to_string();
                i += 1;
            }
            out
        } else {
            let v = match rest.find(" #") {
                Some(pos) => &rest[..pos],
                None => rest,
            };
            v.trim().to_string()
        };
        out.insert(key.to_string(), SecretValue::from(value));
    }
    Ok(out)
}

/// Writes a map as dotenv text: every value double-quoted and escaped, keys sorted.
/// Values that are not UTF-8 are refused with the key named.
pub fn render(map: &SecretMap) -> Result<zeroize::Zeroizing<String>> {
    let mut out = zeroize::Zeroizing::new(String::new());
    for (k, v) in map.iter() {
        let s = v.expose_str().ok_or_else(|| {
            Error::invalid(format!(
                "key `{k}`: value is not UTF-8 text, cannot be written to a dotenv file"
            ))
        })?;
        out.push_str(k);
        out.push_str("=\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '$' => out.push_str("\\$"),
                c => out.push(c),
            }
        }
        out.push_str("\"\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let m = parse(
            "# c\nA=1\nexport B = two words # comment\nC='lit $x \\n'\nD=\"a\\nb \\\"q\\\"\"\nE=\"multi\nline\"\nF=\n",
            "t.env",
        )
        .unwrap();
        let g = |k: &str| m.get(k).unwrap().expose_str().unwrap().to_string();
        assert_eq!(g("A"), "1");
        assert_eq!(g("B"), "two words");
        assert_eq!(g("C"), "lit $x \\n");
        assert_eq!(g("D"), "a\nb \"q\"");
        assert_eq!(g("E"), "multi\nline");
        assert_eq!(g("F"), "");
    }

    #[test]
    fn round_trips() {
        let mut m = SecretMap::new();
        m.insert("K", SecretValue::from("a \"b\" \\ $c\nd"));
        m.insert("E", SecretValue::from(""));
        let text = render(&m).unwrap();
        assert_eq!(parse(&text, "x").unwrap(), m);
    }

    #[test]
    fn errors_name_line_not_value() {
        let e = parse("GOOD=1\nBAD=\"canary-secret", "x.env").unwrap_err().to_string();
        assert!(
            e.contains("x.env:2") && e.contains("`BAD`") && !e.contains("canary"),
            "{e}"
        );
        let e = parse("no equals canary", "x.env").unwrap_err().to_string();
        assert!(!e.contains("canary"), "{e}");
    }
}
