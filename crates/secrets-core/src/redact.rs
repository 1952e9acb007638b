//! Masking secret values in a stream of text (a child process's output, for `run --redact`).

use aho_corasick::{AhoCorasick, MatchKind};

use crate::value::SecretValue;

/// What replaces a secret value.
pub const MASK: &[u8] = b"[REDACTED]";
/// Values shorter than this are not masked: masking `1` or `on` everywhere would destroy
/// the output without protecting anything.
pub const MIN_MASKED_LEN: usize = 4;

/// Replaces every occurrence of any of a set of values with [`MASK`]. Multi-line values are
/// also masked line by line, so line-buffered streams cannot leak them piecewise.
#[derive(Clone)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor for these values.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a SecretValue>) -> Self {
        let mut needles: Vec<zeroize::Zeroizing<Vec<u8>>> = vec![];
        for v in values {
            let b = v.expose();
            if b.len() >= MIN_MASKED_LEN {
                needles.push(zeroize::Zeroizing::new(b.to_vec()));
            }
            if b.contains(&b'\n') {
                for line in b.split(|c| *c == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.len() >= MIN_MASKED_LEN {
                        needles.push(zeroize::Zeroizing::new(line.to_vec()));
                    }
                }
            }
        }
        let matcher = (!needles.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(needles.iter().map(|n| n.as_slice()))
                .expect("literal patterns always build")
        });
        Self { matcher }
    }

    /// `input` with every value masked.
    pub fn redact(&self, input: &[u8]) -> Vec<u8> {
        match &self.matcher {
            None => input.to_vec(),
            Some(m) => {
                let mut out = Vec::with_capacity(input.len());
                m.replace_all_with_bytes(input, &mut out, |_, _, dst| {
                    dst.extend_from_slice(MASK);
                    true
                });
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_lines_and_longest_first() {
        let vals = [
            SecretValue::from("hunter2-secret"),
            SecretValue::from("hunter2"),
            SecretValue::from("ab"),
            SecretValue::from("line-one\nline-two"),
        ];
        let r = Redactor::new(vals.iter());
        assert_eq!(
            r.redact(b"pw=hunter2-secret and hunter2; ab stays"),
            b"pw=[REDACTED] and [REDACTED]; ab stays"
        );
        assert_eq!(r.redact(b"key: line-two\n"), b"key: [REDACTED]\n");
        assert_eq!(Redactor::new([].iter()).redact(b"x"), b"x");
    }
}
