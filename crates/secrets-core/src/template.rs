//! The subset of Go templates (ESO engine v2) that `target.template.data` and
//! `rewrite.transform` use.
//!
//! Supported:
//! - text and actions `{{ ... }}`, with trim markers `{{-` / `-}}` and comments `{{/* */}}`;
//! - fields `.key` (and `.a.b` into `fromJson` results), `.` itself, string literals
//!   (`"..."`, `` `...` ``), numbers, `true`/`false`, parentheses;
//! - pipelines `.key | b64dec | upper`, where the piped value is the last argument;
//! - functions: `b64enc`, `b64dec`, `upper`, `lower`, `trim`, `trimPrefix`, `trimSuffix`,
//!   `replace`, `quote`, `squote`, `toJson`, `fromJson`, `toString`, `default`, `index`,
//!   `printf` (`%s %v %d %q %%`), `indent`, `nindent`, `sha256sum`.
//!
//! Not supported, and a clear error at load time: control actions (`if`, `range`, `with`,
//! `define`, `template`, `block`), variables (`$x`), and any other function. A key missing
//! from the data is an error, as in ESO (`missingkey=error`). Rendering output stays in
//! zeroized buffers; errors name keys and functions, never values.

use std::collections::BTreeMap;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::value::SecretValue;

/// The data a template sees: `.key` is the value of `key`.
pub type TemplateContext = BTreeMap<String, SecretValue>;

/// Widest `indent` / `nindent` accepted.
pub const MAX_INDENT: u64 = 1024;

/// Functions this engine implements.
pub const FUNCTIONS: &[&str] = &[
    "b64enc",
    "b64dec",
    "upper",
    "lower",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "replace",
    "quote",
    "squote",
    "toJson",
    "fromJson",
    "toString",
    "default",
    "index",
    "printf",
    "indent",
    "nindent",
    "sha256sum",
];

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
}

#[derive(Debug, Clone)]
struct Pipeline(Vec<Command>);

#[derive(Debug, Clone)]
struct Command(Vec<Arg>);

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Str(String),
    Num(String),
    Bool(bool),
    Func(String),
    Sub(Pipeline),
}

/// A value during evaluation.
#[derive(Clone)]
enum Val {
    /// A string literal of the template itself: not secret, may be quoted in errors.
    Lit(String),
    Text(SecretValue),
    Json(serde_json::Value),
    Dot,
}

impl Template {
    /// Parses a template; errors name the unsupported function or action.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut nodes = vec![];
        let mut rest = src;
        let mut trim_next_text = false;
        while let Some(start) = rest.find("{{") {
            let mut text = &rest[..start];
            if trim_next_text {
                text = text.trim_start();
            }
            let after = &rest[start + 2..];
            let (trim_left, body_start) = match after.strip_prefix("- ") {
                Some(_) => (true, 2),
                None if after.starts_with("-\t") || after.starts_with("-\n") => (true, 2),
                None => (false, 0),
            };
            if trim_left {
                text = text.trim_end();
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_string()));
            }
            let body_all = &after[body_start..];
            let end = find_action_end(body_all).ok_or("unclosed action: missing `}}`")?;
            let mut body = &body_all[..end];
            trim_next_text = false;
            if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
                body = &body[..body.len() - 2];
                trim_next_text = true;
            }
            rest = &body_all[end + 2..];
            let trimmed = body.trim();
            if trimmed.starts_with("/*") {
                if !trimmed.ends_with("*/") {
                    return Err("unclosed comment".into());
                }
                continue;
            }
            let tokens = lex(trimmed)?;
            let mut p = Parser { tokens, pos: 0 };
            let pipeline = p.pipeline()?;
            if p.pos != p.tokens.len() {
                return Err(format!("unexpected `{}` in action", p.tokens[p.pos].show()));
            }
            nodes.push(Node::Action(pipeline));
        }
        let text = if trim_next_text { rest.trim_start() } else { rest };
        if !text.is_empty() {
            nodes.push(Node::Text(text.to_string()));
        }
        Ok(Template { nodes })
    }

    /// Renders with `ctx` as `.`.
    pub fn render(&self, ctx: &TemplateContext) -> Result<SecretValue, String> {
        let mut out = Zeroizing::new(Vec::new());
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.extend_from_slice(t.as_bytes()),
                Node::Action(p) => {
                    let v = eval_pipeline(p, ctx)?;
                    write_val(&v, ctx, &mut out)?;
                }
            }
            within_limit(out.len(), "the template")?;
        }
        Ok(SecretValue::new(std::mem::take(&mut *out)))
    }
}

fn find_action_end(s: &str) -> Option<usize> {
    // `}}` outside string literals.
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if q == b'"' && b[i] == b'\\' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Ident(String),
    Str(String),
    Num(String),
    Pipe,
    LParen,
    RParen,
}

impl Tok {
    fn show(&self) -> String {
        match self {
            Tok::Field(f) => format!(".{}", f.join(".")),
            Tok::Ident(i) => i.clone(),
            Tok::Str(_) => "string".into(),
            Tok::Num(n) => n.clone(),
            Tok::Pipe => "|".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
        }
    }
}

const CONTROL: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut toks = vec![];
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1
            }
            '$' => return Err("variables (`$`) are not supported".into()),
            '"' => {
                let mut out = String::new();
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err("unterminated string literal".into());
                    };
                    i += 1;
                    match d {
                        '"' => break,
                        '\\' => {
                            let Some(&e) = chars.get(i) else {
                                return Err("unterminated string literal".into());
                            };
                            i += 1;
                            out.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                other => {
                                    return Err(format!("unsupported escape `\\{other}` in string literal"));
                                }
                            });
                        }
                        d => out.push(d),
                    }
                }
                toks.push(Tok::Str(out));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&d| d == '`')
                    .ok_or("unterminated raw string")?
                    + start;
                toks.push(Tok::Str(chars[start..end].iter().collect()));
                i = end + 1;
            }
            '.' => {
                let mut parts = vec![];
                let mut cur = String::new();
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                    if chars[i] == '.' {
                        parts.push(std::mem::take(&mut cur));
                    } else {
                        cur.push(chars[i]);
                    }
                    i += 1;
                }
                if !cur.is_empty() || !parts.is_empty() {
                    parts.push(cur);
                }
                if parts.iter().any(String::is_empty) {
                    return Err("invalid field name".into());
                }
                toks.push(Tok::Field(parts));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                toks.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let id: String = chars[start..i].iter().collect();
                if chars.get(i) == Some(&':') {
                    return Err("variable declarations are not supported".into());
                }
                toks.push(Tok::Ident(id));
            }
            other => return Err(format!("unexpected character `{other}` in action")),
        }
    }
    Ok(toks)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let mut cmds = vec![self.command()?];
        while self.tokens.get(self.pos) == Some(&Tok::Pipe) {
            self.pos += 1;
            cmds.push(self.command()?);
        }
        Ok(Pipeline(cmds))
    }

    fn command(&mut self) -> Result<Command, String> {
        let mut args = vec![];
        while let Some(t) = self.tokens.get(self.pos).cloned() {
            match t {
                Tok::Pipe | Tok::RParen => break,
                Tok::LParen => {
                    self.pos += 1;
                    let p = self.pipeline()?;
                    if self.tokens.get(self.pos) != Some(&Tok::RParen) {
                        return Err("missing `)`".into());
                    }
                    self.pos += 1;
                    args.push(Arg::Sub(p));
                }
                Tok::Field(f) => {
                    self.pos += 1;
                    args.push(Arg::Field(f));
                }
                Tok::Str(s) => {
                    self.pos += 1;
                    args.push(Arg::Str(s));
                }
                Tok::Num(n) => {
                    self.pos += 1;
                    let v: f64 = n.parse().map_err(|_| format!("invalid number `{n}`"))?;
                    let _ = v;
                    args.push(Arg::Num(n));
                }
                Tok::Ident(id) => {
                    self.pos += 1;
                    match id.as_str() {
                        "true" => args.push(Arg::Bool(true)),
                        "false" => args.push(Arg::Bool(false)),
                        c if CONTROL.contains(&c) => {
                            return Err(format!(
                                "unsupported action `{c}`: control structures are not supported"
                            ));
                        }
                        f if FUNCTIONS.contains(&f) => {
                            if !args.is_empty() {
                                return Err(format!("function `{f}` must come first in a command"));
                            }
                            args.push(Arg::Func(f.to_string()))
                        }
                        f => {
                            return Err(format!(
                                "unsupported function `{f}` (supported: {})",
                                FUNCTIONS.join(", ")
                            ));
                        }
                    }
                }
            }
        }
        if args.is_empty() {
            return Err("empty command".into());
        }
        Ok(Command(args))
    }
}

/// Every text a template builds, intermediate or final, stays under the 1 MiB target limit:
/// a chain of `replace` or a `printf` of many arguments must fail cleanly, not exhaust memory.
fn within_limit(len: usize, what: &str) -> Result<(), String> {
    if len > crate::value::MAX_TARGET_BYTES {
        return Err(format!("{what}: the text would be over the 1 MiB target limit"));
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, ctx: &TemplateContext) -> Result<Val, String> {
    let mut piped: Option<Val> = None;
    for cmd in &p.0 {
        let v = eval_command(cmd, ctx, piped.take())?;
        if let Val::Text(t) = &v {
            within_limit(t.len(), "a pipeline")?;
        }
        piped = Some(v);
    }
    Ok(piped.expect("a pipeline has at least one command"))
}

fn eval_arg(a: &Arg, ctx: &TemplateContext) -> Result<Val, String> {
    match a {
        Arg::Field(path) => {
            if path.is_empty() {
                return Ok(Val::Dot);
            }
            let first = &path[0];
            let v = ctx
                .get(first)
                .ok_or_else(|| format!("map has no entry for key `{first}`"))?;
            if path.len() == 1 {
                return Ok(Val::Text(v.clone()));
            }
            let json: serde_json::Value = v
                .expose_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .ok_or_else(|| format!("`.{first}` is not a JSON object, cannot read `.{}`", path.join(".")))?;
            field_of(Val::Json(json), &path[1..], &path.join("."))
        }
        Arg::Str(s) => Ok(Val::Lit(s.clone())),
        Arg::Num(raw) => Ok(Val::Json(
            serde_json::from_str(raw).unwrap_or(serde_json::Value::String(raw.clone())),
        )),
        Arg::Bool(b) => Ok(Val::Json(serde_json::Value::Bool(*b))),
        Arg::Sub(p) => eval_pipeline(p, ctx),
        Arg::Func(f) => call(f, vec![], ctx),
    }
}

fn field_of(v: Val, path: &[String], full: &str) -> Result<Val, String> {
    let mut cur = match v {
        Val::Json(j) => j,
        _ => return Err(format!("cannot read field `.{full}`")),
    };
    for p in path {
        cur = match cur {
            serde_json::Value::Object(mut m) => m
                .remove(p)
                .ok_or_else(|| format!("map has no entry for key `{p}` (in `.{full}`)"))?,
            _ => {
                return Err(format!("cannot read field `{p}` of a non-object (in `.{full}`)"));
            }
        };
    }
    Ok(Val::Json(cur))
}

fn eval_command(cmd: &Command, ctx: &TemplateContext, piped: Option<Val>) -> Result<Val, String> {
    match &cmd.0[0] {
        Arg::Func(f) => {
            let mut args = cmd.0[1..]
                .iter()
                .map(|a| eval_arg(a, ctx))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(p) = piped {
                args.push(p);
            }
            call(f, args, ctx)
        }
        first => {
            if cmd.0.len() > 1 {
                return Err("only a function can take arguments".into());
            }
            if piped.is_some() {
                return Err("can only pipe into a function".into());
            }
            eval_arg(first, ctx)
        }
    }
}

fn text(v: &Val, ctx: &TemplateContext) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut out = Zeroizing::new(vec![]);
    write_val(v, ctx, &mut out)?;
    Ok(out)
}

fn text_str(v: &Val, ctx: &TemplateContext, func: &str) -> Result<Zeroizing<String>, String> {
    let b = text(v, ctx)?;
    String::from_utf8(b.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| format!("{func}: argument is not UTF-8 text"))
}

fn write_val(v: &Val, ctx: &TemplateContext, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Val::Text(s) => out.extend_from_slice(s.expose()),
        Val::Lit(s) => out.extend_from_slice(s.as_bytes()),
        Val::Json(serde_json::Value::String(s)) => out.extend_from_slice(s.as_bytes()),
        Val::Json(serde_json::Value::Null) => {}
        Val::Json(j) => out.extend_from_slice(j.to_string().as_bytes()),
        Val::Dot => {
            let m: serde_json::Map<_, _> = ctx
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        serde_json::Value::String(String::from_utf8_lossy(v.expose()).into_owned()),
                    )
                })
                .collect();
            out.extend_from_slice(serde_json::Value::Object(m).to_string().as_bytes())
        }
    }
    Ok(())
}

fn json_of(v: &Val, ctx: &TemplateContext) -> Result<serde_json::Value, String> {
    Ok(match v {
        Val::Json(j) => j.clone(),
        Val::Lit(s) => serde_json::Value::String(s.clone()),
        other => serde_json::Value::String(String::from_utf8_lossy(&text(other, ctx)?).into_owned()),
    })
}

fn t(bytes: Vec<u8>) -> Val {
    Val::Text(SecretValue::new(bytes))
}

fn arity(f: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("function `{f}` takes {n} argument(s), got {}", args.len()));
    }
    Ok(())
}

fn call(f: &str, args: Vec<Val>, ctx: &TemplateContext) -> Result<Val, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match f {
        "b64enc" => {
            arity(f, &args, 1)?;
            Ok(t(b64.encode(&*text(&args[0], ctx)?).into_bytes()))
        }
        "b64dec" => {
            arity(f, &args, 1)?;
            let input = text(&args[0], ctx)?;
            b64.decode(input.trim_ascii())
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(input.trim_ascii()))
                .map(t)
                .map_err(|_| "b64dec: argument is not valid base64".to_string())
        }
        "upper" | "lower" | "trim" | "toString" | "quote" | "squote" | "sha256sum" => {
            arity(f, &args, 1)?;
            let s = text_str(&args[0], ctx, f)?;
            Ok(t(match f {
                "upper" => s.to_uppercase().into_bytes(),
                "lower" => s.to_lowercase().into_bytes(),
                "trim" => s.trim().as_bytes().to_vec(),
                "quote" => serde_json::Value::String(s.to_string()).to_string().into_bytes(),
                "squote" => format!("'{}'", &*s).into_bytes(),
                "sha256sum" => {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(s.as_bytes())).into_bytes()
                }
                _ => s.as_bytes().to_vec(),
            }))
        }
        "trimPrefix" | "trimSuffix" => {
            arity(f, &args, 2)?;
            let affix = text_str(&args[0], ctx, f)?;
            let s = text_str(&args[1], ctx, f)?;
            let r = if f == "trimPrefix" {
                s.strip_prefix(affix.as_str())
            } else {
                s.strip_suffix(affix.as_str())
            };
            Ok(t(r.unwrap_or(&s).as_bytes().to_vec()))
        }
        "replace" => {
            arity(f, &args, 3)?;
            let (old, new, s) = (
                text_str(&args[0], ctx, f)?,
                text_str(&args[1], ctx, f)?,
                text_str(&args[2], ctx, f)?,
            );
            // Size the result before building it: `replace` multiplies the text's length.
            let hits = if old.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(old.as_str()).count()
            };
            within_limit(s.len().saturating_add(hits.saturating_mul(new.len())), f)?;
            Ok(t(s.replace(old.as_str(), new.as_str()).into_bytes()))
        }
        "indent" | "nindent" => {
            arity(f, &args, 2)?;
            let n = match &args[0] {
                Val::Json(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(u64::MAX),
                _ => return Err(format!("{f}: first argument must be a number")),
            };
            if n > MAX_INDENT {
                return Err(format!("{f}: width over the limit of {MAX_INDENT}"));
            }
            let n = n as usize;
            let s = text_str(&args[1], ctx, f)?;
            let lines = s.lines().count().max(1);
            if s.len() + lines * (n + 1) > crate::value::MAX_TARGET_BYTES {
                return Err(format!("{f}: the indented text would be over the 1 MiB target limit"));
            }
            let pad = " ".repeat(n);
            let body = s.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n");
            Ok(t(if f == "nindent" { format!("\n{body}") } else { body }.into_bytes()))
        }
        "toJson" => {
            arity(f, &args, 1)?;
            Ok(t(json_of(&args[0], ctx)?.to_string().into_bytes()))
        }
        "fromJson" => {
            arity(f, &args, 1)?;
            let s = text_str(&args[0], ctx, f)?;
            serde_json::from_str(&s)
                .map(Val::Json)
                .map_err(|_| "fromJson: argument is not valid JSON".to_string())
        }
        "default" => {
            arity(f, &args, 2)?;
            let empty = match &args[1] {
                Val::Text(s) => s.is_empty(),
                Val::Lit(s) => s.is_empty(),
                Val::Json(j) => {
                    matches!(j, serde_json::Value::Null | serde_json::Value::Bool(false))
                        || j.as_str().is_some_and(str::is_empty)
                        || j.as_object().is_some_and(|o| o.is_empty())
                        || j.as_array().is_some_and(|a| a.is_empty())
                }
                Val::Dot => ctx.is_empty(),
            };
            Ok(if empty { args[0].clone() } else { args[1].clone() })
        }
        "index" => {
            if args.len() < 2 {
                return Err("function `index` takes a map and at least one key".into());
            }
            let mut cur = args[0].clone();
            for (i, k) in args[1..].iter().enumerate() {
                let key = text_str(k, ctx, f)?;
                // Only a literal of the template may be quoted: a key computed from data is
                // a value, and errors never carry values.
                let missing = || match k {
                    Val::Lit(l) => format!("map has no entry for key `{l}`"),
                    _ => format!("map has no entry for the key given by argument {} of `index`", i + 2),
                };
                cur = match cur {
                    Val::Dot => Val::Text(ctx.get(key.as_str()).cloned().ok_or_else(missing)?),
                    Val::Json(serde_json::Value::Object(mut m)) => {
                        Val::Json(m.remove(key.as_str()).ok_or_else(missing)?)
                    }
                    Val::Text(s) => {
                        let j: serde_json::Value = s
                            .expose_str()
                            .and_then(|s| serde_json::from_str(s).ok())
                            .ok_or("index: value is not a map")?;
                        match j {
                            serde_json::Value::Object(mut m) => Val::Json(m.remove(key.as_str()).ok_or_else(missing)?),
                            _ => return Err("index: value is not a map".into()),
                        }
                    }
                    _ => return Err("index: value is not a map".into()),
                };
            }
            Ok(cur)
        }
        "printf" => {
            if args.is_empty() {
                return Err("function `printf` needs a format".into());
            }
            let fmt = text_str(&args[0], ctx, f)?;
            let mut out = Zeroizing::new(Vec::new());
            let mut rest = args[1..].iter();
            let mut chars = fmt.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
                match chars.next() {
                    Some('%') => out.push(b'%'),
                    Some(v @ ('s' | 'v' | 'd' | 'q')) => {
                        let a = rest.next().ok_or("printf: missing argument")?;
                        if v == 'q' {
                            let s = text_str(a, ctx, f)?;
                            out.extend_from_slice(serde_json::Value::String(s.to_string()).to_string().as_bytes());
                        } else {
                            write_val(a, ctx, &mut out)?;
                        }
                        within_limit(out.len(), f)?;
                    }
                    Some(o) => {
                        // Echo the verb only when the format is the template's own literal: a
                        // format computed from data would leak a character of a value.
                        return Err(match &args[0] {
                            Val::Lit(_) => format!("printf: unsupported verb `%{o}` (%s %v %d %q %%)"),
                            _ => "printf: unsupported verb in a format taken from data (%s %v %d %q %%)".to_string(),
                        });
                    }
                    None => return Err("printf: format ends with `%`".into()),
                }
            }
            Ok(t(std::mem::take(&mut *out)))
        }
        other => Err(format!("unsupported function `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, pairs: &[(&str, &str)]) -> Result<String, String> {
        let ctx: TemplateContext = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::from(*v)))
            .collect();
        Template::parse(src)?
            .render(&ctx)
            .map(|v| v.expose_str().unwrap().to_string())
    }

    #[test]
    fn interpolation_and_functions() {
        assert_eq!(
            render("postgres://{{ .user }}:{{ .pass }}@db", &[("user", "u"), ("pass", "p")]).unwrap(),
            "postgres://u:p@db"
        );
        assert_eq!(render("{{ .a | b64enc }}", &[("a", "hi")]).unwrap(), "aGk=");
        assert_eq!(render("{{ .a | b64dec | upper }}", &[("a", "aGk=")]).unwrap(), "HI");
        assert_eq!(render("{{ b64dec .a }}", &[("a", "aGk=")]).unwrap(), "hi");
        assert_eq!(render("{{ .a | lower | trim }}", &[("a", "  X ")]).unwrap(), "x");
        assert_eq!(
            render("{{ (fromJson .j).user }}", &[("j", r#"{"user":"bob"}"#)]).unwrap_err(),
            "only a function can take arguments"
        );
        assert_eq!(
            render("{{ index (fromJson .j) \"user\" }}", &[("j", r#"{"user":"bob"}"#)]).unwrap(),
            "bob"
        );
        assert_eq!(render("{{ .j.user }}", &[("j", r#"{"user":"bob"}"#)]).unwrap(), "bob");
        assert_eq!(render("{{ .a | toJson }}", &[("a", "x\"y")]).unwrap(), r#""x\"y""#);
        assert_eq!(render(r#"{{ index . "my-key" }}"#, &[("my-key", "v")]).unwrap(), "v");
        assert_eq!(
            render(r#"{{ printf "%s:%s" .a .b }}"#, &[("a", "1"), ("b", "2")]).unwrap(),
            "1:2"
        );
        assert_eq!(render("a {{- .x -}} b", &[("x", "X")]).unwrap(), "aXb");
        assert_eq!(render("{{/* note */}}v", &[]).unwrap(), "v");
        assert_eq!(
            render(r#"{{ .missing | default "d" }}"#, &[("missing", "")]).unwrap(),
            "d"
        );
        assert_eq!(
            render(
                r#"{"auths":{"r":{"auth":"{{ printf "%s:%s" .u .p | b64enc }}"}}}"#,
                &[("u", "a"), ("p", "b")]
            )
            .unwrap(),
            r#"{"auths":{"r":{"auth":"YTpi"}}}"#
        );
    }

    #[test]
    fn clear_errors() {
        let e = Template::parse("{{ .a | sha1sum }}").unwrap_err();
        assert!(e.starts_with("unsupported function `sha1sum`"), "{e}");
        let e = Template::parse("{{ if .a }}x{{ end }}").unwrap_err();
        assert!(e.contains("unsupported action `if`"), "{e}");
        assert!(Template::parse("{{ $x := .a }}").is_err());
        assert!(Template::parse("{{ .a ").is_err());
        let e = render("{{ .nope }}", &[("a", "secret-canary")]).unwrap_err();
        assert!(e.contains("`nope`") && !e.contains("canary"), "{e}");
        let e = render("{{ .a | b64dec }}", &[("a", "secret-canary!")]).unwrap_err();
        assert!(!e.contains("canary"), "{e}");
    }
}
