//! Terraform's files, read as flat maps of names to values by the `file` provider:
//!
//! - `tfvars`: HCL attributes (`name = value`), parsed by `hcl-rs`. Strings (quoted or
//!   heredoc) are taken as they are; numbers and bools as their text; lists, maps and
//!   objects as JSON text, so `property` reads into them; `null` as empty. `#`, `//` and
//!   `/* */` comments are HCL's own. Blocks are not variables and are refused.
//! - `terraform-output`: the JSON of `terraform output -json`; each output's `.value`,
//!   strings as they are, anything else as JSON text.
//!
//! Errors name the file, the line and the attribute, never a value: the parser's own
//! message quotes input, so only its position is kept.

use hcl::eval::{Context, Evaluate};

use crate::error::{Error, Result};
use crate::value::{SecretMap, SecretValue};

/// Parses a `.tfvars` file's text; `file` names it in errors.
pub fn parse_tfvars(text: &str, file: &str) -> Result<SecretMap> {
    let body = hcl::parse(text).map_err(|e| match e {
        hcl::Error::Parse(p) => {
            // The parser reports an unterminated string where it gave up (often lines
            // later); HCL's quoted strings end on their line, so name that line instead.
            if let Some(line) = unterminated_string(text) {
                let attr = attribute_at(text, line)
                    .map(|a| format!(" (attribute `{a}`)"))
                    .unwrap_or_default();
                return Error::invalid(format!("{file}: unterminated string at line {line}{attr}"));
            }
            let line = p.location().line();
            let attr = attribute_at(text, line)
                .map(|a| format!(" (attribute `{a}`)"))
                .unwrap_or_default();
            Error::invalid(format!(
                "{file}: invalid tfvars syntax at line {line} column {}{attr}",
                p.location().column()
            ))
        }
        _ => Error::invalid(format!("{file}: invalid tfvars file")),
    })?;
    if let Some(block) = body.blocks().next() {
        let name = block.identifier();
        let line = line_of(text, name).map(|l| format!(" at line {l}")).unwrap_or_default();
        return Err(Error::invalid(format!(
            "{file}: block `{name}`{line}: a tfvars file holds only `name = value` attributes"
        )));
    }
    let ctx = Context::new();
    let mut out = SecretMap::new();
    for attr in body.attributes() {
        let key = attr.key();
        let at = || line_of(text, key).map(|l| format!(" at line {l}")).unwrap_or_default();
        let value = attr.expr().evaluate(&ctx).map_err(|_| {
            Error::invalid(format!(
                "{file}: attribute `{key}`{}: not a plain value (tfvars values cannot refer to variables or call functions)",
                at()
            ))
        })?;
        let text = match value {
            hcl::Value::String(s) => s,
            hcl::Value::Null => String::new(),
            hcl::Value::Bool(b) => b.to_string(),
            hcl::Value::Number(n) => n.to_string(),
            other => serde_json::to_string(&other)
                .map_err(|_| Error::invalid(format!("{file}: attribute `{key}`{}: cannot be written as JSON", at())))?,
        };
        if out.insert(key.to_string(), SecretValue::from(text)).is_some() {
            return Err(Error::invalid(format!(
                "{file}: attribute `{key}`{} is set twice",
                at()
            )));
        }
    }
    Ok(out)
}

/// Parses the JSON of `terraform output -json`; `file` names it in errors.
pub fn parse_terraform_output(text: &str, file: &str) -> Result<SecretMap> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Error::invalid(format!(
            "{file}: invalid JSON at line {} column {} (expected `terraform output -json`)",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Object(outputs) = v else {
        return Err(Error::invalid(format!(
            "{file}: expected an object of outputs (`terraform output -json`)"
        )));
    };
    let mut out = SecretMap::new();
    for (name, output) in outputs {
        let value = match output {
            serde_json::Value::Object(mut o) => o.remove("value").ok_or_else(|| {
                Error::invalid(format!(
                    "{file}: output `{name}` has no `value` (expected `terraform output -json`)"
                ))
            })?,
            _ => {
                return Err(Error::invalid(format!(
                    "{file}: output `{name}` is not an object with `value` (expected `terraform output -json`)"
                )));
            }
        };
        let s = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        out.insert(name, SecretValue::from(s));
    }
    Ok(out)
}

/// The first line (1-based) with an unclosed quoted string, outside heredocs and comments.
fn unterminated_string(text: &str) -> Option<usize> {
    let mut heredoc: Option<String> = None;
    let mut in_block_comment = false;
    for (i, line) in text.lines().enumerate() {
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let (mut open, mut escaped) = (false, false);
        let mut chars = line.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if in_block_comment {
                if c == '*' && chars.peek().is_some_and(|(_, n)| *n == '/') {
                    chars.next();
                    in_block_comment = false;
                }
                continue;
            }
            if open {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => open = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => open = true,
                '#' => break,
                '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => break,
                '/' if chars.peek().is_some_and(|(_, n)| *n == '*') => {
                    chars.next();
                    in_block_comment = true;
                }
                '<' if line[at..].starts_with("<<") => {
                    let tag = line[at + 2..].trim_start_matches('-').trim();
                    if !tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        heredoc = Some(tag.to_string());
                    }
                    break;
                }
                _ => {}
            }
        }
        if open {
            return Some(i + 1);
        }
    }
    None
}

/// The attribute whose `name =` starts at or above `line` (1-based).
fn attribute_at(text: &str, line: usize) -> Option<String> {
    text.lines()
        .take(line)
        .filter_map(attribute_name)
        .last()
        .map(str::to_string)
}

/// The 1-based line where attribute or block `name` starts.
fn line_of(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', '{', '"']) || rest.starts_with(' '))
        })
        .map(|i| i + 1)
}

/// `name` of a line `name = ...`.
fn attribute_name(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(t.len());
    let (name, rest) = t.split_at(end);
    let first = name.chars().next()?;
    (first.is_ascii_alphabetic() || first == '_')
        .then_some(())
        .filter(|_| rest.trim_start().starts_with('=') && !rest.trim_start().starts_with("=="))
        .map(|_| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_are_found_by_line() {
        let text = "a = 1\n# c\nbb = \"x\n";
        assert_eq!(attribute_at(text, 3).as_deref(), Some("bb"));
        assert_eq!(line_of(text, "bb"), Some(3));
    }
}
