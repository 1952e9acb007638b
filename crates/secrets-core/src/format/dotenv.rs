//! The dotenv codec: one parser and one writer, shared by the dotenv sink and the `file`
//! provider's dotenv files.
//!
//! # Reading
//!
//! `KEY=value` lines, `export` prefixes, `#` comments, single quotes (literal, as `sh`),
//! double quotes (with `\n \t \r \" \\ \$ \'` escapes, may span lines; `${NAME}` is replaced
//! by the value of a key defined earlier in the same file and kept as written otherwise),
//! unquoted values (trimmed, ` #` starts a comment). A key assigned twice keeps its last value.
//!
//! # Writing
//!
//! Every file written here reads back byte for byte through POSIX `sh` (`set -a; . file`)
//! and through python-dotenv (`dotenv_values`, `load_dotenv`, interpolation on), so a
//! value is data and never code: nothing a shell would expand (`` ` ``, `$(…)`, `$NAME`) is
//! ever left where a shell expands it. A value is written
//!
//! - in double quotes when it holds no backtick and no `$` that starts an expansion
//!   (`\` and `"` escaped, newlines as they are);
//! - else in single quotes when that reads the same in both (no `'`, no `\\`, no `${`);
//! - else as a few assignments of the same key, each appending (`KEY="${KEY}…"`) or
//!   prepending (`KEY="…${KEY}"`) a double-quoted part to a single-quoted core that holds
//!   the backticks; both readers expand `${KEY}` to the value built so far.
//!
//! What cannot be written so that both read it back — a NUL byte, a carriage return
//! (python-dotenv reads it as a newline), bytes that are not UTF-8, a key that is not an
//! environment variable name, and the rare value whose backticks are separated by a `'` —
//! is an error naming the target and the key, never the value.

use crate::error::{Error, Result};
use crate::value::{SecretMap, SecretValue};

/// Which keys a dotenv file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keys {
    /// Environment variable names: letters, digits and `_`, not starting with a digit
    /// (what `sh` accepts as an assignment). Dotenv targets use this.
    #[default]
    EnvNames,
    /// Letters, digits, `_`, `.` and `-` (what the parser accepts): the `file` provider's
    /// dotenv files, whose keys are remote key names such as `db-password`.
    Relaxed,
}

fn is_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_relaxed_name(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

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
        if !is_relaxed_name(key) {
            return Err(Error::invalid(format!(
                "{file}:{line_no}: invalid key (letters, digits, `_`, `.`, `-`)"
            )));
        }
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            // May continue on following lines, as in `sh`.
            let mut value = zeroize::Zeroizing::new(String::new());
            let mut raw = body;
            loop {
                if let Some(end) = raw.find('\'') {
                    value.push_str(&raw[..end]);
                    break;
                }
                value.push_str(raw);
                if i >= lines.len() {
                    return Err(Error::invalid(format!(
                        "{file}:{line_no}: key `{key}`: unterminated single quote"
                    )));
                }
                value.push('\n');
                raw = lines[i];
                i += 1;
            }
            SecretValue::from(value.as_str())
        } else if let Some(body) = rest.strip_prefix('"') {
            // May continue on following lines.
            let mut value = zeroize::Zeroizing::new(String::new());
            let mut raw = body;
            loop {
                let mut chars = raw.char_indices();
                let mut closed = false;
                while let Some((at, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some('r') => value.push('\r'),
                            Some(c @ ('"' | '\\' | '$' | '\'' | '`')) => value.push(c),
                            Some(c) => {
                                value.push('\\');
                                value.push(c);
                            }
                            None => value.push('\\'),
                        },
                        '$' => {
                            // `${NAME}` of a key defined earlier in this file.
                            let after = &raw[at + 1..];
                            let known = after
                                .strip_prefix('{')
                                .and_then(|r| r.find('}').map(|end| &r[..end]))
                                .and_then(|name| out.get(name).map(|v| (name.len(), v)));
                            match known.and_then(|(len, v)| v.expose_str().map(|s| (len, s))) {
                                Some((len, s)) => {
                                    value.push_str(s);
                                    // Skip `{NAME}`.
                                    for _ in 0..len + 2 {
                                        chars.next();
                                    }
                                }
                                None => value.push('$'),
                            }
                        }
                        c => value.push(c),
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
                value.push('\n');
                raw = lines[i];
                i += 1;
            }
            SecretValue::from(value.as_str())
        } else {
            let v = match rest.find(" #") {
                Some(pos) => &rest[..pos],
                None => rest,
            };
            SecretValue::from(v.trim())
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// Writes a map as dotenv text for a target named `target` (in errors): keys sorted, keys
/// must be environment variable names. See the module docs for the quoting.
pub fn render(map: &SecretMap, target: &str) -> Result<zeroize::Zeroizing<String>> {
    render_with(map, target, Keys::EnvNames)
}

/// [`render`] with a choice of which keys are allowed.
pub fn render_with(map: &SecretMap, target: &str, keys: Keys) -> Result<zeroize::Zeroizing<String>> {
    let mut out = zeroize::Zeroizing::new(String::new());
    let prefix = if target.is_empty() {
        String::new()
    } else {
        format!("{target}: ")
    };
    for (k, v) in map.iter() {
        let name_ok = match keys {
            Keys::EnvNames => is_env_name(k),
            Keys::Relaxed => is_relaxed_name(k),
        };
        if !name_ok {
            let rule = match keys {
                Keys::EnvNames => "letters, digits and `_`, not starting with a digit",
                Keys::Relaxed => "letters, digits, `_`, `.` and `-`",
            };
            return Err(Error::invalid(format!(
                "{prefix}key `{}`: not an environment variable name ({rule}), cannot be written to a dotenv file",
                k.escape_debug()
            )));
        }
        let why = |why: &str| Error::invalid(format!("{prefix}key `{k}`: {why}, cannot be written to a dotenv file"));
        let s = v.expose_str().ok_or_else(|| why("value is not UTF-8 text"))?;
        if s.contains('\0') {
            return Err(why("value holds a NUL byte"));
        }
        if s.contains('\r') {
            return Err(why(
                "value holds a carriage return (python-dotenv reads it as a newline)",
            ));
        }
        assignments(k, s, &mut out).map_err(|()| {
            why("value holds backticks on both sides of a single quote (or next to `${` or `\\\\`), which no quoting reads back the same in sh and python-dotenv")
        })?;
    }
    Ok(out)
}

/// A `$` followed by `next` stays a plain `$` inside `sh` double quotes (and for
/// python-dotenv, which only expands `${`).
fn dollar_stays(next: char) -> bool {
    next.is_ascii() && !next.is_ascii_alphanumeric() && !"_{([@*#?$!-`".contains(next)
}

/// Double-quoted body: `\` and `"` escaped, everything else as it is.
fn dq(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
}

/// Reads back the same between single quotes in `sh` (everything literal but `'`) and in
/// python-dotenv (which also decodes `\\` and `\'`, and expands `${`).
fn sq_safe(s: &str) -> bool {
    !s.contains('\'') && !s.contains("\\\\") && !s.ends_with('\\') && !s.contains("${")
}

/// Splits a backtick-free text into parts that are each safe in double quotes: a part
/// ends after a `$` that the next character would turn into an expansion.
fn dq_parts(s: &str) -> Vec<&str> {
    let mut parts = vec![];
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '$'
            && let Some(&(_, next)) = chars.peek()
            && !dollar_stays(next)
        {
            parts.push(&s[start..at + 1]);
            start = at + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn assignments(k: &str, s: &str, out: &mut String) -> std::result::Result<(), ()> {
    let line_dq = |out: &mut String, before: &str, body: &str, after: &str| {
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(before);
        dq(out, body);
        out.push_str(after);
        out.push_str("\"\n");
    };
    let me = format!("${{{k}}}");
    if !s.contains('`') {
        let parts = dq_parts(s);
        line_dq(out, "", parts[0], "");
        for p in &parts[1..] {
            line_dq(out, &me, p, "");
        }
        return Ok(());
    }
    if sq_safe(s) {
        out.push_str(&format!("{k}='{s}'\n"));
        return Ok(());
    }
    // A single-quoted core holding every backtick, as wide as it stays safe.
    let (mut start, mut end) = (s.find('`').expect("has a backtick"), s.rfind('`').expect("has one") + 1);
    if !sq_safe(&s[start..end]) {
        return Err(());
    }
    while let Some((at, _)) = s[..start].char_indices().next_back() {
        if !sq_safe(&s[at..end]) {
            break;
        }
        start = at;
    }
    while let Some(c) = s[end..].chars().next() {
        if !sq_safe(&s[start..end + c.len_utf8()]) {
            break;
        }
        end += c.len_utf8();
    }
    let (prefix, core, suffix) = (&s[..start], &s[start..end], &s[end..]);
    // The prefix goes before `${KEY}` in one part: each of its `$` must stay plain.
    let mut pc = prefix.chars().peekable();
    while let Some(c) = pc.next() {
        if c == '$' && !pc.peek().is_some_and(|&n| dollar_stays(n)) {
            return Err(());
        }
    }
    out.push_str(&format!("{k}='{core}'\n"));
    if !prefix.is_empty() {
        line_dq(out, "", prefix, &me);
    }
    if !suffix.is_empty() {
        for p in dq_parts(suffix) {
            line_dq(out, &me, p, "");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> SecretMap {
        let mut m = SecretMap::new();
        for (k, v) in pairs {
            m.insert(*k, SecretValue::from(*v));
        }
        m
    }

    #[test]
    fn parses_common_forms() {
        let m = parse(
            "# c\nA=1\nexport B = two words # comment\nC='lit $x \\n'\nD=\"a\\nb \\\"q\\\"\"\nE=\"multi\nline\"\nF=\nG='two\nlines'\nH=\"${A}-${NOPE}\"\n",
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
        assert_eq!(g("G"), "two\nlines");
        assert_eq!(g("H"), "1-${NOPE}");
    }

    #[test]
    fn round_trips() {
        let all: String = (0x20u8..0x7f).map(char::from).collect();
        for v in [
            "a \"b\" \\ $c\nd",
            "",
            "`id`",
            "$(id) ${HOME} $HOME $$ $",
            "x${y}z",
            "`x${y}",
            "a'b`c$d`f'${g}$h",
            all.as_str(),
            "é ü 日本 🎉\n`$x'\"",
            "ends with \\",
            "\\`",
        ] {
            let m = map(&[("K", v)]);
            let text = render(&m, "ns/t").unwrap();
            assert_eq!(parse(&text, "x").unwrap(), m, "{v:?} as {:?}", text.as_str());
        }
    }

    #[test]
    fn refuses_what_cannot_round_trip_naming_target_and_key() {
        for (k, v, want) in [
            ("K", "canary\0x", "NUL"),
            ("K", "canary\r\n", "carriage return"),
            ("K", "`canary'`", "backticks"),
            ("K", "canary${x}`", "backticks"),
            ("1K", "canary", "not an environment variable name"),
            ("a-b", "canary", "not an environment variable name"),
        ] {
            let e = render(&map(&[(k, v)]), "ns/t").unwrap_err().to_string();
            assert!(
                e.contains("ns/t") && e.contains(&format!("`{k}`")) && e.contains(want),
                "{e}"
            );
            assert!(!e.contains("canary"), "{e}");
        }
        assert!(render_with(&map(&[("a-b.c", "v")]), "", Keys::Relaxed).is_ok());
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
