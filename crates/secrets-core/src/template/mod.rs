//! Go templates as ESO's engine v2 renders them: `text/template` with `missingkey=error`,
//! sprig's functions (without `env` / `expandenv`), and ESO's own (PKCS#12, PEM, JWK, YAML).
//!
//! The data is a `map[string]string`: `.key` is the value of `key`, and a key missing from
//! the data is an error. The language is Go's: `if` / `else if` / `else`, `range` (lists,
//! maps in key order, `$i, $v :=`, `break`, `continue`, `else`), `with`, variables (`:=`,
//! `=`), trim markers, comments, `define` / `template` / `block`, pipelines and
//! parenthesized pipelines, and Go's builtins. See the crate README for which functions
//! are in and which are clear load-time errors.
//!
//! Layers, each only using those before it: [`lex`](self) → `parse` (checks functions, so
//! an unknown one is a load-time error) → `exec` (the evaluator) → `funcs` (one file per
//! family; functions never see the evaluator).
//!
//! Guarantees: errors name the function, action, field or line, never a value; the output
//! and every intermediate text stay under the 1 MiB target limit; lists, loops, nesting
//! and `template` recursion are bounded; rendered text lives in zeroized buffers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use zeroize::Zeroizing;

use crate::value::SecretValue;

mod exec;
mod funcs;
mod gotime;
mod lex;
mod parse;
mod value;

/// The data a template sees: `.key` is the value of `key`.
pub type TemplateContext = BTreeMap<String, SecretValue>;

/// Widest `indent` / `nindent` accepted.
pub const MAX_INDENT: u64 = 1024;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    tree: parse::Tree,
    /// Length of the source: a render's first guess at its output's size.
    src_len: usize,
}

/// Every supported function name, sorted (Go builtins, sprig and ESO functions).
pub fn functions() -> Vec<&'static str> {
    funcs::names()
}

/// Functions that are known (sprig's or ESO's) but deliberately not supported, each with
/// why; using one is a load-time error.
pub fn excluded_functions() -> &'static [(&'static str, &'static str)] {
    funcs::EXCLUDED
}

/// Templates parsed once and shared: the engine renders the same template source for many
/// targets every cycle (each spec has its own copy of the text, so the text is the key).
static CACHE: LazyLock<Mutex<HashMap<String, Arc<Template>>>> = LazyLock::new(Default::default);
/// Most templates kept in the parse cache (it is emptied when full).
const CACHE_SIZE: usize = 4096;
/// Longest template source kept in the cache.
const CACHE_MAX_SOURCE: usize = 64 * 1024;

thread_local! {
    /// The template this thread parsed or found last, with its source.
    static LAST: std::cell::RefCell<Option<(String, Arc<Template>)>> = const { std::cell::RefCell::new(None) };
}

impl Template {
    /// Parses a template; errors name the line and the unsupported function or action.
    pub fn parse(src: &str) -> Result<Template, String> {
        Ok(Template {
            tree: parse::parse(src)?,
            src_len: src.len(),
        })
    }

    /// Parses a template, or gives the one parsed before from the same source.
    pub fn parse_cached(src: &str) -> Result<Arc<Template>, String> {
        if src.len() > CACHE_MAX_SOURCE {
            return Template::parse(src).map(Arc::new);
        }
        // Specs of one cycle mostly share a few templates: the last one this thread used is
        // found by comparing the text, without hashing it or taking the lock.
        if let Some(t) = LAST.with_borrow(|l| l.as_ref().filter(|(s, _)| s == src).map(|(_, t)| t.clone())) {
            return Ok(t);
        }
        let found = CACHE.lock().expect("template cache").get(src).cloned();
        let t = match found {
            Some(t) => t,
            None => Template::parse_cached_insert(src)?,
        };
        LAST.with_borrow_mut(|l| *l = Some((src.to_string(), t.clone())));
        Ok(t)
    }

    /// Parses `src` and keeps it in the shared cache.
    fn parse_cached_insert(src: &str) -> Result<Arc<Template>, String> {
        let t = Arc::new(Template::parse(src)?);
        let mut cache = CACHE.lock().expect("template cache");
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(src.to_string(), t.clone());
        Ok(t)
    }

    /// Whether the same data always renders the same text: no function of the template
    /// reads the clock or randomness (`now`, `date`, `rand…`, `uuidv4`, `bcrypt`, PKCS#12
    /// encoding).
    pub fn is_deterministic(&self) -> bool {
        !self.tree.varies
    }

    /// Renders with `ctx` as `.`, at the system clock's now.
    pub fn render(&self, ctx: &TemplateContext) -> Result<SecretValue, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.render_at(ctx, now.as_secs() as i64, now.subsec_nanos())
    }

    /// Renders with `ctx` as `.` and `now` fixed at `secs` / `nanos` after the Unix epoch
    /// (UTC): date functions give the same text every time.
    pub fn render_at(&self, ctx: &TemplateContext, secs: i64, nanos: u32) -> Result<SecretValue, String> {
        // Sized up front: growing a vector frees its old buffers without zeroizing them.
        let mut out = Zeroizing::new(Vec::with_capacity(self.src_len.min(64 * 1024) + 64));
        let now = gotime::Time {
            secs,
            nanos: nanos.min(999_999_999),
            offset: 0,
        };
        exec::State::new(&self.tree, ctx, &mut out, now).run()?;
        Ok(SecretValue::new(std::mem::take(&mut *out)))
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
            .render_at(&ctx, 1_709_618_828, 0)
            .map(|v| String::from_utf8_lossy(v.expose()).into_owned())
    }

    #[test]
    fn interpolation_and_functions() {
        let ok = |src: &str, pairs: &[(&str, &str)], want: &str| {
            assert_eq!(render(src, pairs).unwrap(), want, "{src}");
        };
        ok(
            "postgres://{{ .user }}:{{ .pass }}@db",
            &[("user", "u"), ("pass", "p")],
            "postgres://u:p@db",
        );
        ok("{{ .a | b64enc }}", &[("a", "hi")], "aGk=");
        ok("{{ .a | b64dec | upper }}", &[("a", "aGk=")], "HI");
        ok("{{ (fromJson .j).user }}", &[("j", r#"{"user":"bob"}"#)], "bob");
        ok(r#"{{ index . "my-key" }}"#, &[("my-key", "v")], "v");
        ok("a {{- .x -}} b", &[("x", "X")], "aXb");
        ok("{{/* note */}}v", &[], "v");
        ok("{{ if .a }}yes{{ else }}no{{ end }}", &[("a", "")], "no");
        ok(
            "{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}",
            &[("b", "2"), ("a", "1")],
            "a=1;b=2;",
        );
        ok("{{ $x := 1 }}{{ $x = add $x 2 }}{{ $x }}", &[], "3");
        ok(
            "{{ 1000000.0 }} {{ list 1 \"x\" }} {{ dict \"a\" 1.5 }}",
            &[],
            "1e+06 [1 x] map[a:1.5]",
        );
        ok(
            "{{ now | date \"2006-01-02T15:04:05Z07:00\" }}",
            &[],
            "2024-03-05T06:07:08Z",
        );
        ok(
            "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" .a }}",
            &[("a", "v")],
            "[v]",
        );
    }

    #[test]
    fn clear_errors() {
        let e = Template::parse("{{ .a | nosuchfunc }}").unwrap_err();
        assert!(e.contains("function `nosuchfunc` not defined"), "{e}");
        let e = Template::parse("{{ env \"HOME\" }}").unwrap_err();
        assert!(e.contains("`env` is not supported"), "{e}");
        assert!(Template::parse("{{ $x }}").is_err());
        assert!(Template::parse("{{ .a ").is_err());
        assert!(Template::parse("{{ if .a }}").is_err());
        let e = render("{{ .nope }}", &[("a", "secret-canary")]).unwrap_err();
        assert!(e.contains("`nope`") && !e.contains("canary"), "{e}");
    }
}
