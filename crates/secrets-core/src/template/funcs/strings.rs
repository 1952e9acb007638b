//! sprig's string functions, regular expressions and paths.

use super::super::value::Value;
use super::gofmt::quote;
use super::{Call, Param::*, Table, bytes, fail, int, strval, text};

/// Longest regular expression accepted (compiled per call).
const MAX_REGEX: usize = 4096;

pub(super) fn register(t: &mut Table) {
    t.add("hello", &[], |_, _| Ok(Value::str("Hello!")));
    t.add("upper", &[Str], |_, a| {
        let b = bytes(&a[0]);
        // ASCII text maps byte for byte (what Go's `strings.ToUpper` does for it too).
        Ok(Value::str(if b.is_ascii() {
            b.to_ascii_uppercase()
        } else {
            text(&a[0]).to_uppercase().into_bytes()
        }))
    });
    t.add("lower", &[Str], |_, a| {
        let b = bytes(&a[0]);
        Ok(Value::str(if b.is_ascii() {
            b.to_ascii_lowercase()
        } else {
            text(&a[0]).to_lowercase().into_bytes()
        }))
    });
    t.add("title", &[Str], |_, a| Ok(Value::str(title(&text(&a[0])))));
    t.add("untitle", &[Str], |_, a| Ok(Value::str(untitle(&text(&a[0])))));
    t.add("trim", &[Str], |_, a| Ok(Value::str(trim_space(bytes(&a[0])))));
    t.add("trimAll", &[Str, Str], |_, a| {
        Ok(Value::str(trim_cutset(&text(&a[1]), &text(&a[0]))))
    });
    t.add("trimall", &[Str, Str], |_, a| {
        Ok(Value::str(trim_cutset(&text(&a[1]), &text(&a[0]))))
    });
    t.add("trimPrefix", &[Str, Str], |_, a| {
        let (p, s) = (bytes(&a[0]), bytes(&a[1]));
        Ok(Value::str(s.strip_prefix(p).unwrap_or(s)))
    });
    t.add("trimSuffix", &[Str, Str], |_, a| {
        let (p, s) = (bytes(&a[0]), bytes(&a[1]));
        Ok(Value::str(s.strip_suffix(p).unwrap_or(s)))
    });
    // goutils reads these byte by byte, each byte as a rune (so non-ASCII text comes out
    // as Latin-1 read UTF-8, as in Go).
    t.add("nospace", &[Str], |_, a| {
        let s = bytes(&a[0]);
        if !s.iter().any(|b| is_space_byte(*b)) {
            return Ok(a[0].clone());
        }
        Ok(Value::str(
            s.iter()
                .filter(|b| !is_space_byte(**b))
                .map(|b| *b as char)
                .collect::<String>(),
        ))
    });
    t.add("trunc", &[Int, Str], |_, a| {
        let (c, s) = (int(&a[0]), bytes(&a[1]));
        let n = s.len() as i64;
        Ok(Value::str(if c < 0 && n + c > 0 {
            &s[(n + c) as usize..]
        } else if c >= 0 && n > c {
            &s[..c as usize]
        } else {
            s
        }))
    });
    t.add("abbrev", &[Int, Str], |_, a| {
        Ok(Value::str(abbrev(&text(&a[1]), 0, int(&a[0]))))
    });
    t.add("abbrevboth", &[Int, Int, Str], |_, a| {
        Ok(Value::str(abbrev(&text(&a[2]), int(&a[0]), int(&a[1]))))
    });
    t.add("substr", &[Int, Int, Str], |_, a| {
        let (start, end, s) = (int(&a[0]), int(&a[1]), bytes(&a[2]));
        let n = s.len() as i64;
        let r = if start < 0 {
            if end < 0 || end > n {
                return fail("slice bounds out of range");
            }
            &s[..end as usize]
        } else if end < 0 || end > n {
            if start > n {
                return fail("slice bounds out of range");
            }
            &s[start as usize..]
        } else {
            if start > end {
                return fail("slice bounds out of range");
            }
            &s[start as usize..end as usize]
        };
        Ok(Value::str(r))
    });
    t.add("repeat", &[Int, Str], |_, a| {
        let (n, s) = (int(&a[0]), bytes(&a[1]));
        if n < 0 {
            return fail("negative repeat count");
        }
        if (n as u128) * (s.len() as u128) > crate::value::MAX_TARGET_BYTES as u128 {
            return fail("the text would be over the 1 MiB target limit");
        }
        Ok(Value::str(s.repeat(n as usize)))
    });
    t.add("initials", &[Str], |_, a| {
        let mut out = String::new();
        let mut gap = true;
        for &b in bytes(&a[0]) {
            if is_space_byte(b) {
                gap = true;
            } else if gap {
                out.push(b as char);
                gap = false;
            }
        }
        Ok(Value::str(out))
    });
    t.add("swapcase", &[Str], |_, a| Ok(Value::str(swapcase(&text(&a[0])))));
    t.add("snakecase", &[Str], |_, a| Ok(Value::str(snake(&text(&a[0]), '_'))));
    t.add("kebabcase", &[Str], |_, a| Ok(Value::str(snake(&text(&a[0]), '-'))));
    t.add("camelcase", &[Str], |_, a| Ok(Value::str(camel(&text(&a[0])))));
    t.add("wrap", &[Int, Str], |_, a| {
        Ok(Value::str(wrap(&text(&a[1]), int(&a[0]), "\n", false)))
    });
    t.add("wrapWith", &[Int, Str, Str], |_, a| {
        Ok(Value::str(wrap(&text(&a[2]), int(&a[0]), &text(&a[1]), true)))
    });
    t.add("contains", &[Str, Str], |_, a| {
        Ok(Value::Bool(find(bytes(&a[1]), bytes(&a[0])).is_some()))
    });
    t.add("hasPrefix", &[Str, Str], |_, a| {
        Ok(Value::Bool(bytes(&a[1]).starts_with(bytes(&a[0]))))
    });
    t.add("hasSuffix", &[Str, Str], |_, a| {
        Ok(Value::Bool(bytes(&a[1]).ends_with(bytes(&a[0]))))
    });
    t.var("quote", &[], Any, |c, a| {
        let mut out = Vec::new();
        for v in a.iter().filter(|v| !matches!(v, Value::Nil)) {
            if !out.is_empty() {
                out.push(b' ');
            }
            // A string is quoted from its own bytes, without a copy.
            let q = match v {
                Value::Str(s) => quote(s),
                other => quote(&strval(c, other)),
            };
            if out.is_empty() {
                out = q.into_bytes();
            } else {
                out.extend_from_slice(q.as_bytes());
            }
        }
        Ok(Value::str(out))
    });
    t.var("squote", &[], Any, |c, a| {
        let parts: Vec<Vec<u8>> = a
            .iter()
            .filter(|v| !matches!(v, Value::Nil))
            .map(|v| [b"'".as_slice(), &strval(c, v), b"'"].concat())
            .collect();
        Ok(Value::str(parts.join(&b' ')))
    });
    t.var("cat", &[], Any, |c, a| {
        let parts: Vec<Vec<u8>> = a
            .iter()
            .filter(|v| !matches!(v, Value::Nil))
            .map(|v| super::super::value::to_text(v, c.ctx).to_vec())
            .collect();
        Ok(Value::str(parts.join(&b' ')))
    });
    t.add("indent", &[Int, Str], |_, a| {
        Ok(Value::str(indent(int(&a[0]), bytes(&a[1]))?))
    });
    t.add("nindent", &[Int, Str], |_, a| {
        let mut out = b"\n".to_vec();
        out.extend(indent(int(&a[0]), bytes(&a[1]))?);
        Ok(Value::str(out))
    });
    t.add("replace", &[Str, Str, Str], |_, a| {
        Ok(Value::str(replace(bytes(&a[2]), bytes(&a[0]), bytes(&a[1]))?))
    });
    t.add("plural", &[Str, Str, Int], |_, a| {
        Ok(if int(&a[2]) == 1 { a[0].clone() } else { a[1].clone() })
    });
    t.add("toString", &[Any], |c, a| Ok(Value::str(strval(c, &a[0]))));
    t.add("split", &[Str, Str], |_, a| {
        let parts = split(bytes(&a[1]), bytes(&a[0]), -1);
        Ok(numbered(parts))
    });
    t.add("splitn", &[Str, Int, Str], |_, a| {
        let parts = split(bytes(&a[2]), bytes(&a[0]), int(&a[1]));
        Ok(numbered(parts))
    });
    t.add("splitList", &[Str, Str], |_, a| {
        let parts = split(bytes(&a[1]), bytes(&a[0]), -1);
        Ok(Value::list(parts.into_iter().map(Value::str).collect()))
    });
    // Regular expressions (Go's RE2 syntax, which Rust's regex shares for common patterns).
    t.add("regexMatch", &[Str, Str], |_, a| {
        Ok(Value::Bool(
            regex(&a[0]).map(|r| r.is_match(bytes(&a[1]))).unwrap_or(false),
        ))
    });
    t.add("mustRegexMatch", &[Str, Str], |_, a| {
        Ok(Value::Bool(regex(&a[0])?.is_match(bytes(&a[1]))))
    });
    t.add("regexFind", &[Str, Str], |_, a| {
        let r = regex(&a[0])?;
        Ok(Value::str(
            r.find(bytes(&a[1])).map(|m| m.as_bytes()).unwrap_or_default(),
        ))
    });
    t.add("mustRegexFind", &[Str, Str], |_, a| {
        let r = regex(&a[0])?;
        Ok(Value::str(
            r.find(bytes(&a[1])).map(|m| m.as_bytes()).unwrap_or_default(),
        ))
    });
    t.add("regexFindAll", &[Str, Str, Int], find_all);
    t.add("mustRegexFindAll", &[Str, Str, Int], find_all);
    t.add("regexReplaceAll", &[Str, Str, Str], |_, a| {
        let r = regex(&a[0])?;
        Ok(Value::str(r.replace_all(bytes(&a[1]), bytes(&a[2])).into_owned()))
    });
    t.add("mustRegexReplaceAll", &[Str, Str, Str], |_, a| {
        let r = regex(&a[0])?;
        Ok(Value::str(r.replace_all(bytes(&a[1]), bytes(&a[2])).into_owned()))
    });
    t.add("regexReplaceAllLiteral", &[Str, Str, Str], |_, a| {
        let r = regex(&a[0])?;
        Ok(Value::str(
            r.replace_all(bytes(&a[1]), regex::bytes::NoExpand(bytes(&a[2])))
                .into_owned(),
        ))
    });
    t.add("mustRegexReplaceAllLiteral", &[Str, Str, Str], |_, a| {
        let r = regex(&a[0])?;
        Ok(Value::str(
            r.replace_all(bytes(&a[1]), regex::bytes::NoExpand(bytes(&a[2])))
                .into_owned(),
        ))
    });
    t.add("regexSplit", &[Str, Str, Int], regex_split);
    t.add("mustRegexSplit", &[Str, Str, Int], regex_split);
    t.add("regexQuoteMeta", &[Str], |_, a| {
        let mut out = Vec::new();
        for &b in bytes(&a[0]) {
            if br"\.+*?()|[]{}^$".contains(&b) {
                out.push(b'\\');
            }
            out.push(b);
        }
        Ok(Value::str(out))
    });
    // Paths (`path` and, on Linux, `path/filepath` alike).
    for (name, f) in [
        ("base", path_base as super::Imp),
        ("osBase", path_base),
        ("dir", path_dir),
        ("osDir", path_dir),
        ("clean", path_clean_fn),
        ("osClean", path_clean_fn),
        ("ext", path_ext),
        ("osExt", path_ext),
        ("isAbs", path_is_abs),
        ("osIsAbs", path_is_abs),
    ] {
        t.add(name, &[Str], f);
    }
}

/// Go's `unicode.IsSpace` of a byte read as a rune.
fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

fn trim_space(s: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(s).trim().as_bytes().to_vec()
}

fn trim_cutset(s: &str, cutset: &str) -> String {
    s.trim_matches(|c| cutset.contains(c)).to_string()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Go's `strings.SplitN` (n < 0: all).
pub(super) fn split(s: &[u8], sep: &[u8], n: i64) -> Vec<Vec<u8>> {
    if n == 0 {
        return vec![];
    }
    let mut out = Vec::new();
    if sep.is_empty() {
        // Split into UTF-8 sequences.
        let text = String::from_utf8_lossy(s);
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let limit = if n < 0 {
            chars.len()
        } else {
            (n as usize).min(chars.len())
        };
        for (i, c) in chars.iter().enumerate() {
            if i + 1 == limit && limit < chars.len() {
                out.push(chars[i..].concat().into_bytes());
                break;
            }
            out.push(c.clone().into_bytes());
        }
        return out;
    }
    let mut rest = s;
    while n < 0 || (out.len() as i64) < n - 1 {
        match find(rest, sep) {
            Some(i) => {
                out.push(rest[..i].to_vec());
                rest = &rest[i + sep.len()..];
            }
            None => break,
        }
    }
    out.push(rest.to_vec());
    out
}

/// `split` / `splitn`: a `map[string]string` keyed `_0`, `_1`, ...
fn numbered(parts: Vec<Vec<u8>>) -> Value {
    let m = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (format!("_{i}"), Value::str(p)))
        .collect();
    Value::str_map(m)
}

fn replace(s: &[u8], old: &[u8], new: &[u8]) -> Result<Vec<u8>, String> {
    let hits = if old.is_empty() {
        String::from_utf8_lossy(s).chars().count() + 1
    } else {
        let mut n = 0;
        let mut rest = s;
        while let Some(i) = find(rest, old) {
            n += 1;
            rest = &rest[i + old.len()..];
        }
        n
    };
    if s.len().saturating_add(hits.saturating_mul(new.len())) > crate::value::MAX_TARGET_BYTES {
        return fail("the text would be over the 1 MiB target limit");
    }
    if old.is_empty() {
        let text = String::from_utf8_lossy(s);
        let mut out = new.to_vec();
        for c in text.chars() {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            out.extend_from_slice(new);
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = find(rest, old) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(new);
        rest = &rest[i + old.len()..];
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// sprig's `indent`: the pad before the text and after every newline.
fn indent(n: i64, s: &[u8]) -> Result<Vec<u8>, String> {
    if n < 0 {
        return fail("negative indent");
    }
    if n as u64 > super::super::MAX_INDENT {
        return fail(format!("width over the limit of {}", super::super::MAX_INDENT));
    }
    let lines = s.iter().filter(|b| **b == b'\n').count() + 1;
    if s.len() + lines * (n as usize) > crate::value::MAX_TARGET_BYTES {
        return fail("the indented text would be over the 1 MiB target limit");
    }
    let pad = vec![b' '; n as usize];
    let mut out = pad.clone();
    for &b in s {
        out.push(b);
        if b == b'\n' {
            out.extend_from_slice(&pad);
        }
    }
    Ok(out)
}

/// Go's deprecated `strings.Title`: upper-cases letters that start a word.
fn title(s: &str) -> String {
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let is_sep = |p: char| {
                if p.is_ascii() {
                    !(p.is_ascii_alphanumeric() || p == '_')
                } else {
                    p.is_whitespace()
                }
            };
            let out = if is_sep(prev) {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_string()
            };
            prev = c;
            out
        })
        .collect()
}

/// sprig's `untitle`: lower-cases the first letter of each space-separated word.
fn untitle(s: &str) -> String {
    let mut prev_space = true;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if prev_space && c.is_alphabetic() {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_space = c.is_whitespace();
    }
    out
}

/// goutils' `SwapCase`.
fn swapcase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut ws = true;
    for c in s.chars() {
        if c.is_uppercase() {
            out.extend(c.to_lowercase());
            ws = false;
        } else if c.is_lowercase() {
            if ws {
                out.extend(c.to_uppercase());
                ws = false;
            } else {
                out.extend(c.to_uppercase());
            }
        } else {
            ws = c.is_whitespace();
            out.push(c);
        }
    }
    out
}

/// goutils' `Abbreviate` / `AbbreviateFull` (`...` marks what was cut).
fn abbrev(s: &str, offset: i64, width: i64) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len() as i64;
    if width < 4 || (offset > 0 && width < 7) {
        return s.to_string();
    }
    if n <= width {
        return s.to_string();
    }
    let mut offset = offset.max(0).min(n);
    if n - offset < width - 3 {
        offset = n - (width - 3);
    }
    let take = |from: i64, len: i64| -> String { chars[from as usize..(from + len).min(n) as usize].iter().collect() };
    if offset <= 4 {
        return format!("{}...", take(0, width - 3));
    }
    if width < 7 {
        return s.to_string();
    }
    if offset + width - 3 < n {
        return format!("...{}", abbrev(&take(offset, n - offset), 0, width - 3));
    }
    format!("...{}", take(n - (width - 3), width - 3))
}

/// xstrings' snake / kebab case: words split at case changes, digits kept with letters.
fn snake(s: &str, sep: char) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    let is_sep = |c: char| c == '_' || c == '-' || c == ' ' || c == '.';
    let mut i = 0;
    let mut need_sep = false;
    while i < chars.len() {
        let c = chars[i];
        if is_sep(c) {
            if !out.is_empty() {
                need_sep = true;
            }
            i += 1;
            continue;
        }
        if c.is_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if !out.is_empty() && (prev_lower || (prev_upper && next_lower)) {
                need_sep = true;
            }
        }
        if need_sep {
            out.push(sep);
            need_sep = false;
        }
        out.extend(c.to_lowercase());
        i += 1;
    }
    out
}

/// xstrings' `ToCamelCase` (sprig's `camelcase`): `foo_bar` → `FooBar`.
fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = true;
    for c in s.chars() {
        if c == '_' {
            if up && !out.is_empty() {
                out.push('_');
            }
            up = true;
            continue;
        }
        if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// goutils' `WrapCustom`.
fn wrap(s: &str, width: i64, newline: &str, long_words: bool) -> String {
    let width = width.max(1) as usize;
    let mut out = String::new();
    for (li, line) in s.split('\n').enumerate() {
        if li > 0 {
            out.push_str(newline);
        }
        let chars: Vec<char> = line.chars().collect();
        let mut offset = 0;
        let n = chars.len();
        let mut first = true;
        while n - offset > width {
            if chars[offset] == ' ' {
                offset += 1;
                continue;
            }
            let window: String = chars[offset..=offset + width].iter().collect();
            let space = window.rfind(' ').map(|b| window[..b].chars().count());
            if !first {
                out.push_str(newline);
            }
            first = false;
            match space {
                Some(sp) if sp > 0 => {
                    out.extend(&chars[offset..offset + sp]);
                    offset += sp + 1;
                }
                _ => {
                    if long_words {
                        out.extend(&chars[offset..offset + width]);
                        offset += width;
                    } else {
                        let rest: String = chars[offset + width..].iter().collect();
                        match rest.find(' ') {
                            Some(b) => {
                                let k = rest[..b].chars().count();
                                out.extend(&chars[offset..offset + width + k]);
                                offset += width + k + 1;
                            }
                            None => {
                                out.extend(&chars[offset..]);
                                offset = n;
                            }
                        }
                    }
                }
            }
        }
        if offset < n {
            if !first {
                out.push_str(newline);
            }
            out.extend(&chars[offset..]);
        }
    }
    out
}

fn regex(v: &Value) -> Result<regex::bytes::Regex, String> {
    let src = bytes(v);
    if src.len() > MAX_REGEX {
        return fail("regular expression over the length limit");
    }
    let src = std::str::from_utf8(src).map_err(|_| "regular expression is not UTF-8".to_string())?;
    regex::bytes::RegexBuilder::new(src)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| "invalid regular expression".to_string())
}

fn find_all(_: &mut Call<'_>, a: super::Args) -> Result<Value, String> {
    let r = regex(&a[0])?;
    let n = int(&a[2]);
    let limit = if n < 0 { usize::MAX } else { n as usize };
    Ok(Value::list(
        r.find_iter(bytes(&a[1]))
            .take(limit)
            .map(|m| Value::str(m.as_bytes()))
            .collect(),
    ))
}

/// Go's `Regexp.Split(s, n)`.
fn regex_split(_: &mut Call<'_>, a: super::Args) -> Result<Value, String> {
    let r = regex(&a[0])?;
    let s = bytes(&a[1]);
    let n = int(&a[2]);
    if n == 0 {
        return Ok(Value::list(vec![]));
    }
    if r.as_str().is_empty() && !s.is_empty() {
        // Go splits an empty pattern into single bytes... of runes.
        let parts = split(s, b"", n);
        return Ok(Value::list(parts.into_iter().map(Value::str).collect()));
    }
    let mut out = Vec::new();
    let mut beg = 0;
    for m in r.find_iter(s) {
        if n > 0 && out.len() as i64 == n - 1 {
            break;
        }
        let end = m.start();
        if m.end() == 0 {
            continue;
        }
        out.push(Value::str(&s[beg..end]));
        beg = m.end();
    }
    out.push(Value::str(&s[beg..]));
    Ok(Value::list(out))
}

/// Go's `path.Clean`.
pub(super) fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn path_clean_fn(_: &mut Call<'_>, a: super::Args) -> Result<Value, String> {
    Ok(Value::str(path_clean(&text(&a[0]))))
}

fn path_base(_: &mut Call<'_>, a: super::Args) -> Result<Value, String> {
    let p = text(&a[0]);
    if p.is_empty() {
        return Ok(Value::str("."));
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return Ok(Value::str("/"));
    }
    Ok(Value::str(t.rsplit('/').next().unwrap_or(t)))
}

fn path_dir(_: &mut Call<'_>, a: super::Args) -> Result<Value, String> {
    let p = text(&a[0]);
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    Ok(Value::str(path_clean(dir)))
}

fn path_ext(_: &mut Call<'_>, a: super::Args) -> Result<Value, String> {
    let p = text(&a[0]);
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return Ok(Value::str(&p[i..]));
        }
    }
    Ok(Value::str(""))
}

fn path_is_abs(_: &mut Call<'_>, a: super::Args) -> Result<Value, String> {
    Ok(Value::Bool(bytes(&a[0]).starts_with(b"/")))
}
