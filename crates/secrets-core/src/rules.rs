//! Rules for names and paths in manifests, shared by validation (load time) and the
//! transforms (sync time): Secret data keys, `property` paths, regular expressions.

use crate::error::{Error, Result};

/// Whether `k` is a valid Secret/ConfigMap data key: `[-._a-zA-Z0-9]+`, at most 253 bytes,
/// and not `.` or `..` (Kubernetes' rule).
pub fn is_valid_secret_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Longest `property` accepted.
pub const MAX_PROPERTY_LEN: usize = 256;
/// Deepest nesting of `[`, `{` and `(` in a `property`.
pub const MAX_PROPERTY_NESTING: usize = 3;
/// Most wildcards (`*`, `?`) in a `property`. gjson matches wildcards by backtracking, so
/// time grows exponentially with them (the fuzzer found a 40-byte property with 13 `*`
/// taking over 10 s); real paths use one or two (`items.*.name`).
pub const MAX_PROPERTY_WILDCARDS: usize = 4;

/// Checks a `property` before it reaches gjson: at most [`MAX_PROPERTY_LEN`] bytes, no
/// control characters, at most [`MAX_PROPERTY_WILDCARDS`] wildcards, brackets nested at
/// most [`MAX_PROPERTY_NESTING`] deep. gjson's
/// multipaths and modifiers nested deeper take time exponential in the nesting (the fuzzer
/// found a 4 KiB property taking seconds), so a manifest could stall a sync.
pub fn check_property(property: &str) -> Result<()> {
    if property.len() > MAX_PROPERTY_LEN {
        return Err(Error::invalid(format!(
            "property is {} bytes, over the limit of {MAX_PROPERTY_LEN}",
            property.len()
        )));
    }
    if property.chars().any(char::is_control) {
        return Err(Error::invalid("property contains a control character"));
    }
    let (mut depth, mut max) = (0usize, 0usize);
    let mut escaped = false;
    for c in property.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' | '{' | '(' => {
                depth += 1;
                max = max.max(depth);
            }
            ']' | '}' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let wildcards = property.chars().filter(|c| matches!(c, '*' | '?')).count();
    if wildcards > MAX_PROPERTY_WILDCARDS {
        return Err(Error::invalid(format!(
            "property has {wildcards} wildcards (`*`, `?`), over the limit of {MAX_PROPERTY_WILDCARDS}"
        )));
    }
    if max > MAX_PROPERTY_NESTING {
        return Err(Error::invalid(format!(
            "property nests brackets {max} deep, over the limit of {MAX_PROPERTY_NESTING}"
        )));
    }
    Ok(())
}

/// A regular expression from a manifest, or a one-line error naming it (the regex crate's
/// own messages span several lines).
pub fn compile_regex(pattern: &str) -> Result<regex::Regex> {
    regex::Regex::new(pattern).map_err(|e| Error::invalid(one_line_regex_error(pattern, &e)))
}

/// `invalid regexp `<pattern>`: <reason>` on one line.
pub fn one_line_regex_error(pattern: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let reason = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid")
        .trim();
    let reason = reason.strip_prefix("error: ").unwrap_or(reason);
    format!("invalid regexp `{pattern}`: {reason}")
}
