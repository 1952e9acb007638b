//! The lexer: template text into items, as Go's `text/template/parse` lexes it (delimiters
//! `{{ }}`, trim markers `{{- ` / ` -}}`, comments `{{/* */}}`, newlines inside actions).
//!
//! Errors name the line and what was wrong; they quote only template syntax, never data.

/// One lexed item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Plain text between actions (already trimmed by trim markers).
    Text(String),
    /// `{{`.
    Left,
    /// `}}`.
    Right,
    /// `.name` (one segment; chains are consecutive fields).
    Field(String),
    /// `$` or `$name`.
    Variable(String),
    /// A function name or keyword.
    Ident(String),
    /// A string literal, unquoted.
    /// A quoted string's bytes (`\xff` and `\377` give the byte itself, as in Go).
    Str(Vec<u8>),
    /// A character constant (`'a'`), as its code point.
    Char(char),
    /// A number as written.
    Number(String),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `.` alone.
    Dot,
    /// `|`.
    Pipe,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `,`.
    Comma,
    /// Whitespace inside an action (it separates arguments).
    Space,
}

/// An item and the line it starts on.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub tok: Tok,
    pub line: usize,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Lexes a whole template.
pub(crate) fn lex(src: &str) -> Result<Vec<Item>, String> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    let mut trim_next = false;
    while pos <= b.len() {
        let start = pos;
        let Some(off) = src[pos..].find("{{") else {
            let mut text = &src[pos..];
            if trim_next {
                text = text.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
            }
            if !text.is_empty() {
                items.push(Item {
                    tok: Tok::Text(text.to_string()),
                    line,
                });
            }
            break;
        };
        let delim = pos + off;
        // `{{- ` trims the text before it.
        let trim_left = b.get(delim + 2) == Some(&b'-') && b.get(delim + 3).is_some_and(|c| is_space(*c));
        let mut text = &src[start..delim];
        if trim_next {
            text = text.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
        }
        if trim_left {
            text = text.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
        }
        if !text.is_empty() {
            items.push(Item {
                tok: Tok::Text(text.to_string()),
                line,
            });
        }
        line += src[start..delim].matches('\n').count();
        pos = delim + 2;
        if trim_left {
            pos += 2;
        }
        // A comment must follow the delimiter (and trim marker) at once.
        if src[pos..].starts_with("/*") {
            let Some(end) = src[pos + 2..].find("*/") else {
                return Err(format!("line {line}: unclosed comment"));
            };
            let after = pos + 2 + end + 2;
            line += src[pos..after].matches('\n').count();
            let rest = &src[after..];
            if rest.starts_with("}}") {
                pos = after + 2;
                trim_next = false;
            } else if rest.starts_with(" -}}")
                || rest.starts_with("\t-}}")
                || rest.starts_with("\n-}}")
                || rest.starts_with("\r-}}")
            {
                pos = after + 4;
                trim_next = true;
            } else {
                return Err(format!("line {line}: comment ends before closing delimiter"));
            }
            continue;
        }
        items.push(Item { tok: Tok::Left, line });
        let (next, trim) = lex_action(src, pos, &mut line, &mut items)?;
        pos = next;
        trim_next = trim;
    }
    Ok(items)
}

/// Lexes inside an action from `pos` to its `}}`; returns the position after it and whether
/// it ended with a right trim marker.
fn lex_action(src: &str, mut pos: usize, line: &mut usize, items: &mut Vec<Item>) -> Result<(usize, bool), String> {
    let b = src.as_bytes();
    let mut parens = 0usize;
    loop {
        // ` -}}` ends the action and trims the text after it.
        if pos < b.len() && is_space(b[pos]) {
            let ws_end = pos + b[pos..].iter().take_while(|c| is_space(**c)).count();
            if src[ws_end..].starts_with("-}}") && ws_end > pos {
                *line += src[pos..ws_end].matches('\n').count();
                items.push(Item {
                    tok: Tok::Right,
                    line: *line,
                });
                return Ok((ws_end + 3, true));
            }
            *line += src[pos..ws_end].matches('\n').count();
            items.push(Item {
                tok: Tok::Space,
                line: *line,
            });
            pos = ws_end;
            continue;
        }
        if src[pos..].starts_with("}}") {
            if parens > 0 {
                return Err(format!("line {line}: unclosed left paren"));
            }
            items.push(Item {
                tok: Tok::Right,
                line: *line,
            });
            return Ok((pos + 2, false));
        }
        let Some(c) = src[pos..].chars().next() else {
            return Err(format!("line {line}: unclosed action"));
        };
        let at = *line;
        let push = |items: &mut Vec<Item>, tok: Tok| items.push(Item { tok, line: at });
        match c {
            '|' => {
                push(items, Tok::Pipe);
                pos += 1;
            }
            '(' => {
                push(items, Tok::LParen);
                parens += 1;
                pos += 1;
            }
            ')' => {
                if parens == 0 {
                    return Err(format!("line {line}: unexpected right paren"));
                }
                parens -= 1;
                push(items, Tok::RParen);
                pos += 1;
            }
            ',' => {
                push(items, Tok::Comma);
                pos += 1;
            }
            ':' => {
                if b.get(pos + 1) != Some(&b'=') {
                    return Err(format!("line {line}: expected :="));
                }
                push(items, Tok::Declare);
                pos += 2;
            }
            '=' => {
                push(items, Tok::Assign);
                pos += 1;
            }
            '"' => {
                let (s, next) = lex_quote(src, pos).map_err(|e| format!("line {line}: {e}"))?;
                push(items, Tok::Str(s));
                pos = next;
            }
            '`' => {
                let Some(end) = src[pos + 1..].find('`') else {
                    return Err(format!("line {line}: unterminated raw quoted string"));
                };
                let s = &src[pos + 1..pos + 1 + end];
                *line += s.matches('\n').count();
                push(items, Tok::Str(s.replace('\r', "").into_bytes()));
                pos += end + 2;
            }
            '\'' => {
                let (ch, next) = lex_char(src, pos).map_err(|e| format!("line {line}: {e}"))?;
                push(items, Tok::Char(ch));
                pos = next;
            }
            '$' => {
                let mut end = pos + 1;
                for ch in src[end..].chars() {
                    if !is_alnum(ch) {
                        break;
                    }
                    end += ch.len_utf8();
                }
                push(items, Tok::Variable(src[pos..end].to_string()));
                pos = end;
            }
            '.' => {
                // A number like `.5`, a field `.name`, or dot itself.
                let next = src[pos + 1..].chars().next();
                if next.is_some_and(|d| d.is_ascii_digit()) {
                    let end = scan_number(src, pos);
                    push(items, Tok::Number(src[pos..end].to_string()));
                    pos = end;
                } else if next.is_some_and(is_alnum) {
                    let mut end = pos + 1;
                    for ch in src[end..].chars() {
                        if !is_alnum(ch) {
                            break;
                        }
                        end += ch.len_utf8();
                    }
                    push(items, Tok::Field(src[pos + 1..end].to_string()));
                    pos = end;
                } else {
                    push(items, Tok::Dot);
                    pos += 1;
                }
            }
            '+' | '-' | '0'..='9' => {
                let end = scan_number(src, pos);
                if end == pos + 1 && !c.is_ascii_digit() {
                    return Err(format!("line {line}: bad number syntax: `{c}`"));
                }
                let text = &src[pos..end];
                if src[end..].chars().next().is_some_and(is_alnum) {
                    return Err(format!("line {line}: bad number syntax"));
                }
                push(items, Tok::Number(text.to_string()));
                pos = end;
            }
            c if is_alnum(c) => {
                let mut end = pos;
                for ch in src[end..].chars() {
                    if !is_alnum(ch) {
                        break;
                    }
                    end += ch.len_utf8();
                }
                let word = &src[pos..end];
                push(
                    items,
                    match word {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        w => Tok::Ident(w.to_string()),
                    },
                );
                pos = end;
            }
            other => {
                let shown = if other.is_ascii_graphic() {
                    format!("`{other}`")
                } else {
                    format!("U+{:04X}", other as u32)
                };
                return Err(format!("line {line}: unexpected {shown} in action"));
            }
        }
    }
}

/// The end of a number starting at `pos` (Go's lexNumber: sign, base prefix, digits with
/// `_`, fraction, exponent).
fn scan_number(src: &str, pos: usize) -> usize {
    let b = src.as_bytes();
    let mut i = pos;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let mut digits: &[u8] = b"0123456789_";
    let mut exp = b"eE".as_slice();
    if b.get(i) == Some(&b'0')
        && b.get(i + 1)
            .is_some_and(|c| matches!(c, b'x' | b'X' | b'o' | b'O' | b'b' | b'B'))
    {
        match b[i + 1] {
            b'x' | b'X' => {
                digits = b"0123456789abcdefABCDEF_";
                exp = b"pP";
            }
            b'o' | b'O' => digits = b"01234567_",
            _ => digits = b"01_",
        }
        i += 2;
    }
    while i < b.len() && digits.contains(&b[i]) {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && digits.contains(&b[i]) {
            i += 1;
        }
    }
    if i < b.len() && exp.contains(&b[i]) {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        while i < b.len() && b"0123456789_".contains(&b[i]) {
            i += 1;
        }
    }
    if i < b.len() && b[i] == b'i' {
        i += 1;
    }
    i
}

/// An interpreted string literal starting at `pos` (the opening quote), with Go's escapes.
fn lex_quote(src: &str, pos: usize) -> Result<(Vec<u8>, usize), String> {
    let mut out = Vec::new();
    let mut chars = src[pos + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, pos + 1 + i + 1)),
            '\n' => return Err("unterminated quoted string".into()),
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return Err("unterminated quoted string".into());
                };
                match escape(e, &mut chars, '"')? {
                    Escaped::Char(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    Escaped::Byte(b) => out.push(b),
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Err("unterminated quoted string".into())
}

fn lex_char(src: &str, pos: usize) -> Result<(char, usize), String> {
    let mut chars = src[pos + 1..].char_indices();
    let c = match chars.next() {
        Some((_, '\\')) => {
            let Some((_, e)) = chars.next() else {
                return Err("unterminated character constant".into());
            };
            // A rune constant: `'\xff'` is the rune 255, as in Go.
            match escape(e, &mut chars, '\'')? {
                Escaped::Char(c) => c,
                Escaped::Byte(b) => char::from(b),
            }
        }
        Some((_, '\'')) | Some((_, '\n')) | None => return Err("malformed character constant".into()),
        Some((_, c)) => c,
    };
    match chars.next() {
        Some((i, '\'')) => Ok((c, pos + 1 + i + 1)),
        _ => Err("malformed character constant".into()),
    }
}

/// One escape after a backslash, as Go's strconv.Unquote reads it.
/// What an escape stands for: a character, or (`\x`, octal) one byte.
enum Escaped {
    Char(char),
    Byte(u8),
}

fn escape(e: char, chars: &mut std::str::CharIndices<'_>, quote: char) -> Result<Escaped, String> {
    let hex = |chars: &mut std::str::CharIndices<'_>, n: usize| -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = chars
                .next()
                .and_then(|(_, c)| c.to_digit(16))
                .ok_or("invalid escape in string literal")?;
            v = v * 16 + d;
        }
        Ok(v)
    };
    Ok(Escaped::Char(match e {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        '\\' => '\\',
        c if c == quote => c,
        // Go keeps the byte, valid UTF-8 or not.
        'x' => return Ok(Escaped::Byte(hex(chars, 2)? as u8)),
        'u' => char::from_u32(hex(chars, 4)?).ok_or("invalid \\u escape in string literal")?,
        'U' => char::from_u32(hex(chars, 8)?).ok_or("invalid \\U escape in string literal")?,
        '0'..='7' => {
            let mut v = e.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                let d = chars
                    .next()
                    .and_then(|(_, c)| c.to_digit(8))
                    .ok_or("invalid octal escape in string literal")?;
                v = v * 8 + d;
            }
            let b = u8::try_from(v).map_err(|_| "octal escape value over 255 in string literal")?;
            return Ok(Escaped::Byte(b));
        }
        _ => return Err("invalid escape in string literal".into()),
    }))
}
