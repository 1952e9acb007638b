//! Inputs the fuzz targets under `fuzz/` found, kept as tests (`scripts/fuzz-smoke.sh`
//! runs the targets). Each test names the target and what went wrong.

use secretsync_core::template::{Template, TemplateContext};
use secretsync_core::testkit::{CANARY, assert_no_canary};
use secretsync_core::{SecretValue, transform};

fn ctx() -> TemplateContext {
    let mut c = TemplateContext::new();
    c.insert("a".into(), SecretValue::from(CANARY));
    c.insert("json".into(), SecretValue::from(format!(r#"{{"x":"{CANARY}"}}"#)));
    c
}

/// Target `template`, crash-05388c4c…: `index` with a key computed from data quoted the key
/// — a secret value — in its "map has no entry" error
/// (template.rs, `"index"` arm of `call`: `format!("map has no entry for key `{}`", &*key)`).
/// Fixed: only a literal of the template is quoted; otherwise "the key given by argument N".
/// Since templates follow Go, `index` of a missing map key gives the map's zero value (as
/// Go's does) rather than an error; where `index` does fail, it still quotes no value.
#[test]
fn index_error_does_not_quote_a_key_computed_from_a_value() {
    for src in [
        "{{ index . .a }}",
        "{{ index (.json | fromJson) .a }}",
        "{{ index .json .a }}",
        "postgres:&/{{ .a }}:{{ index (.json | fromJson) .a 4 .empty }}",
    ] {
        let t = Template::parse(src).expect("parses");
        if let Err(err) = t.render(&ctx()) {
            assert_no_canary(&err, &format!("the error of `{src}`"));
        }
    }
    let err = Template::parse("{{ index .json .a }}")
        .unwrap()
        .render(&ctx())
        .unwrap_err();
    assert_no_canary(&err, "the error of indexing a string with a key from data");
}

/// Target `template`, crash-c4e1d581…: `indent`/`nindent` with a huge width allocated that
/// many spaces per line and aborted the process (`memory allocation of 333333333333 bytes
/// failed`) — a manifest could crash the sync. Fixed: widths over `template::MAX_INDENT` and
/// output over the 1 MiB target limit are errors naming the function.
#[test]
fn indent_with_a_huge_width_is_an_error_not_an_abort() {
    for src in ["{{ .a | indent 333333333333 }}", "{{ nindent 333333333333 .a }}"] {
        let t = Template::parse(src).expect("parses");
        let err = t.render(&ctx()).expect_err("width over the limit");
        assert!(err.contains("indent"), "{err}");
    }
    // Reasonable widths still work.
    let t = Template::parse("{{ .a | indent 4 }}").unwrap();
    assert_eq!(t.render(&ctx()).unwrap().expose(), format!("    {CANARY}").as_bytes());
}

/// Target `property_path`, timeout-ae1fe8c5…: a 4 KiB property of nested gjson multipaths and
/// modifiers took seconds in gjson — a manifest could stall a sync. Fixed: properties are
/// bounded (length, control characters, bracket nesting) before they reach gjson.
#[test]
fn a_pathological_property_is_refused_at_once() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/seeds/property_path/regression-nested-multipath-slow"
    );
    let data = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&data);
    let (property, value) = text.split_once('\n').unwrap();
    let start = std::time::Instant::now();
    let err = secretsync_core::transform::get_property(&SecretValue::from(value), property, "k")
        .unwrap_err()
        .to_string();
    assert!(err.contains("over the limit"), "{err}");
    assert!(
        start.elapsed() < std::time::Duration::from_millis(100),
        "refused before gjson runs"
    );
    // Deep nesting in a short property is refused too; ordinary paths still work.
    assert!(secretsync_core::transform::get_property(&SecretValue::from("{}"), "a.[b.{c.(d.[e]", "k").is_err());
    let v = SecretValue::from(r#"{"a":{"b":[1,{"c":"ok"}]},"list":[{"n":"x","v":"1"}]}"#);
    assert_eq!(
        secretsync_core::transform::get_property(&v, "a.b.1.c", "k")
            .unwrap()
            .expose(),
        b"ok"
    );
    assert_eq!(
        secretsync_core::transform::get_property(&v, r#"list.#(n=="x").v"#, "k")
            .unwrap()
            .expose(),
        b"1"
    );
}

/// Review finding: `printf` echoed an unsupported verb, and its format may come from data
/// (`{{ printf .a }}`), so one character of a value could reach an error.
#[test]
fn printf_error_does_not_echo_a_verb_from_data() {
    let mut c = TemplateContext::new();
    c.insert("fmt".into(), SecretValue::from("%Z"));
    let err = Template::parse("{{ printf .fmt }}").unwrap().render(&c).unwrap_err();
    assert!(err.contains("unsupported verb") && !err.contains("%Z"), "{err}");
    let err = Template::parse(r#"{{ printf "%Z" }}"#).unwrap().render(&c).unwrap_err();
    assert!(err.contains("`%Z`"), "a literal format is quoted to help: {err}");
}

/// Target `template`, oom-3fc16eb5…: a chain of `replace "-" "<text with many dashes>"`
/// multiplies the text's length at every step; the fuzzer's run passed 2 GiB of memory.
/// Fixed: `replace` sizes its result before building it, and every text a template builds
/// (a pipeline's result, a `printf`, the whole output) stays under the 1 MiB target limit.
#[test]
fn templates_that_grow_without_bound_are_errors_not_out_of_memory() {
    let grow = r#"{{ .a | replace "-" "----------" }}"#.to_string();
    let mut chained = String::from("{{ \"-\"");
    for _ in 0..40 {
        chained.push_str(r#" | replace "-" "--------""#);
    }
    chained.push_str(" }}");
    let mut b64 = String::from("{{ .a");
    for _ in 0..80 {
        b64.push_str(" | b64enc");
    }
    b64.push_str(" }}");
    let many = format!(
        "{{{{ printf \"{}\" {} }}}}",
        "%s".repeat(2000),
        "(.a | replace \"\" \"xxxxxxxxxxxxxxxxxxxx\") ".repeat(2000)
    );
    let actions = "{{ .big }}".repeat(3);
    let mut c = ctx();
    c.insert("big".into(), SecretValue::from("x".repeat(600 * 1024)));
    for src in [chained.as_str(), b64.as_str(), many.as_str(), actions.as_str()] {
        let t = Template::parse(src).expect("parses");
        let err = t.render(&c).expect_err("over the limit");
        assert!(err.contains("1 MiB target limit"), "{err}");
        assert_no_canary(&err, "the error");
    }
    // A template that stays small still renders.
    let t = Template::parse(&grow).expect("parses");
    assert!(t.render(&ctx()).is_ok());
}

/// Target `template`, timeout-73eb7e1b…: `{{ range until 100000 }}{{ range until 100000 }}
/// … {{ break }}` built a new 100,000-element list on every turn of the outer loop while the
/// inner loop broke at once: a few steps each, 10^10 elements in all, far past libFuzzer's
/// 10 s. Fixed: what a function makes costs steps by its size (a list or map element, 64
/// bytes of text), so such a template ends with the step limit's error.
#[test]
fn a_loop_that_builds_a_huge_list_each_turn_runs_out_of_steps() {
    let fuzzed =
        "{{ range until 100000 }}{{ range until 100000 }}{k (.json | fromJson).n xs }}{{ break }}{{ end }}{{ end }}";
    let small = "{{ range until 3000 }}{{ range until 3000 }}{{ break }}{{ end }}{{ end }}";
    for src in [fuzzed, small] {
        let err = Template::parse(src)
            .expect("parses")
            .render(&ctx())
            .expect_err("too much work");
        assert!(err.contains("steps"), "{err}");
        assert_no_canary(&err, "the error");
    }
    // The same loops at a sensible size still render.
    let ok = "{{ range until 100 }}{{ range until 100 }}.{{ break }}{{ end }}{{ end }}";
    assert_eq!(Template::parse(ok).unwrap().render(&ctx()).unwrap().expose().len(), 100);
}

/// The fuzzer's slow property (CI fuzz smoke, property_path): 13 wildcards made gjson's
/// backtracking matcher run past libFuzzer's 10 s limit. Wildcards are now bounded, so the
/// property is refused at once, naming the limit and never the value.
#[test]
fn a_property_with_many_wildcards_is_refused_not_matched() {
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/seeds/property_path/regression-wildcards-timeout"
    ))
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (property, value) = text.split_once('\n').unwrap();
    let e = transform::get_property(&SecretValue::from(value), property, "k").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("wildcards") && msg.contains("`k`"), "{msg}");
    assert!(!msg.contains("aaaaaaaaaaaa"), "no value in the error: {msg}");
    // One or two wildcards, as real paths use, still work.
    let v = SecretValue::from(r#"{"items":[{"name":"a"},{"name":"b"}]}"#);
    assert_eq!(
        transform::get_property(&v, "items.#.name", "k").unwrap().expose_str(),
        Some(r#"["a","b"]"#)
    );
    let v = SecretValue::from(r#"{"db-password":"x"}"#);
    assert_eq!(
        transform::get_property(&v, "db-pass*", "k").unwrap().expose_str(),
        Some("x")
    );
}
