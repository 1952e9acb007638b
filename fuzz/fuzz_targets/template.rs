//! Template parsing and rendering on arbitrary text: never panics, and errors never quote a
//! value of the data the template sees.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretsync_core::SecretValue;
use secretsync_core::template::{Template, TemplateContext};

const MARKER: &str = "fuzz-value-5c0ffee";

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let tpl = match Template::parse(src) {
        Ok(t) => t,
        Err(_) => return,
    };
    let mut ctx = TemplateContext::new();
    ctx.insert("a".into(), SecretValue::from(MARKER));
    ctx.insert(
        "json".into(),
        SecretValue::from(format!(r#"{{"x":"{MARKER}","n":[1,{{"y":"{MARKER}"}}]}}"#)),
    );
    ctx.insert("b64".into(), SecretValue::from("Zm9vLWJhcg=="));
    ctx.insert("bin".into(), SecretValue::new(vec![0xff, 0x00, 0xfe]));
    ctx.insert("empty".into(), SecretValue::from(""));
    match tpl.render(&ctx) {
        Ok(v) => {
            let _ = v.len();
        }
        Err(msg) => {
            if !src.contains(MARKER) {
                assert!(!msg.contains(MARKER), "a render error quotes a value: {msg}");
            }
        }
    }
});
