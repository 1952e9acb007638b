//! The parser: lexed items into a tree, as Go's `text/template/parse` builds it. Functions
//! are checked here, so an unknown function is a load-time error, as in Go.

use std::collections::HashMap;

use super::funcs;
use super::lex::{Item, Tok};

/// A list of nodes.
pub(crate) type List = Vec<Node>;

/// A node of the tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    Range(Branch),
    With(Branch),
    Template {
        name: String,
        pipe: Option<Pipe>,
        line: usize,
    },
    Break,
    Continue,
}

/// `if` / `range` / `with`: the pipeline, the body and the `else` part.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub pipe: Pipe,
    pub list: List,
    pub else_list: Option<List>,
}

/// A pipeline with its optional declaration (`$x :=`, `$i, $v :=`) or assignment (`$x =`).
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub line: usize,
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Command>,
}

/// One command of a pipeline: a function with arguments, or an operand.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub args: Vec<Arg>,
}

/// An operand.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.a.b`.
    Field(Vec<String>),
    /// `$x.a.b`.
    Variable(String, Vec<String>),
    /// `.`.
    Dot,
    Nil,
    Bool(bool),
    Number(Number),
    /// A string constant, as the bytes a render hands out (shared, not copied, per use).
    Str(super::value::Bytes),
    /// A function: its name and, except for `and` / `or`, its implementation (resolved once
    /// here, not at every call).
    Func(&'static str, Option<&'static funcs::Func>),
    /// `(pipeline)`.
    Pipe(Box<Pipe>),
    /// `(pipeline).a.b`.
    Chain(Box<Arg>, Vec<String>),
}

/// A numeric constant, with the types it may take (Go's `NumberNode`).
#[derive(Debug, Clone)]
pub(crate) struct Number {
    pub int: Option<i64>,
    pub float: Option<f64>,
    /// Written as a float (`1.0`, `1e3`), so an `interface{}` gets a float64.
    pub is_float_syntax: bool,
}

/// A parsed template: the main tree and the `define`d ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    pub root: List,
    pub defines: HashMap<String, List>,
    /// It calls a function that reads the clock or randomness ([`funcs::varies`]).
    pub varies: bool,
}

struct Parser {
    items: Vec<Item>,
    pos: usize,
    /// Variables in scope, innermost last (`$` is always there).
    vars: Vec<String>,
    range_depth: usize,
    defines: HashMap<String, List>,
    varies: bool,
}

/// Most nesting of blocks and parentheses a template may have: deeper input is refused
/// before it can exhaust the stack.
const MAX_DEPTH: usize = 100;

/// Parses a template.
pub(crate) fn parse(src: &str) -> Result<Tree, String> {
    let items = super::lex::lex(src)?;
    let mut p = Parser {
        items,
        pos: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        defines: HashMap::new(),
        varies: false,
    };
    let (root, end) = p.list(0, true)?;
    if let Some(end) = end {
        return Err(format!("line {}: unexpected {{{{{end}}}}}", p.line()));
    }
    Ok(Tree {
        root,
        defines: p.defines,
        varies: p.varies,
    })
}

/// What ended a list: `end`, `else`, or end of input (`None`).
enum Ending {
    End,
    Else,
    ElseIf(Pipe),
}

impl Parser {
    fn line(&self) -> usize {
        self.items
            .get(self.pos)
            .or_else(|| self.items.last())
            .map(|i| i.line)
            .unwrap_or(1)
    }
    fn peek(&self) -> Option<&Tok> {
        self.items.get(self.pos).map(|i| &i.tok)
    }
    /// The next token other than a space.
    fn peek_non_space(&mut self) -> Option<&Tok> {
        while self.peek() == Some(&Tok::Space) {
            self.pos += 1;
        }
        self.peek()
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.items.get(self.pos).map(|i| i.tok.clone());
        self.pos += 1;
        t
    }
    fn next_non_space(&mut self) -> Option<Tok> {
        self.peek_non_space();
        self.next()
    }
    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("line {}: {msg}", self.line()))
    }
    fn expect_right(&mut self, ctx: &str) -> Result<(), String> {
        match self.next_non_space() {
            Some(Tok::Right) => Ok(()),
            _ => self.err(format!("unexpected input in {ctx}")),
        }
    }

    /// Nodes up to `{{end}}` / `{{else}}` (or the end of input at the top level).
    fn list(&mut self, depth: usize, top: bool) -> Result<(List, Option<&'static str>), String> {
        let (list, ending) = self.list_until(depth, top)?;
        Ok((
            list,
            match ending {
                None => None,
                Some(Ending::End) => Some("end"),
                Some(Ending::Else) | Some(Ending::ElseIf(_)) => Some("else"),
            },
        ))
    }

    fn list_until(&mut self, depth: usize, top: bool) -> Result<(List, Option<Ending>), String> {
        if depth > MAX_DEPTH {
            return self.err("template nests too deeply");
        }
        let mut list = Vec::new();
        loop {
            match self.next() {
                None => {
                    if top {
                        return Ok((list, None));
                    }
                    return self.err("unexpected EOF");
                }
                Some(Tok::Text(t)) => list.push(Node::Text(t)),
                Some(Tok::Left) => {
                    let line = self.line();
                    match self.peek_non_space().cloned() {
                        Some(Tok::Ident(kw)) => {
                            match kw.as_str() {
                                "end" => {
                                    self.pos += 1;
                                    self.expect_right("end")?;
                                    return Ok((list, Some(Ending::End)));
                                }
                                "else" => {
                                    self.pos += 1;
                                    if let Some(Tok::Ident(w)) = self.peek_non_space().cloned()
                                        && (w == "if" || w == "with")
                                    {
                                        if w == "with" {
                                            return self.err("`else with` is not supported (Go 1.23); use `else` with a nested `with`");
                                        }
                                        self.pos += 1;
                                        let pipe = self.pipeline("if", line, depth)?;
                                        return Ok((list, Some(Ending::ElseIf(pipe))));
                                    }
                                    self.expect_right("else")?;
                                    return Ok((list, Some(Ending::Else)));
                                }
                                "if" | "range" | "with" => {
                                    self.pos += 1;
                                    list.push(self.branch(&kw, line, depth)?);
                                }
                                "define" => {
                                    self.pos += 1;
                                    if !top || depth > 0 {
                                        return self.err("define must be at the top level");
                                    }
                                    self.define(depth)?;
                                }
                                "block" => {
                                    self.pos += 1;
                                    let name = self.template_name("block")?;
                                    let pipe = self.pipeline("block", line, depth)?;
                                    let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
                                    let (body, end) = self.list(depth + 1, false)?;
                                    self.vars = saved;
                                    if end != Some("end") {
                                        return self.err("unexpected {{else}} in block");
                                    }
                                    self.add_define(name.clone(), body)?;
                                    list.push(Node::Template {
                                        name,
                                        pipe: Some(pipe),
                                        line,
                                    });
                                }
                                "template" => {
                                    self.pos += 1;
                                    let name = self.template_name("template")?;
                                    let pipe = if self.peek_non_space() == Some(&Tok::Right) {
                                        self.pos += 1;
                                        None
                                    } else {
                                        Some(self.pipeline("template", line, depth)?)
                                    };
                                    list.push(Node::Template { name, pipe, line });
                                }
                                "break" | "continue" => {
                                    self.pos += 1;
                                    if self.range_depth == 0 {
                                        return self.err(format!("{{{{{kw}}}}} outside {{{{range}}}}"));
                                    }
                                    self.expect_right(&kw)?;
                                    list.push(if kw == "break" { Node::Break } else { Node::Continue });
                                }
                                _ => {
                                    let pipe = self.pipeline("command", line, depth)?;
                                    list.push(Node::Action(pipe));
                                }
                            }
                        }
                        _ => {
                            let pipe = self.pipeline("command", line, depth)?;
                            list.push(Node::Action(pipe));
                        }
                    }
                }
                Some(_) => return self.err("unexpected item"),
            }
        }
    }

    fn template_name(&mut self, ctx: &str) -> Result<String, String> {
        match self.next_non_space() {
            Some(Tok::Str(s)) => match String::from_utf8(s) {
                Ok(s) => Ok(s),
                Err(_) => self.err(format!("the name in {{{{{ctx}}}}} is not valid UTF-8")),
            },
            _ => self.err(format!("expected a quoted name in {{{{{ctx}}}}}")),
        }
    }

    fn add_define(&mut self, name: String, body: List) -> Result<(), String> {
        // Go allows redefining only an empty template; keep the rule simple: first wins
        // unless the new body is non-empty and the old one empty.
        match self.defines.get(&name) {
            Some(old) if !old.iter().all(is_empty_node) && !body.iter().all(is_empty_node) => {
                self.err(format!("template: multiple definition of template `{name}`"))
            }
            Some(_) if body.iter().all(is_empty_node) => Ok(()),
            _ => {
                self.defines.insert(name, body);
                Ok(())
            }
        }
    }

    fn define(&mut self, depth: usize) -> Result<(), String> {
        let name = self.template_name("define")?;
        self.expect_right("define")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        let (body, end) = self.list(depth + 1, false)?;
        self.vars = saved;
        self.range_depth = saved_range;
        if end != Some("end") {
            return self.err("unexpected {{else}} in define");
        }
        self.add_define(name, body)
    }

    fn branch(&mut self, kw: &str, line: usize, depth: usize) -> Result<Node, String> {
        let scope = self.vars.len();
        let pipe = self.pipeline(kw, line, depth)?;
        // The pipeline's variables are seen to the `end`, else part included.
        let declared = self.vars.len();
        if kw == "range" {
            self.range_depth += 1;
        }
        let (list, ending) = self.list_until(depth + 1, false)?;
        if kw == "range" {
            self.range_depth -= 1;
        }
        self.vars.truncate(declared);
        let else_list = match ending {
            Some(Ending::End) => None,
            Some(Ending::Else) => {
                let (l, end) = self.list(depth + 1, false)?;
                if end != Some("end") {
                    return self.err(format!("expected end; found else in {kw}"));
                }
                Some(l)
            }
            // `else if` is an `if` nested in the else part, sharing its `end`.
            Some(Ending::ElseIf(p)) => Some(vec![self.branch_from(p, declared, depth + 1)?]),
            None => return self.err("unexpected EOF"),
        };
        self.vars.truncate(scope);
        let b = Branch { pipe, list, else_list };
        Ok(match kw {
            "if" => Node::If(b),
            "range" => Node::Range(b),
            _ => Node::With(b),
        })
    }

    /// The rest of an `else if`, whose pipeline is parsed already.
    fn branch_from(&mut self, pipe: Pipe, scope: usize, depth: usize) -> Result<Node, String> {
        // The `else if` pipeline's variables were pushed when it was parsed.
        let declared = self.vars.len();
        let (list, ending) = self.list_until(depth + 1, false)?;
        self.vars.truncate(declared);
        let else_list = match ending {
            Some(Ending::End) => None,
            Some(Ending::Else) => {
                let (l, end) = self.list(depth + 1, false)?;
                if end != Some("end") {
                    return self.err("expected end; found else in if");
                }
                Some(l)
            }
            Some(Ending::ElseIf(p)) => Some(vec![self.branch_from(p, declared, depth + 1)?]),
            None => return self.err("unexpected EOF"),
        };
        self.vars.truncate(scope);
        Ok(Node::If(Branch { pipe, list, else_list }))
    }

    /// A pipeline up to `}}` (or `)` when `ctx` is "parenthesized pipeline").
    fn pipeline(&mut self, ctx: &str, line: usize, depth: usize) -> Result<Pipe, String> {
        if depth > MAX_DEPTH {
            return self.err("template nests too deeply");
        }
        let mut pipe = Pipe {
            line,
            decl: vec![],
            is_assign: false,
            cmds: vec![],
        };
        let end_tok = if ctx == "parenthesized pipeline" {
            Tok::RParen
        } else {
            Tok::Right
        };
        // Declarations: `$x :=`, `$x =`, `$i, $v :=` (range only).
        let save = self.pos;
        if let Some(Tok::Variable(v)) = self.peek_non_space().cloned() {
            self.pos += 1;
            match self.peek_non_space().cloned() {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    let assign = self.peek() == Some(&Tok::Assign);
                    self.pos += 1;
                    pipe.decl.push(v);
                    pipe.is_assign = assign;
                }
                Some(Tok::Comma) if ctx == "range" => {
                    self.pos += 1;
                    match (self.next_non_space(), self.peek_non_space().cloned()) {
                        (Some(Tok::Variable(v2)), Some(Tok::Declare | Tok::Assign)) => {
                            pipe.is_assign = self.peek() == Some(&Tok::Assign);
                            self.pos += 1;
                            pipe.decl.push(v);
                            pipe.decl.push(v2);
                        }
                        _ => return self.err("range can only initialize variables"),
                    }
                }
                _ => self.pos = save,
            }
        }
        if pipe.is_assign {
            for v in &pipe.decl {
                if !self.vars.contains(v) {
                    return self.err(format!("undefined variable `{v}`"));
                }
            }
        }
        loop {
            match self.peek_non_space() {
                Some(t) if *t == end_tok => {
                    self.pos += 1;
                    break;
                }
                None => return self.err(format!("unclosed {ctx}")),
                _ => {}
            }
            let cmd = self.command(depth)?;
            pipe.cmds.push(cmd);
            match self.peek_non_space() {
                Some(Tok::Pipe) => {
                    self.pos += 1;
                }
                Some(t) if *t == end_tok => {}
                _ => return self.err(format!("unexpected input in {ctx}")),
            }
        }
        if pipe.cmds.is_empty() {
            return self.err(format!("missing value for {ctx}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args.first(),
                Some(Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Number(_) | Arg::Str(_))
            ) {
                return self.err(format!("non executable command in pipeline stage {}", i + 1));
            }
        }
        if !pipe.is_assign {
            // Declared variables are visible after the pipeline, to the end of the block.
            self.vars.extend(pipe.decl.iter().cloned());
        }
        Ok(pipe)
    }

    fn command(&mut self, depth: usize) -> Result<Command, String> {
        let mut args = vec![];
        loop {
            let at_space = self.peek() == Some(&Tok::Space);
            self.peek_non_space();
            match self.peek() {
                None | Some(Tok::Right | Tok::Pipe | Tok::RParen) => break,
                _ if !args.is_empty() && !at_space => {
                    return self.err("missing space between arguments");
                }
                _ => {}
            }
            let arg = self.operand(depth)?;
            args.push(arg);
        }
        if args.is_empty() {
            return self.err("empty command");
        }
        Ok(Command { args })
    }

    /// A term and any field chain after it.
    fn operand(&mut self, depth: usize) -> Result<Arg, String> {
        let term = self.term(depth)?;
        let mut fields = vec![];
        while let Some(Tok::Field(f)) = self.peek() {
            fields.push(f.clone());
            self.pos += 1;
        }
        if fields.is_empty() {
            return Ok(term);
        }
        Ok(match term {
            Arg::Field(mut f) => {
                f.extend(fields);
                Arg::Field(f)
            }
            Arg::Variable(v, mut f) => {
                f.extend(fields);
                Arg::Variable(v, f)
            }
            Arg::Dot => return self.err("unexpected . after term `.`"),
            Arg::Bool(_) | Arg::Str(_) | Arg::Number(_) | Arg::Nil => {
                return self.err("unexpected field after a constant");
            }
            t => Arg::Chain(Box::new(t), fields),
        })
    }

    fn term(&mut self, depth: usize) -> Result<Arg, String> {
        let line = self.line();
        match self.next() {
            Some(Tok::Ident(name)) => match funcs::lookup_name(&name) {
                Some(n) => {
                    self.varies |= funcs::varies(n);
                    Ok(Arg::Func(n, funcs::lookup(n)))
                }
                None => match name.as_str() {
                    "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" | "break"
                    | "continue" => self.err(format!("unexpected `{name}` in command")),
                    _ => match funcs::excluded(&name) {
                        Some(why) => self.err(format!("function `{name}` is not supported: {why}")),
                        None => self.err(format!("function `{name}` not defined")),
                    },
                },
            },
            Some(Tok::Dot) => Ok(Arg::Dot),
            Some(Tok::Nil) => Ok(Arg::Nil),
            Some(Tok::Bool(b)) => Ok(Arg::Bool(b)),
            Some(Tok::Str(s)) => Ok(Arg::Str(std::sync::Arc::new(zeroize::Zeroizing::new(s)))),
            Some(Tok::Char(c)) => Ok(Arg::Number(Number {
                int: Some(c as i64),
                float: Some(c as u32 as f64),
                is_float_syntax: false,
            })),
            Some(Tok::Number(n)) => Ok(Arg::Number(
                number(&n).ok_or_else(|| format!("line {line}: bad number syntax"))?,
            )),
            Some(Tok::Field(f)) => Ok(Arg::Field(vec![f])),
            Some(Tok::Variable(v)) => {
                if !self.vars.contains(&v) {
                    return self.err(format!("undefined variable `{v}`"));
                }
                Ok(Arg::Variable(v, vec![]))
            }
            Some(Tok::LParen) => {
                let p = self.pipeline("parenthesized pipeline", line, depth + 1)?;
                Ok(Arg::Pipe(Box::new(p)))
            }
            _ => self.err("unexpected token in operand"),
        }
    }
}

fn is_empty_node(n: &Node) -> bool {
    matches!(n, Node::Text(t) if t.trim().is_empty())
}

/// Go's number constant rules: an integer in any base, or a float.
fn number(text: &str) -> Option<Number> {
    if text.ends_with('i') {
        return None; // complex constants: not supported
    }
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let lower = body.to_ascii_lowercase();
    let radix_int = if let Some(h) = lower.strip_prefix("0x") {
        if h.contains('p') || h.contains('.') {
            None
        } else {
            i64::from_str_radix(h, 16).ok()
        }
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.bytes().all(|c| c.is_ascii_digit()) && !lower.is_empty() {
        lower.parse::<i64>().ok()
    } else {
        None
    };
    let int = radix_int.map(|i| if neg { -i } else { i });
    let is_float_syntax = int.is_none() && !lower.starts_with("0x") && lower.contains(['.', 'e']);
    let float = match int {
        Some(i) => Some(i as f64),
        None if !lower.starts_with("0x") && !lower.starts_with("0o") && !lower.starts_with("0b") => {
            lower.parse::<f64>().ok().map(|f| if neg { -f } else { f })
        }
        None => None,
    };
    float?;
    // A float with an integral value is also an int constant (`1.0` fits an int param).
    let int = int.or_else(|| float.filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64));
    Some(Number {
        int,
        float,
        is_float_syntax,
    })
}
