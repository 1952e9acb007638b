//! The dotenv codec on arbitrary text: never panics; what parses renders and parses back to
//! the same map, or is refused with an error naming the key; errors name the file and line,
//! never a value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretsync_core::format::dotenv::{Keys, parse, render_with};

const MARKER: &str = "fuzz-marker-e11e";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, "fuzz.env") {
        Ok(map) => match render_with(&map, "fuzz/target", Keys::Relaxed) {
            Ok(rendered) => {
                let again = parse(&rendered, "rendered.env").expect("rendered text parses");
                assert!(again == map, "render then parse changes the data");
            }
            // Values that no quoting reads back the same in sh and python-dotenv (NUL,
            // carriage returns, some backtick mixes) are refused, naming target and key.
            Err(e) => assert!(e.to_string().contains("fuzz/target: key `"), "{e}"),
        },
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
        if let Ok(map) = parse(&joined, "fuzz.env")
            && let Err(e) = render_with(&map, "fuzz/target", Keys::Relaxed)
        {
            let msg = format!("{e} {e:?}");
            assert!(!msg.contains(MARKER), "a render error quotes a value: {msg}");
        }
    }
});
