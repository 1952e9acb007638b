//! Sets one path of an ESC environment definition to `fn::secret: <value>`, keeping every
//! other byte of the YAML text: other lines, comments, key order, quoting style, imports
//! and `fn::` expressions.
//!
//! Why a targeted text edit: serde_norway (the YAML crate of this workspace) re-emits a whole
//! document without comments or the author's formatting, and no YAML crate this workspace
//! can vet keeps formatting through an edit. ESC definitions are block-style YAML, so the
//! edit finds the key by indentation (`values:` at column 0, then each key of the path one
//! block deeper), replaces that key's value lines — or inserts the missing keys at the end
//! of the deepest existing block — and nothing else. Then it *checks itself*: the edited
//! text is parsed and must equal the original document with exactly that one path set. A
//! definition the edit cannot handle (a flow mapping `{...}` on the path, an array index,
//! anchors, tags, several documents) is refused with an error naming the line, never
//! written half-edited.

use secretsync_core::{Error, Result, SecretValue};
use serde_norway::{Mapping, Value};

use crate::path::{PropertyPath, Step};

/// What the edit did.
pub(crate) struct Edited {
    /// The new definition.
    pub yaml: String,
    /// Whether the path existed before.
    pub existed: bool,
}

#[derive(Clone, Copy)]
struct Line<'a> {
    start: usize,
    text: &'a str,
}

impl Line<'_> {
    fn indent(&self) -> usize {
        self.text.len() - self.text.trim_start_matches(' ').len()
    }
    /// Blank, or only a comment: belongs to no block.
    fn is_filler(&self) -> bool {
        let t = self.text.trim();
        t.is_empty() || t.starts_with('#')
    }
    fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = vec![];
    let mut start = 0;
    for piece in text.split_inclusive('\n') {
        let body = piece.strip_suffix('\n').unwrap_or(piece);
        let body = body.strip_suffix('\r').unwrap_or(body);
        out.push(Line { start, text: body });
        start += piece.len();
    }
    out
}

/// A key on a line: its decoded name and where its value text starts (after `:`).
fn key_of(line: &str, indent: usize) -> Option<(String, usize)> {
    let rest = &line[indent..];
    let (name, after) = if let Some(q) = rest.strip_prefix('"') {
        let mut i = 0;
        let b = q.as_bytes();
        loop {
            match b.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let raw = &rest[..i + 2];
        (serde_json::from_str::<String>(raw).ok()?, i + 2)
    } else if let Some(q) = rest.strip_prefix('\'') {
        let b = q.as_bytes();
        let mut i = 0;
        loop {
            match b.get(i)? {
                b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                b'\'' => break,
                _ => i += 1,
            }
        }
        (q[..i].replace("''", "'"), i + 2)
    } else {
        if rest.starts_with("- ") || rest == "-" || rest.starts_with(['?', '#', '{', '[', '&', '*', '!', '|', '>']) {
            return None;
        }
        let b = rest.as_bytes();
        let colon =
            (0..b.len()).find(|&i| b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' ' || b[i + 1] == b'\t'))?;
        (rest[..colon].trim_end().to_string(), colon)
    };
    let after_name = &rest[after..];
    let colon = after_name.trim_start_matches([' ', '\t']);
    if !colon.starts_with(':') {
        return None;
    }
    let value_at = indent + after + (after_name.len() - colon.len()) + 1;
    Some((name, value_at))
}

/// The inline value after `key:` on its line, without a trailing comment.
fn inline_value(line: &str, value_at: usize) -> &str {
    let v = line[value_at..].trim();
    if v.starts_with('#') {
        return "";
    }
    match v.find(" #") {
        Some(c) => v[..c].trim_end(),
        None => v,
    }
}

fn is_empty_flow(inline: &str) -> bool {
    let t: String = inline.chars().filter(|c| !c.is_whitespace()).collect();
    t == "{}"
}

/// The block of child lines of the key on `lines[at]`: indices `at+1 ..= last`, where
/// `last` is the last non-filler line indented deeper than `indent`.
fn block_end(lines: &[Line<'_>], at: usize, indent: usize) -> usize {
    let mut last = at;
    for (i, l) in lines.iter().enumerate().skip(at + 1) {
        if l.is_filler() {
            continue;
        }
        if l.indent() <= indent {
            break;
        }
        last = i;
    }
    last
}

/// Finds `name` among the keys at `indent` in lines `from..=to`.
fn find_key(lines: &[Line<'_>], from: usize, to: usize, indent: usize, name: &str) -> Option<(usize, usize)> {
    for (i, l) in lines.iter().enumerate().take(to + 1).skip(from) {
        if l.is_filler() || l.indent() != indent {
            continue;
        }
        if let Some((k, value_at)) = key_of(l.text, indent)
            && k == name
        {
            return Some((i, value_at));
        }
    }
    None
}

fn quote_key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain && !matches!(k, "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n") {
        k.to_string()
    } else {
        serde_json::to_string(k).expect("strings serialize")
    }
}

/// Lines setting `keys` (nested) to `fn::secret: <value>`, starting at `indent`.
fn nested(keys: &[String], indent: usize, quoted_value: &str, nl: &str) -> String {
    let mut out = String::new();
    for (d, k) in keys.iter().enumerate() {
        out.push_str(&" ".repeat(indent + 2 * d));
        out.push_str(&quote_key(k));
        out.push(':');
        out.push_str(nl);
    }
    out.push_str(&" ".repeat(indent + 2 * keys.len()));
    out.push_str("fn::secret: ");
    out.push_str(quoted_value);
    out.push_str(nl);
    out
}

fn set_in(doc: &mut Value, keys: &[String], leaf: Value) {
    let mut cur = doc;
    for k in keys {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        let m = cur.as_mapping_mut().expect("made a mapping");
        cur = m.entry(Value::String(k.clone())).or_insert(Value::Null);
    }
    *cur = leaf;
}

/// Sets `values.<path>` of the definition to `fn::secret: <value>`.
pub(crate) fn set_secret(yaml: &str, path: &PropertyPath, value: &SecretValue, what: &str) -> Result<Edited> {
    let refuse =
        |why: String| Error::not_supported(format!("editing the definition of {what}: {why}; edit it by hand"));
    let mut keys = vec!["values".to_string()];
    for s in path.steps() {
        match s {
            Step::Key(k) => keys.push(k.clone()),
            Step::Index(_) => {
                return Err(refuse(format!(
                    "`{path}` has an array index, which a write cannot target"
                )));
            }
        }
    }
    let text = value
        .expose_str()
        .ok_or_else(|| Error::invalid(format!("write to `{path}` of {what}: the value is not UTF-8 text")))?;
    let quoted = serde_json::to_string(text).expect("strings serialize");

    // Parse errors may quote the document; keep only the position.
    let parse = |t: &str| -> Result<Value> {
        if t.trim().is_empty() {
            return Ok(Value::Mapping(Mapping::new()));
        }
        serde_norway::from_str::<Value>(t).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            Error::invalid(format!("the definition of {what} is not valid YAML{at}"))
        })
    };
    let original = parse(yaml)?;
    if !(original.is_mapping() || original.is_null()) {
        return Err(refuse("the definition is not a mapping".into()));
    }
    let existed = {
        let mut cur = Some(&original);
        for k in &keys {
            cur = cur.and_then(|c| c.as_mapping()).and_then(|m| m.get(k.as_str()));
        }
        cur.is_some()
    };

    let nl = if yaml.contains("\r\n") { "\r\n" } else { "\n" };
    let ls = lines(yaml);
    let mut out = String::with_capacity(yaml.len() + quoted.len() + 64);
    // Search the path down the blocks.
    let (mut from, mut to, mut indent) = (0usize, ls.len().saturating_sub(1), 0usize);
    let mut found_depth = 0;
    let mut empty_flow = false;
    let mut parent: Option<(usize, usize)> = None; // (line, value_at) of the deepest key found
    for (d, k) in keys.iter().enumerate() {
        if ls.is_empty() {
            break;
        }
        // The indentation of this block's keys: the first content line's.
        if d > 0 {
            let (pl, value_at) = parent.expect("set on the previous step");
            let inline = inline_value(ls[pl].text, value_at);
            if is_empty_flow(inline) {
                empty_flow = true;
                break; // `key: {}`: the new keys replace the empty mapping
            }
            if !inline.is_empty() {
                return Err(refuse(format!(
                    "`{}` on line {} has an inline value (`{{...}}` or a scalar), not an indented block",
                    keys[d - 1],
                    pl + 1
                )));
            }
            let end = block_end(&ls, pl, indent);
            if end == pl {
                break; // an empty block: insert below the parent key
            }
            from = pl + 1;
            to = end;
            indent = ls[from..=to]
                .iter()
                .find(|l| !l.is_filler())
                .map(Line::indent)
                .unwrap_or(indent + 2);
        }
        match find_key(&ls, from, to, indent, k) {
            Some(hit) => {
                parent = Some(hit);
                found_depth = d + 1;
            }
            None => break,
        }
    }

    if found_depth == keys.len() {
        // Replace the value of the existing key: the rest of its line and its block.
        let (kl, value_at) = parent.expect("found");
        let end = block_end(&ls, kl, indent);
        let child = if end > kl {
            ls[kl + 1..=end]
                .iter()
                .find(|l| !l.is_filler())
                .map(Line::indent)
                .unwrap_or(indent + 2)
        } else {
            indent + 2
        };
        let child = if child > indent { child } else { indent + 2 };
        out.push_str(&yaml[..ls[kl].start + value_at]);
        out.push_str(nl);
        out.push_str(&" ".repeat(child));
        out.push_str("fn::secret: ");
        out.push_str(&quoted);
        out.push_str(&yaml[ls[end].end()..]);
    } else if empty_flow {
        // `key: {}` becomes `key:` and the new keys below it.
        let (pl, value_at) = parent.expect("found");
        let block = nested(&keys[found_depth..], ls[pl].indent() + 2, &quoted, nl);
        out.push_str(&yaml[..ls[pl].start + value_at]);
        out.push_str(nl);
        out.push_str(block.strip_suffix(nl).unwrap_or(&block));
        out.push_str(&yaml[ls[pl].end()..]);
    } else {
        // Insert the missing keys after the deepest existing block.
        let missing = &keys[found_depth..];
        let (after, child_indent) = match parent {
            None => (ls.last().map(Line::end).unwrap_or(0), 0),
            Some((pl, _)) => {
                let pindent = ls[pl].indent();
                let end = block_end(&ls, pl, pindent);
                let ci = if end > pl {
                    ls[pl + 1..=end]
                        .iter()
                        .find(|l| !l.is_filler())
                        .map(Line::indent)
                        .unwrap_or(pindent + 2)
                } else {
                    pindent + 2
                };
                (ls[end].end(), ci)
            }
        };
        let head = &yaml[..after];
        out.push_str(head);
        let rest = &yaml[after..];
        // Keep the newline that ended the block's last line before the insertion.
        let (lead, tail) = match rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n')) {
            Some(t) => (&rest[..rest.len() - t.len()], t),
            None => ("", rest),
        };
        out.push_str(lead);
        if lead.is_empty() && !head.is_empty() && !head.ends_with('\n') {
            out.push_str(nl);
        }
        out.push_str(&nested(missing, child_indent, &quoted, nl));
        out.push_str(tail);
    }

    // Check: the edited document is the original with exactly this path set.
    let mut expected = if original.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        original
    };
    let mut leaf = Mapping::new();
    leaf.insert(Value::String("fn::secret".into()), Value::String(text.to_string()));
    set_in(&mut expected, &keys, Value::Mapping(leaf));
    let edited = parse(&out)?;
    if edited != expected {
        return Err(refuse(format!(
            "the definition's layout around `{path}` is not one this edit handles safely"
        )));
    }
    Ok(Edited { yaml: out, existed })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"# aphiria.com/Preview — edited by hand and by secretsync
imports:
  - aphiria.com/base   # shared values
values:
  region: nyc3
  pulumiConfig:
    "digitalocean:token":
      fn::secret: dop_v1_old # rotate yearly
    "postgresql:user": aphiria
    "postgresql:password":
      fn::secret: old-password

    # grafana
    grafana:smtpPort: "587"
    derived: ${pulumiConfig["postgresql:user"]}
  environmentVariables:
    DB_USER: ${pulumiConfig["postgresql:user"]}
"#;

    fn set(yaml: &str, path: &str, v: &str) -> Result<Edited> {
        set_secret(yaml, &PropertyPath::parse(path).unwrap(), &SecretValue::from(v), "test")
    }

    fn unchanged_except(before: &str, after: &str, changed: &[&str]) {
        let a: Vec<&str> = before.lines().collect();
        let b: Vec<&str> = after.lines().collect();
        let removed: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
        for r in &removed {
            assert!(changed.iter().any(|c| r.contains(c)), "line changed: {r:?}\n{after}");
        }
    }

    #[test]
    fn replaces_an_existing_secret_keeping_every_other_line() {
        let e = set(SEED, r#"pulumiConfig["postgresql:password"]"#, "new \"pw\"").unwrap();
        assert!(e.existed);
        let expected = SEED.replace("fn::secret: old-password", r#"fn::secret: "new \"pw\"""#);
        assert_eq!(e.yaml, expected);
    }

    #[test]
    fn replaces_a_plain_value_with_a_secret() {
        let e = set(SEED, r#"pulumiConfig["postgresql:user"]"#, "admin").unwrap();
        assert!(e.existed);
        assert!(
            e.yaml
                .contains("    \"postgresql:user\":\n      fn::secret: \"admin\"\n"),
            "{}",
            e.yaml
        );
        unchanged_except(SEED, &e.yaml, &["postgresql:user"]);
    }

    #[test]
    fn inserts_missing_keys_at_the_end_of_their_block() {
        let e = set(SEED, "pulumiConfig.newKey", "v").unwrap();
        assert!(!e.existed);
        assert!(
            e.yaml.contains("    derived: ${pulumiConfig[\"postgresql:user\"]}\n    newKey:\n      fn::secret: \"v\"\n  environmentVariables:"),
            "{}",
            e.yaml
        );
        unchanged_except(SEED, &e.yaml, &[]);
        let e = set(SEED, "brand.new[\"a:b\"]", "v").unwrap();
        assert!(
            e.yaml
                .ends_with("  brand:\n    new:\n      \"a:b\":\n        fn::secret: \"v\"\n"),
            "{}",
            e.yaml
        );
        let e = set("imports: []\n", "x", "v").unwrap();
        assert_eq!(e.yaml, "imports: []\nvalues:\n  x:\n    fn::secret: \"v\"\n");
        let e = set("", "x", "v").unwrap();
        assert_eq!(e.yaml, "values:\n  x:\n    fn::secret: \"v\"\n");
        let e = set("values: {}   # empty\nimports: []\n", "a.b", "v").unwrap();
        assert_eq!(e.yaml, "values:\n  a:\n    b:\n      fn::secret: \"v\"\nimports: []\n");
        let e = set("values:\n", "x", "v").unwrap();
        assert_eq!(e.yaml, "values:\n  x:\n    fn::secret: \"v\"\n");
    }

    #[test]
    fn refuses_layouts_it_cannot_edit_safely() {
        let e = set("values:\n  pulumiConfig: {a: b}\n", "pulumiConfig.c", "v")
            .err()
            .unwrap();
        assert!(matches!(e, Error::NotSupported { .. }), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(set(SEED, "files[0]", "v").is_err());
        let e = set("values: [\n", "x", "SECRETVALUE").err().unwrap();
        assert!(!e.to_string().contains("SECRETVALUE"));
    }
}
