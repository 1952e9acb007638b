//! Templates cannot exhaust memory, the stack or a sync's time, and their errors never quote
//! a value, whatever the template does.

use std::time::{Duration, Instant};

use secretsync_core::SecretValue;
use secretsync_core::template::{Template, TemplateContext};
use secretsync_core::testkit::{CANARY, assert_no_canary};

fn ctx() -> TemplateContext {
    let mut c = TemplateContext::new();
    c.insert("a".into(), SecretValue::from(CANARY));
    c.insert("zone".into(), SecretValue::from(CANARY));
    c.insert("json".into(), SecretValue::from(format!(r#"{{"x":"{CANARY}"}}"#)));
    c
}

fn fails_fast(src: &str, what: &str) {
    let start = Instant::now();
    let err = Template::parse(src)
        .and_then(|t| t.render(&ctx()).map(|_| ()))
        .expect_err(src);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{src} took {:?}",
        start.elapsed()
    );
    assert!(err.contains(what), "{src}: {err}");
    assert_no_canary(&err, src);
}

#[test]
fn loops_recursion_and_growth_are_bounded() {
    fails_fast(
        "{{ range until 100000 }}{{ range until 100000 }}x{{ end }}{{ end }}",
        "over",
    );
    fails_fast(
        r#"{{ define "t" }}{{ template "t" . }}{{ end }}{{ template "t" . }}"#,
        "nest",
    );
    fails_fast("{{ until 100000000 }}", "over");
    fails_fast(
        r#"{{ $s := "xxxxxxxxxxxxxxxx" }}{{ range until 20 }}{{ $s = print $s $s }}{{ end }}{{ $s }}"#,
        "1 MiB",
    );
    fails_fast(
        &format!("{}x{}", "{{ if true }}".repeat(200), "{{ end }}".repeat(200)),
        "nests too deeply",
    );
    fails_fast(
        &format!("{{{{ {}1{} }}}}", "(".repeat(200), ")".repeat(200)),
        "nests too deeply",
    );
    fails_fast(r#"{{ $d := dict }}{{ set $d "me" $d }}"#, "cannot contain itself");
}

#[test]
fn errors_from_values_never_quote_them() {
    for src in [
        r#"{{ dateInZone "2006" now .zone }}"#,
        "{{ fail .a }}",
        "{{ .a | mustFromJson }}",
        r#"{{ regexFind (print .a "(") .a }}"#,
        "{{ printf .a 1 }}",
        "{{ .a | pkcs12key }}",
        "{{ .a | jwkPrivateKeyPem }}",
        "{{ .a | certSANs }}",
        "{{ index .json .a }}",
        "{{ .a | int | div 1 0 }}",
        "{{ (fromJson .json).x.y }}",
        "{{ toDate .a .a | mustDateModify .a }}",
    ] {
        let err = Template::parse(src).unwrap().render(&ctx()).expect_err(src);
        assert_no_canary(&err, src);
    }
}
