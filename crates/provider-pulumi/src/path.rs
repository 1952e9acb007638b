//! ESC property paths (`pulumiConfig["postgresql:password"]`, `pulumiConfig.dbHost`,
//! `files[0]`) and the resolved environment they are looked up in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use secretsync_core::{Error, Result, SecretValue};
use serde_json::Value;

/// One step of a [`PropertyPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A parsed ESC property path, as ESO's Pulumi provider takes in `remoteRef.key`:
/// dotted names (`a.b`), quoted subscripts (`a["b:c"]`, with `\"` and `\\` escapes) and
/// indices (`a[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PropertyPath(pub Vec<Step>);

fn bare(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| matches!(c, '.' | '[' | ']' | '"' | '\\') || c.is_whitespace())
}

/// Names shown without quotes: letters, digits, `_` and `-`, as Pulumi's docs write them.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl PropertyPath {
    /// Parses a path; the error names the path and the column, never anything else.
    pub fn parse(path: &str) -> Result<Self> {
        let bad = |at: usize, why: &str| {
            Error::invalid(format!(
                "ESC property path `{path}`: {why} at column {} (use a.b, a[\"b:c\"] or a[0])",
                at + 1
            ))
        };
        let b = path.as_bytes();
        let mut steps = vec![];
        let mut i = 0;
        let mut need_name = true;
        while i < b.len() {
            match b[i] {
                b'[' => {
                    let open = i;
                    i += 1;
                    if b.get(i) == Some(&b'"') {
                        i += 1;
                        let mut s = String::new();
                        loop {
                            match b.get(i) {
                                None => return Err(bad(open, "unterminated quoted key")),
                                Some(b'\\') => {
                                    let ch = path[i + 1..].chars().next().ok_or_else(|| bad(i, "dangling escape"))?;
                                    s.push(ch);
                                    i += 1 + ch.len_utf8();
                                }
                                Some(b'"') => {
                                    i += 1;
                                    break;
                                }
                                Some(_) => {
                                    let ch = path[i..].chars().next().expect("in bounds");
                                    s.push(ch);
                                    i += ch.len_utf8();
                                }
                            }
                        }
                        steps.push(Step::Key(s));
                    } else {
                        let end = path[i..]
                            .find(']')
                            .map(|e| e + i)
                            .ok_or_else(|| bad(open, "missing `]`"))?;
                        let n = path[i..end]
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| bad(i, "an index must be a number or a quoted key"))?;
                        steps.push(Step::Index(n));
                        i = end;
                    }
                    if b.get(i) != Some(&b']') {
                        return Err(bad(i, "expected `]`"));
                    }
                    i += 1;
                    need_name = false;
                }
                b'.' if !need_name => {
                    i += 1;
                    need_name = true;
                }
                _ if need_name => {
                    let end = path[i..].find(['.', '[']).map(|e| e + i).unwrap_or(path.len());
                    let name = &path[i..end];
                    if !bare(name) {
                        return Err(bad(
                            i,
                            "a name may not contain quotes, `]` or spaces; quote it as [\"...\"]",
                        ));
                    }
                    steps.push(Step::Key(name.to_string()));
                    i = end;
                    need_name = false;
                }
                _ => return Err(bad(i, "expected `.` or `[`")),
            }
        }
        if steps.is_empty() || need_name {
            return Err(bad(path.len().saturating_sub(1), "the path is empty or ends with `.`"));
        }
        Ok(Self(steps))
    }

    /// A path of plain keys.
    pub fn of_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self(keys.into_iter().map(|k| Step::Key(k.to_string())).collect())
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.0
    }
}

impl fmt::Display for PropertyPath {
    /// The canonical form: bare names where possible, `["..."]` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Step::Key(k) if plain_name(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Step::Key(k) => {
                    f.write_str("[\"")?;
                    for c in k.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"]")?;
                }
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A resolved ESC value with its metadata dropped (only `unknown` is kept, as an error).
pub(crate) enum Node {
    /// A string, as its bytes.
    Str(SecretValue),
    /// A number, boolean or null, as JSON text.
    Json(SecretValue),
    /// An object.
    Object(BTreeMap<String, Node>),
    /// An array.
    Array(Vec<Node>),
    /// ESC could not resolve this value (`"unknown": true`).
    Unknown,
}

/// What reading an open environment gave: the properties, and the environments their
/// values came from (`trace.def.environment`), and whether any `fn::open` provider ran.
pub(crate) struct Resolved {
    pub properties: BTreeMap<String, Node>,
    pub sources: BTreeSet<String>,
    pub has_open: bool,
}

/// Parses `{"properties": {name: Value}, "exprs": ...}` of `ReadOpenEnvironment`.
pub(crate) fn resolve(body: &Value) -> Option<Resolved> {
    let props = body.get("properties")?.as_object()?;
    let mut sources = BTreeSet::new();
    let mut properties = BTreeMap::new();
    for (k, v) in props {
        properties.insert(k.clone(), node(v, &mut sources)?);
    }
    let has_open = body.get("exprs").is_some_and(mentions_open);
    Some(Resolved {
        properties,
        sources,
        has_open,
    })
}

fn mentions_open(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with("fn::open"))
                || m.values().any(mentions_open)
        }
        Value::Array(a) => a.iter().any(mentions_open),
        _ => false,
    }
}

/// One ESC `Value` (`{"value", "secret", "unknown", "trace"}`) to a [`Node`].
fn node(v: &Value, sources: &mut BTreeSet<String>) -> Option<Node> {
    let obj = v.as_object()?;
    if let Some(env) = obj
        .get("trace")
        .and_then(|t| t.get("def"))
        .and_then(|d| d.get("environment"))
        .and_then(Value::as_str)
        && !sources.contains(env)
    {
        sources.insert(env.to_string());
    }
    if obj.get("unknown").and_then(Value::as_bool) == Some(true) {
        return Some(Node::Unknown);
    }
    Some(match obj.get("value").unwrap_or(&Value::Null) {
        Value::String(s) => Node::Str(SecretValue::from(s.as_str())),
        Value::Object(m) => {
            let mut out = BTreeMap::new();
            for (k, child) in m {
                out.insert(k.clone(), node(child, sources)?);
            }
            Node::Object(out)
        }
        Value::Array(a) => Node::Array(a.iter().map(|c| node(c, sources)).collect::<Option<Vec<_>>>()?),
        other => Node::Json(SecretValue::from(other.to_string())),
    })
}

impl Node {
    /// The child at `steps`, or the first step that is missing.
    pub(crate) fn lookup<'a>(props: &'a BTreeMap<String, Node>, path: &PropertyPath) -> Result<&'a Node, usize> {
        let mut cur: Option<&Node> = None;
        for (i, step) in path.0.iter().enumerate() {
            let next = match (cur, step) {
                (None, Step::Key(k)) => props.get(k),
                (None, Step::Index(_)) => None,
                (Some(Node::Object(m)), Step::Key(k)) => m.get(k),
                (Some(Node::Array(a)), Step::Index(n)) => a.get(*n),
                _ => None,
            };
            cur = Some(next.ok_or(i)?);
        }
        cur.ok_or(0)
    }

    /// Whether any part is unknown.
    #[cfg(test)]
    pub(crate) fn has_unknown(&self) -> bool {
        match self {
            Node::Unknown => true,
            Node::Object(m) => m.values().any(Node::has_unknown),
            Node::Array(a) => a.iter().any(Node::has_unknown),
            _ => false,
        }
    }

    /// The value a target gets: a string's text, other scalars as JSON, objects and arrays
    /// as JSON of their plain values. `None` if any part is unknown.
    pub(crate) fn to_value(&self) -> Option<SecretValue> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Json(j) => Some(j.clone()),
            Node::Unknown => None,
            other => {
                let mut out = Vec::new();
                other.write_json(&mut out)?;
                Some(SecretValue::new(out))
            }
        }
    }

    fn write_json(&self, out: &mut Vec<u8>) -> Option<()> {
        match self {
            Node::Unknown => return None,
            Node::Str(s) => {
                let text = match s.expose_str() {
                    Some(t) => serde_json::to_vec(t).ok()?,
                    None => serde_json::to_vec(&String::from_utf8_lossy(s.expose())).ok()?,
                };
                out.extend_from_slice(&text);
            }
            Node::Json(j) => out.extend_from_slice(j.expose()),
            Node::Object(m) => {
                out.push(b'{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&serde_json::to_vec(k).ok()?);
                    out.push(b':');
                    v.write_json(out)?;
                }
                out.push(b'}');
            }
            Node::Array(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write_json(out)?;
                }
                out.push(b']');
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_eso_examples() {
        let p = |s: &str| PropertyPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            p(r#"pulumiConfig["postgresql:password"]"#).0,
            vec![
                Step::Key("pulumiConfig".into()),
                Step::Key("postgresql:password".into())
            ]
        );
        assert_eq!(
            p("root.array[0].nested").0,
            vec![
                Step::Key("root".into()),
                Step::Key("array".into()),
                Step::Index(0),
                Step::Key("nested".into())
            ]
        );
        assert_eq!(
            p(r#"["root key with \"escaped\" quotes"].nested"#).0[0],
            Step::Key(r#"root key with "escaped" quotes"#.into())
        );
        assert_eq!(p(r#"root["key with a ."]"#).0[1], Step::Key("key with a .".into()));
        assert_eq!(p("a-b_c").0, vec![Step::Key("a-b_c".into())]);
        for bad in ["", "a.", "a[", "a[x]", r#"a["x"#, "a..b", ".a"] {
            assert!(PropertyPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for s in [
            r#"pulumiConfig["postgresql:password"]"#,
            "pulumiConfig.dbHost",
            "a[0].b",
            r#"["x.y"].z"#,
        ] {
            let p = PropertyPath::parse(s).unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(PropertyPath::parse(&p.to_string()).unwrap(), p);
        }
    }

    #[test]
    fn resolves_values_without_metadata() {
        let body = serde_json::json!({"properties": {
            "pulumiConfig": {"value": {
                "db": {"value": {"host": {"value": "h", "trace": {}}, "port": {"value": 5432, "trace": {}}}, "trace": {}},
                "pw": {"value": "s3", "secret": true, "trace": {"def": {"environment": "p/base"}}},
                "dyn": {"value": null, "unknown": true, "trace": {}}
            }, "trace": {"def": {"environment": "p/e"}}}
        }});
        let r = resolve(&body).unwrap();
        let get = |s: &str| Node::lookup(&r.properties, &PropertyPath::parse(s).unwrap());
        assert_eq!(
            get("pulumiConfig.db")
                .ok()
                .and_then(Node::to_value)
                .unwrap()
                .expose_str(),
            Some(r#"{"host":"h","port":5432}"#)
        );
        assert_eq!(
            get("pulumiConfig.pw")
                .ok()
                .and_then(Node::to_value)
                .unwrap()
                .expose_str(),
            Some("s3")
        );
        assert!(get("pulumiConfig.dyn").unwrap().has_unknown());
        assert!(get("pulumiConfig").unwrap().to_value().is_none());
        assert_eq!(get("pulumiConfig.nope").err(), Some(1));
        assert!(r.sources.contains("p/base"));
    }
}
