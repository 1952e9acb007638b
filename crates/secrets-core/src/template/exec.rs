//! The evaluator: walks a parsed tree over the data, as Go's `text/template` executes it
//! with `missingkey=error`.
//!
//! Bounds: the output and every text a function makes stay under the 1 MiB target limit,
//! lists under [`MAX_ITEMS`], `template` calls nest at most [`MAX_CALL_DEPTH`] deep, and a
//! render does at most [`MAX_STEPS`] steps, so no template can exhaust memory, the stack or
//! the sync's time. Errors name fields, functions and types, never values.

use std::collections::BTreeMap;

use super::TemplateContext;
use super::funcs::{self, Call, Param};
use super::parse::{Arg, Branch, Command, List, Node, Number, Pipe, Tree};
use super::value::{MapTy, Value, print_top};

/// Most elements a list may have.
pub(crate) const MAX_ITEMS: usize = 100_000;
/// Deepest nesting of `template` calls.
pub(crate) const MAX_CALL_DEPTH: usize = 100;
/// Most steps (nodes, commands, loop iterations) of one render.
pub(crate) const MAX_STEPS: usize = 5_000_000;

/// What a walk ended with.
enum Flow {
    Normal,
    Break,
    Continue,
}

/// The state of one render.
pub(crate) struct State<'a> {
    pub ctx: &'a TemplateContext,
    tree: &'a Tree,
    /// Variables in scope, innermost last; names borrow the tree's text.
    vars: Vec<(&'a str, Value)>,
    /// Values of the data's keys read so far (`.key`), each copied out of its wrapper once
    /// per render however often the template reads it.
    root_fields: Vec<(&'a str, Value)>,
    pub out: &'a mut Vec<u8>,
    /// `fromJson`'s parses of this render.
    json_memo: funcs::JsonMemo,
    depth: usize,
    steps: usize,
    now: super::gotime::Time,
}

type R<T> = Result<T, String>;

/// Whether a text or list is within the limits.
pub(crate) fn check_size(v: &Value) -> R<()> {
    match v {
        Value::Str(s) if s.len() > crate::value::MAX_TARGET_BYTES => {
            Err("the text would be over the 1 MiB target limit".into())
        }
        Value::List(l) if l.len() > MAX_ITEMS => Err(format!("a list would have over {MAX_ITEMS} elements")),
        Value::Map(m, _) if m.borrow().len() > MAX_ITEMS => Err(format!("a map would have over {MAX_ITEMS} entries")),
        _ => Ok(()),
    }
}

impl<'a> State<'a> {
    pub fn new(tree: &'a Tree, ctx: &'a TemplateContext, out: &'a mut Vec<u8>, now: super::gotime::Time) -> Self {
        State {
            ctx,
            tree,
            vars: vec![("$", Value::Root)],
            root_fields: Vec::new(),
            json_memo: Vec::new(),
            out,
            depth: 0,
            steps: 0,
            now,
        }
    }

    pub fn run(&mut self) -> R<()> {
        let tree = self.tree;
        match self.walk(&Value::Root, &tree.root)? {
            Flow::Normal => Ok(()),
            _ => Err("break or continue outside range".into()),
        }
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!("the template takes over {MAX_STEPS} steps"));
        }
        Ok(())
    }

    fn write(&mut self, v: &Value) -> R<()> {
        print_top(v, self.ctx, self.out);
        if self.out.len() > crate::value::MAX_TARGET_BYTES {
            return Err("the output would be over the 1 MiB target limit".into());
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Value, list: &'a List) -> R<Flow> {
        for node in list {
            self.step()?;
            match node {
                Node::Text(t) => {
                    self.out.extend_from_slice(t.as_bytes());
                    if self.out.len() > crate::value::MAX_TARGET_BYTES {
                        return Err("the output would be over the 1 MiB target limit".into());
                    }
                }
                Node::Action(p) => {
                    let v = self.pipeline(dot, p).map_err(|e| at(p.line, e))?;
                    if p.decl.is_empty() {
                        self.write(&v)?;
                    }
                }
                Node::If(b) | Node::With(b) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(dot, &b.pipe).map_err(|e| at(b.pipe.line, e))?;
                    let flow = if v.truth(self.ctx) {
                        let d = if matches!(node, Node::With(_)) { v } else { dot.clone() };
                        self.walk(&d, &b.list)?
                    } else if let Some(e) = &b.else_list {
                        self.walk(dot, e)?
                    } else {
                        Flow::Normal
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => {
                    let flow = self.range(dot, b)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Template { name, pipe, line } => {
                    let Some(body) = self.tree.defines.get(name) else {
                        return Err(at(*line, format!("no such template `{name}`")));
                    };
                    let d = match pipe {
                        Some(p) => self.pipeline(dot, p).map_err(|e| at(*line, e))?,
                        None => Value::Nil,
                    };
                    if self.depth >= MAX_CALL_DEPTH {
                        return Err(at(*line, format!("templates nest over {MAX_CALL_DEPTH} calls deep")));
                    }
                    let saved = std::mem::replace(&mut self.vars, vec![("$", d.clone())]);
                    self.depth += 1;
                    let r = self.walk(&d, body);
                    self.depth -= 1;
                    self.vars = saved;
                    r?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, dot: &Value, b: &'a Branch) -> R<Flow> {
        let mark = self.vars.len();
        let v = self.pipeline(dot, &b.pipe).map_err(|e| at(b.pipe.line, e))?;
        let inner = self.vars.len();
        let mut items: Vec<(Value, Value)> = Vec::new();
        match &v {
            Value::List(l) => items.extend(l.iter().enumerate().map(|(i, e)| (Value::int(i as i64), e.clone()))),
            Value::Map(m, _) => items.extend(m.borrow().iter().map(|(k, e)| (Value::str(k.as_bytes()), e.clone()))),
            Value::Root => items.extend(
                self.ctx
                    .iter()
                    .map(|(k, e)| (Value::str(k.as_bytes()), Value::str(e.expose().to_vec()))),
            ),
            Value::Int(n, _) => {
                if *n > MAX_ITEMS as i64 {
                    return Err(at(b.pipe.line, format!("range over an integer over {MAX_ITEMS}")));
                }
                items.extend((0..(*n).max(0)).map(|i| (Value::int(i), Value::int(i))));
            }
            Value::Nil => {}
            other => {
                return Err(at(
                    b.pipe.line,
                    format!("range can't iterate over a {}", other.type_name()),
                ));
            }
        }
        if items.is_empty() {
            let flow = match &b.else_list {
                Some(e) => self.walk(dot, e)?,
                None => Flow::Normal,
            };
            self.vars.truncate(mark);
            return Ok(flow);
        }
        for (k, e) in items {
            self.step()?;
            match b.pipe.decl.len() {
                0 => {}
                1 => self.set_top(1, e.clone(), &b.pipe),
                _ => {
                    self.set_top(2, k, &b.pipe);
                    self.set_top(1, e.clone(), &b.pipe);
                }
            }
            let flow = self.walk(&e, &b.list)?;
            self.vars.truncate(inner);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    /// Sets a range variable: the n-th from the top, or by name for `$x = range`.
    fn set_top(&mut self, n: usize, v: Value, pipe: &'a Pipe) {
        if pipe.is_assign {
            let name = &pipe.decl[pipe.decl.len() - n];
            self.set_var(name, v);
        } else {
            let len = self.vars.len();
            self.vars[len - n].1 = v;
        }
    }

    fn set_var(&mut self, name: &str, v: Value) {
        if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            slot.1 = v;
        }
    }

    fn var(&self, name: &str) -> R<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable `{name}`"))
    }

    pub fn pipeline(&mut self, dot: &Value, p: &'a Pipe) -> R<Value> {
        let mut value: Option<Value> = None;
        for cmd in &p.cmds {
            self.step()?;
            let v = self.command(dot, cmd, value.take())?;
            value = Some(v);
        }
        let v = value.unwrap_or(Value::Nil);
        for name in &p.decl {
            if p.is_assign {
                self.set_var(name, v.clone());
            } else {
                self.vars.push((name.as_str(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, dot: &Value, cmd: &'a Command, fin: Option<Value>) -> R<Value> {
        let first = &cmd.args[0];
        let has_args = cmd.args.len() > 1 || fin.is_some();
        match first {
            Arg::Func(name, f) => self.function(dot, name, *f, &cmd.args[1..], fin),
            Arg::Field(path) => {
                if has_args {
                    return Err(format!("`.{}` is not a method but has arguments", path.join(".")));
                }
                self.fields(dot.clone(), path)
            }
            Arg::Variable(name, path) => {
                if has_args {
                    return Err(format!("can't give argument to non-function `{name}`"));
                }
                let v = self.var(name)?;
                self.fields(v, path)
            }
            Arg::Chain(inner, path) => {
                if has_args {
                    return Err("can't give argument to non-function".into());
                }
                let v = self.arg(dot, inner)?;
                self.fields(v, path)
            }
            Arg::Pipe(p) => {
                if has_args {
                    return Err("can't give argument to non-function".into());
                }
                self.pipeline_scoped(dot, p)
            }
            Arg::Nil => Err("nil is not a command".into()),
            other => {
                if has_args {
                    return Err("can't give argument to non-function".into());
                }
                self.arg(dot, other)
            }
        }
    }

    /// A parenthesized pipeline: its variables end with it.
    fn pipeline_scoped(&mut self, dot: &Value, p: &'a Pipe) -> R<Value> {
        let mark = self.vars.len();
        let v = self.pipeline(dot, p);
        if p.decl.is_empty() || p.is_assign {
            self.vars.truncate(mark);
        }
        v
    }

    /// An operand as an `interface{}` argument.
    fn arg(&mut self, dot: &Value, a: &'a Arg) -> R<Value> {
        Ok(match a {
            Arg::Field(path) => self.fields(dot.clone(), path)?,
            Arg::Variable(name, path) => {
                let v = self.var(name)?;
                self.fields(v, path)?
            }
            Arg::Dot => dot.clone(),
            Arg::Nil => Value::Nil,
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Number(n) => ideal(n)?,
            Arg::Str(s) => Value::Str(s.clone()),
            Arg::Func(name, f) => self.function(dot, name, *f, &[], None)?,
            Arg::Pipe(p) => self.pipeline_scoped(dot, p)?,
            Arg::Chain(inner, path) => {
                let v = self.arg(dot, inner)?;
                self.fields(v, path)?
            }
        })
    }

    /// An operand for a parameter of type `p`: constants convert as Go's do, values must
    /// have the parameter's type.
    fn typed_arg(&mut self, dot: &Value, a: &'a Arg, p: Param, func: &str, i: usize) -> R<Value> {
        let bad = |what: &str| {
            Err(format!(
                "wrong type for argument {} of `{func}`: expected {}, found {what}",
                i + 1,
                p.go_name()
            ))
        };
        match (a, p) {
            (Arg::Number(n), Param::Int) => match n.int {
                Some(i) => Ok(Value::int(i)),
                None => bad("a non-integer number"),
            },
            (Arg::Number(n), Param::Float) => match n.float {
                Some(f) => Ok(Value::Float(f)),
                None => bad("a number"),
            },
            (Arg::Number(_), Param::Any) => self.arg(dot, a),
            (Arg::Number(_), _) => bad("a number"),
            (Arg::Str(_), Param::Str | Param::Any) => self.arg(dot, a),
            (Arg::Str(_), _) => bad("a string"),
            (Arg::Bool(_), Param::Bool | Param::Any) => self.arg(dot, a),
            (Arg::Bool(_), _) => bad("a boolean"),
            (Arg::Nil, Param::Any | Param::MapAny) => Ok(Value::Nil),
            (Arg::Nil, _) => bad("nil"),
            _ => {
                let v = self.arg(dot, a)?;
                convert(v, p).or_else(|v| bad(v.type_name()))
            }
        }
    }

    fn function(
        &mut self,
        dot: &Value,
        name: &str,
        f: Option<&'static funcs::Func>,
        args: &'a [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        // `and` / `or` evaluate their arguments only as far as needed.
        if name == "and" || name == "or" {
            let n = args.len() + usize::from(fin.is_some());
            if n == 0 {
                return Err(format!("wrong number of args for {name}: want at least 1 got 0"));
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.arg(dot, a)?;
                if last.truth(self.ctx) != (name == "and") {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let Some(f) = f else {
            return Err(format!("function `{name}` not defined"));
        };
        let n = args.len() + usize::from(fin.is_some());
        let fixed = f.params.len();
        if (f.variadic.is_none() && n != fixed) || (f.variadic.is_some() && n < fixed) {
            return Err(format!(
                "wrong number of args for {name}: want {}{fixed} got {n}",
                if f.variadic.is_some() { "at least " } else { "" }
            ));
        }
        let mut vals = funcs::Args::with_capacity(n);
        for (i, a) in args.iter().enumerate() {
            let p = f.params.get(i).copied().or(f.variadic).unwrap_or(Param::Any);
            vals.push(self.typed_arg(dot, a, p, name, i)?);
        }
        if let Some(v) = fin {
            let i = args.len();
            let p = f.params.get(i).copied().or(f.variadic).unwrap_or(Param::Any);
            vals.push(convert(v, p).map_err(|v| {
                format!(
                    "wrong type for value of `{name}`: expected {}, got {}",
                    p.go_name(),
                    v.type_name()
                )
            })?);
        }
        let mut call = Call {
            ctx: self.ctx,
            name: f.name,
            now: self.now,
            literal_first: matches!(args.first(), Some(Arg::Str(_))),
            json_memo: &mut self.json_memo,
        };
        let v = (f.f)(&mut call, vals).map_err(|e| format!("error calling {name}: {e}"))?;
        check_size(&v).map_err(|e| format!("{name}: {e}"))?;
        // What a function makes costs steps by its size (an element of a list or map, 64
        // bytes of text), so a loop cannot build a huge value on every turn.
        let made = match &v {
            Value::List(l) => l.len(),
            Value::Map(m, _) => m.borrow().len(),
            Value::Str(b) => b.len() / 64,
            _ => 0,
        };
        if made > 0 {
            self.steps = self.steps.saturating_add(made);
            if self.steps > MAX_STEPS {
                return Err(format!("the template takes over {MAX_STEPS} steps"));
            }
        }
        Ok(v)
    }

    /// `.a.b` from `v`.
    fn fields(&mut self, mut v: Value, path: &'a [String]) -> R<Value> {
        for (i, f) in path.iter().enumerate() {
            let r = match v {
                Value::Root => self.root_field(f),
                v => field(self.ctx, v, f),
            };
            v = r.map_err(|e| {
                if path.len() > 1 {
                    format!("{e} (in `.{}`)", path[..=i].join("."))
                } else {
                    e
                }
            })?;
        }
        Ok(v)
    }

    /// `.name` of the data: its value as a template string, copied once per render.
    fn root_field(&mut self, name: &'a str) -> R<Value> {
        if let Some((_, v)) = self.root_fields.iter().find(|(n, _)| *n == name) {
            return Ok(v.clone());
        }
        let v = field(self.ctx, Value::Root, name)?;
        self.root_fields.push((name, v.clone()));
        Ok(v)
    }
}

/// One field of a value.
fn field(ctx: &TemplateContext, v: Value, name: &str) -> R<Value> {
    match v {
        Value::Root => ctx
            .get(name)
            .map(|s| Value::str(s.expose().to_vec()))
            .ok_or_else(|| format!("map has no entry for key `{name}`")),
        Value::Map(m, _) => m
            .borrow()
            .get(name)
            .cloned()
            .ok_or_else(|| format!("map has no entry for key `{name}`")),
        Value::Nil => Err(format!("nil data; no entry for key `{name}`")),
        other => Err(format!("can't evaluate field `{name}` in type {}", other.type_name())),
    }
}

/// Converts a value for a parameter, as Go's reflection would allow; gives it back if not.
fn convert(v: Value, p: Param) -> Result<Value, Value> {
    let ok = match (&v, p) {
        (_, Param::Any) => true,
        (Value::Str(_), Param::Str) => true,
        (Value::Int(_, super::value::IntTy::Int), Param::Int) => true,
        (Value::Float(_), Param::Float) => true,
        (Value::Bool(_), Param::Bool) => true,
        (Value::Map(_, MapTy::Any), Param::MapAny) => true,
        (Value::Nil, Param::MapAny) => return Ok(Value::map(BTreeMap::new())),
        (Value::Time(_), Param::Time) => true,
        _ => false,
    };
    if ok { Ok(v) } else { Err(v) }
}

/// A constant for an `interface{}`: int if written as an integer, else float64.
fn ideal(n: &Number) -> R<Value> {
    if !n.is_float_syntax
        && let Some(i) = n.int
    {
        return Ok(Value::int(i));
    }
    match n.float {
        Some(f) => Ok(Value::Float(f)),
        None => Err("bad number syntax".into()),
    }
}

fn at(line: usize, e: String) -> String {
    if e.starts_with("line ") {
        e
    } else {
        format!("line {line}: {e}")
    }
}
