//! Generators of ESO's `generators.external-secrets.io/v1alpha1` kinds, sharing rotation's
//! randomness: `Password` (go-password's rules, as ESO) and `UUID`
//! (version 4, as rotation's `uuid`). The settings types live here, below the manifest
//! model that re-exports them, so loading can check them without a cycle.

use base64::Engine as _;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::value::SecretValue;
use serde::{Deserialize, Serialize};

/// ESO's default symbol set.
pub const DEFAULT_SYMBOLS: &str = "~!@#$%^&*()_+`-={}|[]\\:\"<>?,./";

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";

/// Checked `Password` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordRules {
    length: usize,
    digits: usize,
    symbols: usize,
    symbol_characters: Vec<char>,
    no_upper: bool,
    allow_repeat: bool,
    encoding: Encoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Raw,
    Base64,
    Base64Url,
    Hex,
}

impl PasswordRules {
    /// Checks a spec: counts that fit the length, and enough distinct characters when
    /// repeats are not allowed. The message names the field.
    pub fn from_spec(spec: &PasswordSpec) -> Result<Self, String> {
        let length = spec.length;
        if !(1..=4096).contains(&length) {
            return Err("length: must be 1..=4096".into());
        }
        let digits = spec.digits.unwrap_or(length / 4);
        let symbols = spec.symbols.unwrap_or(length / 4);
        if digits + symbols > length {
            return Err(format!(
                "digits ({digits}) and symbols ({symbols}) are more than length ({length})"
            ));
        }
        let symbol_characters: Vec<char> = spec
            .symbol_characters
            .as_deref()
            .unwrap_or(DEFAULT_SYMBOLS)
            .chars()
            .collect();
        if symbols > 0 && symbol_characters.is_empty() {
            return Err("symbolCharacters: empty, but symbols is not 0".into());
        }
        let letters = length - digits - symbols;
        let letter_set = if spec.no_upper { 26 } else { 52 };
        if !spec.allow_repeat {
            if digits > DIGITS.len() {
                return Err(format!(
                    "digits: {digits} distinct digits do not exist (set allowRepeat)"
                ));
            }
            if symbols > symbol_characters.len() {
                return Err(format!(
                    "symbols: {symbols} distinct symbols do not exist (set allowRepeat)"
                ));
            }
            if letters > letter_set {
                return Err(format!(
                    "length: {letters} distinct letters do not exist (set allowRepeat)"
                ));
            }
        }
        let encoding = match spec.encoding.as_deref().unwrap_or("raw") {
            "raw" => Encoding::Raw,
            "base64" => Encoding::Base64,
            "base64url" => Encoding::Base64Url,
            "hex" => Encoding::Hex,
            other => return Err(format!("encoding: `{other}` (raw, base64, base64url, hex)")),
        };
        Ok(Self {
            length,
            digits,
            symbols,
            symbol_characters,
            no_upper: spec.no_upper,
            allow_repeat: spec.allow_repeat,
            encoding,
        })
    }

    /// A fresh password.
    pub fn generate(&self) -> SecretValue {
        let mut rng = rand::rng();
        let letters: Vec<char> = if self.no_upper {
            LOWER.chars().collect()
        } else {
            LOWER.chars().chain(UPPER.chars()).collect()
        };
        let digits: Vec<char> = DIGITS.chars().collect();
        let mut out = zeroize::Zeroizing::new(Vec::<char>::with_capacity(self.length));
        let mut pick = |set: &[char], n: usize, out: &mut Vec<char>| {
            if self.allow_repeat {
                out.extend((0..n).map(|_| set[rng.random_range(0..set.len())]));
            } else {
                let mut s = set.to_vec();
                s.shuffle(&mut rng);
                out.extend(s.into_iter().take(n));
            }
        };
        pick(&letters, self.length - self.digits - self.symbols, &mut out);
        pick(&digits, self.digits, &mut out);
        pick(&self.symbol_characters, self.symbols, &mut out);
        out.shuffle(&mut rand::rng());
        let raw = zeroize::Zeroizing::new(out.iter().collect::<String>());
        match self.encoding {
            Encoding::Raw => SecretValue::from(raw.as_str()),
            Encoding::Base64 => SecretValue::from(base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())),
            Encoding::Base64Url => SecretValue::from(base64::engine::general_purpose::URL_SAFE.encode(raw.as_bytes())),
            Encoding::Hex => SecretValue::from(hex::encode(raw.as_bytes())),
        }
    }
}

/// A fresh value of a generator document's kind.
pub fn generate(kind: &GeneratorKind) -> Result<SecretValue, String> {
    match kind {
        GeneratorKind::Password(spec) => Ok(PasswordRules::from_spec(spec)?.generate()),
        GeneratorKind::Uuid => Ok(SecretValue::from(uuid::Uuid::new_v4().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(s: &str, set: &str) -> usize {
        s.chars().filter(|c| set.contains(*c)).count()
    }

    #[test]
    fn passwords_follow_the_rules() {
        let spec = PasswordSpec {
            length: 32,
            digits: Some(5),
            symbols: Some(3),
            symbol_characters: Some("-_".into()),
            allow_repeat: true,
            ..PasswordSpec::default()
        };
        let p = PasswordRules::from_spec(&spec).unwrap();
        for _ in 0..50 {
            let v = p.generate();
            let s = v.expose_str().unwrap();
            assert_eq!(s.chars().count(), 32);
            assert_eq!(count(s, DIGITS), 5);
            assert_eq!(count(s, "-_"), 3);
        }
        let d = PasswordRules::from_spec(&PasswordSpec::default()).unwrap();
        let v = d.generate();
        let s = v.expose_str().unwrap();
        assert_eq!(s.chars().count(), 24);
        assert_eq!(count(s, DIGITS), 6);
        assert_eq!(count(s, DEFAULT_SYMBOLS), 6);
        let distinct: std::collections::BTreeSet<char> = s.chars().collect();
        assert_eq!(distinct.len(), 24, "no repeats by default");
        let lower = PasswordRules::from_spec(&PasswordSpec {
            no_upper: true,
            digits: Some(0),
            symbols: Some(0),
            length: 20,
            encoding: Some("hex".into()),
            ..PasswordSpec::default()
        })
        .unwrap()
        .generate();
        let raw = hex::decode(lower.expose_str().unwrap()).unwrap();
        assert!(raw.iter().all(u8::is_ascii_lowercase));
        assert!(
            PasswordRules::from_spec(&PasswordSpec {
                length: 4,
                digits: Some(3),
                symbols: Some(2),
                ..PasswordSpec::default()
            })
            .is_err()
        );
        assert!(
            PasswordRules::from_spec(&PasswordSpec {
                digits: Some(11),
                length: 40,
                ..PasswordSpec::default()
            })
            .unwrap_err()
            .contains("allowRepeat")
        );
    }
}

/// `spec` of a `Password` generator, with ESO's defaults: length 24, digits and symbols
/// each a quarter of the length, symbols from ESO's set, upper case allowed, no repeated
/// characters unless `allowRepeat`, `raw` encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordSpec {
    /// Length (default 24).
    #[serde(default = "default_length")]
    pub length: usize,
    /// How many digits (default: a quarter of the length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<usize>,
    /// How many symbols (default: a quarter of the length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbols: Option<usize>,
    /// Which symbols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_characters: Option<String>,
    /// Lower case letters only.
    #[serde(default)]
    pub no_upper: bool,
    /// Characters may repeat.
    #[serde(default)]
    pub allow_repeat: bool,
    /// `raw` (default), `base64`, `base64url`, `base32`, `hex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

fn default_length() -> usize {
    24
}

impl Default for PasswordSpec {
    fn default() -> Self {
        Self {
            length: default_length(),
            digits: None,
            symbols: None,
            symbol_characters: None,
            no_upper: false,
            allow_repeat: false,
            encoding: None,
        }
    }
}

/// A generator's kind and settings.
#[derive(Debug, Clone, PartialEq)]
pub enum GeneratorKind {
    /// `Password`: its value under the key `password`.
    Password(PasswordSpec),
    /// `UUID`: its value under the key `uuid`.
    Uuid,
}

/// When an ExternalSecret's generated keys get a fresh value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GeneratePolicy {
    /// Every sync, as ESO does (the value rotates each `refreshInterval`).
    #[default]
    Always,
    /// Only when the target does not hold the key yet; otherwise its value is kept (ESO
    /// #5782): the way to bootstrap a value once.
    IfAbsent,
}

impl GeneratePolicy {
    /// Parses the value of the `secretsync.io/generate` annotation: `always` or
    /// `if-absent` (case and `-` ignored, so `IfAbsent` and `Always` work too).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "always" => Ok(Self::Always),
            "ifabsent" => Ok(Self::IfAbsent),
            _ => Err(format!("`{s}`: expected always or if-absent")),
        }
    }
}

/// A generator document as an ExternalSecret entry uses it (found by the loader).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedGenerator {
    /// Its kind and settings.
    pub kind: GeneratorKind,
    /// Annotated `secretsync.io/generate: if-absent` on the generator document itself.
    pub if_absent: bool,
}

impl ResolvedGenerator {
    /// The key its value is produced under (`password`, `uuid`), as ESO.
    pub fn output_key(&self) -> &'static str {
        match self.kind {
            GeneratorKind::Password(_) => "password",
            GeneratorKind::Uuid => "uuid",
        }
    }
}
