//! The dotenv parser on arbitrary text: never panics; what parses renders and parses back to
//! the same map; errors name the file and line, never a value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretsync_core::sources::dotenv::{parse, render};

const MARKER: &str = "fuzz-marker-e11e";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, "fuzz.env") {
        Ok(map) => {
            let rendered = render(&map).expect("parsed values are UTF-8 text and render");
            let again = parse(&rendered, "rendered.env").expect("rendered text parses");
            assert!(again == map, "render then parse changes the data");
        }
        Err(e) => {
            assert!(
                e.to_string().contains("fuzz.env:"),
                "the error names file and line: {e}"
            );
        }
    }
    // A good line holding a value first: later errors never quote it.
    if !text.contains(MARKER) {
        let joined = format!("GOOD=\"{MARKER}\"\n{text}");
        if let Err(e) = parse(&joined, "fuzz.env") {
            let msg = format!("{e} {e:?}");
            assert!(!msg.contains(MARKER), "an error quotes an earlier value: {msg}");
        }
    }
});
