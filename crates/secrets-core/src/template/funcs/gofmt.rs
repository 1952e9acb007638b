//! Go's `fmt` verbs as `printf` uses them, and `strconv.Quote`.
//!
//! Supported: `%v %s %d %q %x %X %o %b %c %U %t %f %F %e %E %g %G %T %%`, flags `- + # 0`
//! and space, width and precision (also `*`). Where Go would print `%!verb(type=value)` — a
//! wrong type, a missing or an extra argument — this is an error instead: Go's form would
//! put a value where the reader expects text, and an error names only the verb and type.

use super::super::TemplateContext;
use super::super::value::{Value, format_float_g, print_value, shortest_digits};

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Most width or precision a verb may ask for (the output is bounded anyway).
const MAX_WIDTH: usize = 1 << 16;

/// `fmt.Sprintf(format, args...)`. `literal` says whether the format is the template's own
/// text (so a bad verb may be quoted in the error) or came from data.
pub(crate) fn sprintf(ctx: &TemplateContext, format: &[u8], args: &[Value], literal: bool) -> Result<Vec<u8>, String> {
    // Sized for the format and its string arguments: growing would leave copies behind.
    let strings: usize = args.iter().filter_map(Value::as_bytes).map(<[u8]>::len).sum();
    let mut out = Vec::with_capacity((format.len() + strings).min(crate::value::MAX_TARGET_BYTES) + 16);
    let mut next = 0usize;
    let mut i = 0;
    let show = |verb: char| {
        if literal {
            format!("`%{verb}`")
        } else {
            "(in a format taken from data)".to_string()
        }
    };
    while i < format.len() {
        let c = format[i];
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut sp = Spec::default();
        while i < format.len() {
            match format[i] {
                b'-' => sp.minus = true,
                b'+' => sp.plus = true,
                b'#' => sp.sharp = true,
                b'0' => sp.zero = true,
                b' ' => sp.space = true,
                _ => break,
            }
            i += 1;
        }
        let num = |i: &mut usize, next: &mut usize| -> Result<Option<usize>, String> {
            if format.get(*i) == Some(&b'*') {
                *i += 1;
                let a = args.get(*next).ok_or("printf: missing argument for `*`")?;
                *next += 1;
                return match a {
                    Value::Int(n, _) if *n >= 0 && (*n as usize) <= MAX_WIDTH => Ok(Some(*n as usize)),
                    _ => Err("printf: bad width or precision argument".into()),
                };
            }
            let start = *i;
            while *i < format.len() && format[*i].is_ascii_digit() {
                *i += 1;
            }
            if *i == start {
                return Ok(None);
            }
            let n: usize = std::str::from_utf8(&format[start..*i])
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|n| *n <= MAX_WIDTH)
                .ok_or("printf: width or precision over the limit")?;
            Ok(Some(n))
        };
        sp.width = num(&mut i, &mut next)?;
        if format.get(i) == Some(&b'.') {
            i += 1;
            sp.prec = Some(num(&mut i, &mut next)?.unwrap_or(0));
        }
        // An ASCII verb (the usual case) is its byte, without checking the rest of the format.
        let ascii = format.get(i).filter(|b| b.is_ascii()).map(|b| char::from(*b));
        let Some(verb) = ascii
            .or_else(|| std::str::from_utf8(&format[i..]).ok().and_then(|s| s.chars().next()))
            .or_else(|| {
                // Not UTF-8 after the `%`: take one byte.
                format.get(i).map(|b| *b as char)
            })
        else {
            return Err("printf: format ends with `%`".into());
        };
        i += verb.len_utf8();
        if verb == '%' {
            out.push(b'%');
            continue;
        }
        if verb == '[' {
            return Err("printf: explicit argument indexes are not supported".into());
        }
        if !"vTsqdxXobcUtfFeEgG".contains(verb) {
            return Err(format!("printf: unsupported verb {}", show(verb)));
        }
        let Some(arg) = args.get(next) else {
            return Err(format!("printf: missing argument for {}", show(verb)));
        };
        next += 1;
        if let ('s', Value::Str(s), None, None) = (verb, arg, sp.width, sp.prec) {
            // `%s` of a string: its bytes as they are, without a copy in between.
            out.extend_from_slice(s);
            if out.len() > crate::value::MAX_TARGET_BYTES {
                return Err("printf: the text would be over the 1 MiB target limit".into());
            }
            continue;
        }
        let body = verb_body(ctx, verb, &sp, arg).map_err(|e| match e {
            VerbError::Unknown => format!("printf: unsupported verb {}", show(verb)),
            VerbError::Type => format!("printf: verb {} does not take a {}", show(verb), arg.type_name()),
        })?;
        pad(&mut out, &body, &sp, verb);
        if out.len() > crate::value::MAX_TARGET_BYTES {
            return Err("printf: the text would be over the 1 MiB target limit".into());
        }
    }
    if next < args.len() {
        return Err(format!(
            "printf: {} extra argument(s) for the format",
            args.len() - next
        ));
    }
    Ok(out)
}

enum VerbError {
    Unknown,
    Type,
}

fn is_numeric_verb(verb: char) -> bool {
    matches!(verb, 'd' | 'x' | 'X' | 'o' | 'b' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G')
}

/// Pads to the width: spaces left (or right with `-`), zeros after the sign for numbers.
fn pad(out: &mut Vec<u8>, body: &[u8], sp: &Spec, verb: char) {
    let Some(w) = sp.width else {
        // No width: nothing to count or fill.
        out.extend_from_slice(body);
        return;
    };
    let len = String::from_utf8_lossy(body).chars().count();
    if len >= w {
        out.extend_from_slice(body);
        return;
    }
    let fill = w - len;
    if sp.minus {
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(b' ', fill));
    } else if sp.zero
        && (is_numeric_verb(verb) || matches!(verb, 'v' | 's' | 'q'))
        && !(is_int_verb(verb) && sp.prec.is_some())
    {
        let sign = body
            .first()
            .filter(|c| matches!(c, b'+' | b'-' | b' ') && is_numeric_verb(verb));
        if let Some(s) = sign {
            out.push(*s);
            out.extend(std::iter::repeat_n(b'0', fill));
            out.extend_from_slice(&body[1..]);
        } else {
            out.extend(std::iter::repeat_n(b'0', fill));
            out.extend_from_slice(body);
        }
    } else {
        out.extend(std::iter::repeat_n(b' ', fill));
        out.extend_from_slice(body);
    }
}

fn is_int_verb(verb: char) -> bool {
    matches!(verb, 'd' | 'x' | 'X' | 'o' | 'b')
}

fn verb_body(ctx: &TemplateContext, verb: char, sp: &Spec, arg: &Value) -> Result<Vec<u8>, VerbError> {
    match (verb, arg) {
        ('T', v) => Ok(v.type_name().as_bytes().to_vec()),
        ('v', Value::Float(f)) if sp.prec.is_some() || sp.plus || sp.space => float(*f, 'g', sp),
        ('v', Value::Int(i, _)) => Ok(int(*i, 10, sp, false)),
        ('v', Value::Nil) => Ok(b"<nil>".to_vec()),
        ('v', v) => {
            let mut out = Vec::new();
            print_value(v, ctx, &mut out);
            Ok(out)
        }
        ('s', Value::Str(s)) => Ok(truncate(s, sp.prec)),
        ('s', v @ (Value::List(_) | Value::Map(..) | Value::Root | Value::Time(_))) => {
            let mut out = Vec::new();
            print_value(v, ctx, &mut out);
            Ok(out)
        }
        ('q', Value::Str(s)) => Ok(quote_with(s, sp.plus).into_bytes()),
        ('q', Value::Int(i, _)) => {
            let c = char::from_u32(*i as u32).filter(|_| *i >= 0).unwrap_or('\u{fffd}');
            Ok(quote_rune(c, sp.plus).into_bytes())
        }
        ('d', Value::Int(i, _)) => Ok(int(*i, 10, sp, false)),
        ('x', Value::Int(i, _)) => Ok(int(*i, 16, sp, false)),
        ('X', Value::Int(i, _)) => Ok(int(*i, 16, sp, true)),
        ('o', Value::Int(i, _)) => Ok(int(*i, 8, sp, false)),
        ('b', Value::Int(i, _)) => Ok(int(*i, 2, sp, false)),
        ('x' | 'X', Value::Str(s)) => {
            let s = truncate_bytes(s, sp.prec);
            let mut h = String::new();
            for (n, b) in s.iter().enumerate() {
                if sp.space && n > 0 {
                    h.push(' ');
                }
                if sp.sharp && (sp.space || n == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    h.push_str(&format!("{b:02x}"));
                } else {
                    h.push_str(&format!("{b:02X}"));
                }
            }
            Ok(h.into_bytes())
        }
        ('c', Value::Int(i, _)) => {
            let c = char::from_u32(*i as u32).filter(|_| *i >= 0).unwrap_or('\u{fffd}');
            Ok(c.to_string().into_bytes())
        }
        ('U', Value::Int(i, _)) => {
            let mut s = format!("U+{:04X}", i);
            if sp.sharp
                && let Some(c) = char::from_u32(*i as u32)
                && !c.is_control()
            {
                s.push_str(&format!(" '{c}'"));
            }
            Ok(s.into_bytes())
        }
        ('t', Value::Bool(b)) => Ok(if *b { b"true".to_vec() } else { b"false".to_vec() }),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Float(f)) => float(*f, verb, sp),
        ('d' | 'x' | 'X' | 'o' | 'b' | 'c' | 'U' | 'q' | 's' | 't' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G', _) => {
            Err(VerbError::Type)
        }
        _ => Err(VerbError::Unknown),
    }
}

fn truncate(s: &[u8], prec: Option<usize>) -> Vec<u8> {
    match prec {
        None => s.to_vec(),
        Some(p) => String::from_utf8_lossy(s)
            .chars()
            .take(p)
            .collect::<String>()
            .into_bytes(),
    }
}

fn truncate_bytes(s: &[u8], prec: Option<usize>) -> &[u8] {
    match prec {
        Some(p) if p < s.len() => &s[..p],
        _ => s,
    }
}

fn int(i: i64, radix: u32, sp: &Spec, upper: bool) -> Vec<u8> {
    let mag = i.unsigned_abs();
    let mut digits = match radix {
        16 if upper => format!("{mag:X}"),
        16 => format!("{mag:x}"),
        8 => format!("{mag:o}"),
        2 => format!("{mag:b}"),
        _ => mag.to_string(),
    };
    if let Some(p) = sp.prec {
        if p == 0 && i == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    if sp.sharp {
        match radix {
            16 => digits.insert_str(0, if upper { "0X" } else { "0x" }),
            8 if !digits.starts_with('0') => digits.insert(0, '0'),
            2 => digits.insert_str(0, "0b"),
            _ => {}
        }
    }
    let sign = if i < 0 {
        "-"
    } else if sp.plus {
        "+"
    } else if sp.space {
        " "
    } else {
        ""
    };
    format!("{sign}{digits}").into_bytes()
}

/// Go's float verbs. Exponents have at least two digits (`1e+06`).
fn float(f: f64, verb: char, sp: &Spec) -> Result<Vec<u8>, VerbError> {
    let sign = if f.is_sign_negative() {
        "-"
    } else if sp.plus {
        "+"
    } else if sp.space {
        " "
    } else {
        ""
    };
    let a = f.abs();
    if f.is_nan() {
        return Ok(format!(
            "{}NaN",
            if sp.plus {
                "+"
            } else if sp.space {
                " "
            } else {
                ""
            }
        )
        .into_bytes());
    }
    if f.is_infinite() {
        return Ok(format!(
            "{}Inf",
            if f < 0.0 {
                "-"
            } else if sp.plus {
                "+"
            } else {
                ""
            }
        )
        .into_bytes());
    }
    let body = match verb {
        'f' | 'F' => format!("{:.*}", sp.prec.unwrap_or(6), a),
        'e' | 'E' => go_exp(&format!("{:.*e}", sp.prec.unwrap_or(6), a)),
        _ => match sp.prec {
            None => format_float_g(a),
            Some(p) => {
                let p = p.max(1);
                if a == 0.0 {
                    "0".into()
                } else {
                    let e = format!("{:.*e}", p - 1, a);
                    let exp: i32 = e.split_once('e').and_then(|(_, x)| x.parse().ok()).unwrap_or(0);
                    if exp < -4 || exp >= p as i32 {
                        let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
                        let m = if m.contains('.') {
                            m.trim_end_matches('0').trim_end_matches('.')
                        } else {
                            m
                        };
                        go_exp(&format!("{m}e{x}"))
                    } else {
                        let s = format!("{:.*}", (p as i32 - 1 - exp).max(0) as usize, a);
                        if s.contains('.') {
                            s.trim_end_matches('0').trim_end_matches('.').to_string()
                        } else {
                            s
                        }
                    }
                }
            }
        },
    };
    let body = if verb.is_ascii_uppercase() {
        body.to_uppercase()
    } else {
        body
    };
    let _ = shortest_digits;
    Ok(format!("{sign}{body}").into_bytes())
}

/// Rust's `1.5e6` / `1.5e-7` into Go's `1.5e+06` / `1.5e-07`.
fn go_exp(s: &str) -> String {
    let Some((m, e)) = s.split_once('e') else {
        return s.to_string();
    };
    let (sign, digits) = match e.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', e),
    };
    format!("{m}e{sign}{digits:0>2}")
}

/// Whether Go's `unicode.IsPrint` holds (approximately: letters, marks, numbers,
/// punctuation, symbols and the ASCII space).
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xFFFE | 0xFFFF
        | 0xD800..=0xDFFF | 0xF0000..=0x10FFFF)
}

fn escape_rune(out: &mut String, c: char, quote: char, ascii_only: bool) {
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c.is_ascii() || !ascii_only) && is_print(c) => out.push(c),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `strconv.Quote` (`%q`); `ascii_only` is `%+q`.
pub(crate) fn quote_with(s: &[u8], ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut rest = s;
    while !rest.is_empty() {
        // Printable ASCII other than the quote and the backslash is copied as it is: most
        // text is all of it, and needs no UTF-8 decoding.
        let plain = rest
            .iter()
            .position(|&b| !(b' '..=b'~').contains(&b) || b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
        if plain > 0 {
            let (head, tail) = rest.split_at(plain);
            out.push_str(std::str::from_utf8(head).unwrap_or_default());
            rest = tail;
            continue;
        }
        if rest[0] < 0x80 {
            escape_rune(&mut out, char::from(rest[0]), '"', ascii_only);
            rest = &rest[1..];
            continue;
        }
        // Up to the next ASCII byte: the rest is decoded rune by rune as before.
        let end = rest.iter().position(|&b| b < 0x80).unwrap_or(rest.len());
        let (chunk, after) = rest.split_at(end);
        quote_utf8_chunk(&mut out, chunk, ascii_only);
        rest = after;
    }
    out.push('"');
    out
}

/// Quotes a run of non-ASCII bytes: each valid rune escaped as Go does, each invalid byte as
/// `\xNN`.
fn quote_utf8_chunk(out: &mut String, s: &[u8], ascii_only: bool) {
    let mut rest = s;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                for c in valid.chars() {
                    escape_rune(out, c, '"', ascii_only);
                }
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                for c in std::str::from_utf8(good).unwrap_or_default().chars() {
                    escape_rune(out, c, '"', ascii_only);
                }
                out.push_str(&format!("\\x{:02x}", bad[0]));
                rest = &bad[1..];
            }
        }
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn quote(s: &[u8]) -> String {
    quote_with(s, false)
}

fn quote_rune(c: char, ascii_only: bool) -> String {
    let mut out = String::from("'");
    escape_rune(&mut out, c, '\'', ascii_only);
    out.push('\'');
    out
}
