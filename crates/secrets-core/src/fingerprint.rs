//! Keyed fingerprints of secret data, for change detection.
//!
//! A fingerprint is HMAC-SHA256 over a canonical encoding of the data. It is keyed so that
//! a fingerprint printed in a plan, stored in an annotation or shown in a log cannot be
//! used to guess a low-entropy value offline without the key.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::value::SecretMap;

/// The environment variable that holds a fingerprint key (hex or base64, at least 16 bytes).
pub const FINGERPRINT_KEY_ENV: &str = "SECRETSYNC_FINGERPRINT_KEY";

/// The HMAC key of fingerprints. Processes that must agree on fingerprints (an operator
/// and a `rotate` run verifying it) share one through [`FINGERPRINT_KEY_ENV`].
#[derive(Clone)]
pub struct FingerprintKey {
    /// The HMAC state after the key block, computed once: every fingerprint starts here.
    /// The key's bytes themselves are zeroized once it is computed.
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey([REDACTED])")
    }
}

impl FingerprintKey {
    /// A key from bytes (at least 16).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < 16 {
            return Err(Error::invalid("fingerprint key: needs at least 16 bytes"));
        }
        Ok(Self::keyed(Zeroizing::new(bytes)))
    }

    fn keyed(key: Zeroizing<Vec<u8>>) -> Self {
        let keyed = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
        Self { keyed }
    }

    /// A fresh random key: fingerprints then only compare within this process.
    pub fn random() -> Self {
        let mut k = vec![0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self::keyed(Zeroizing::new(k))
    }

    /// The key from [`FINGERPRINT_KEY_ENV`] (hex or base64), or a random one when unset.
    pub fn from_env_or_random() -> Result<Self> {
        match std::env::var(FINGERPRINT_KEY_ENV) {
            Ok(s) if !s.trim().is_empty() => {
                let s = s.trim();
                let bytes = hex::decode(s)
                    .or_else(|_| {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.decode(s)
                    })
                    .map_err(|_| Error::invalid(format!("{FINGERPRINT_KEY_ENV}: neither hex nor base64")))?;
                Self::from_bytes(bytes).map_err(|e| e.context(FINGERPRINT_KEY_ENV))
            }
            _ => Ok(Self::random()),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }

    /// Fingerprint of a map plus any non-secret attributes (type, labels...) that a target
    /// must also match.
    pub fn fingerprint(&self, data: &SecretMap, attributes: &[(&str, &str)]) -> Fingerprint {
        let mut attrs: Vec<_> = attributes.iter().map(|(k, v)| (("", *k), *v)).collect();
        attrs.sort();
        self.fingerprint_sorted(data, attrs.len(), attrs.into_iter())
    }

    /// [`FingerprintKey::fingerprint`] with attributes whose names come in two parts
    /// (`"label:"`, `"app"`), already sorted by the joined name: no name is built.
    pub(crate) fn fingerprint_sorted<'a>(
        &self,
        data: &SecretMap,
        count: usize,
        attributes: impl Iterator<Item = ((&'a str, &'a str), &'a str)>,
    ) -> Fingerprint {
        let mut mac = self.mac();
        // Length-prefixed fields make the encoding unambiguous.
        let mut put = |b: &[u8]| {
            mac.update(&(b.len() as u64).to_be_bytes());
            mac.update(b);
        };
        put(b"secretsync/v1");
        put(&(count as u64).to_be_bytes());
        for ((prefix, k), v) in attributes {
            mac.update(&((prefix.len() + k.len()) as u64).to_be_bytes());
            mac.update(prefix.as_bytes());
            mac.update(k.as_bytes());
            mac.update(&(v.len() as u64).to_be_bytes());
            mac.update(v.as_bytes());
        }
        let mut put = |b: &[u8]| {
            mac.update(&(b.len() as u64).to_be_bytes());
            mac.update(b);
        };
        put(&(data.len() as u64).to_be_bytes());
        for (k, v) in data.iter() {
            put(k.as_bytes());
            put(v.expose());
        }
        let out = mac.finalize().into_bytes();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&out);
        Fingerprint(bytes)
    }

    /// Fingerprint of one value (used for change tokens of sources without versions).
    pub fn fingerprint_value(&self, value: &[u8]) -> Fingerprint {
        let mut mac = self.mac();
        mac.update(b"secretsync/value/v1");
        mac.update(value);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&mac.finalize().into_bytes());
        Fingerprint(bytes)
    }
}

/// A keyed fingerprint. Prints as `hmac-sha256:` and 64 hex digits; [`Fingerprint::short`]
/// gives 12 for reports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Full hex form.
    pub fn to_hex(&self) -> String {
        let mut buf = [0u8; 64];
        hex_into(&self.0, &mut buf)
    }
    /// First 12 hex digits, enough to tell versions apart in a report.
    pub fn short(&self) -> String {
        let mut buf = [0u8; 12];
        hex_into(&self.0[..6], &mut buf)
    }
    /// Parses the form written by `Display`.
    pub fn parse(s: &str) -> Option<Fingerprint> {
        let h = s.strip_prefix("hmac-sha256:").unwrap_or(s);
        let v = hex::decode(h).ok()?;
        let arr: [u8; 32] = v.try_into().ok()?;
        Some(Fingerprint(arr))
    }
}

/// Lowercase hex of `bytes` through a stack buffer of twice their length (one allocation,
/// where `hex::encode` collects characters one by one).
fn hex_into(bytes: &[u8], buf: &mut [u8]) -> String {
    hex::encode_to_slice(bytes, buf).expect("the buffer is twice the input");
    std::str::from_utf8(buf).expect("hex is ASCII").to_string()
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0, &mut buf).expect("the buffer is twice the input");
        f.write_str("hmac-sha256:")?;
        f.write_str(std::str::from_utf8(&buf).expect("hex is ASCII"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::SecretValue;

    #[test]
    fn keyed_stable_and_sensitive() {
        let k = FingerprintKey::from_bytes(vec![7; 32]).unwrap();
        let mut a = SecretMap::new();
        a.insert("A", SecretValue::from("1"));
        a.insert("B", SecretValue::from("2"));
        let fa = k.fingerprint(&a, &[("type", "Opaque")]);
        assert_eq!(fa, k.fingerprint(&a.clone(), &[("type", "Opaque")]));
        assert_ne!(fa, k.fingerprint(&a, &[("type", "kubernetes.io/tls")]));
        let mut b = a.clone();
        b.insert("B", SecretValue::from("3"));
        assert_ne!(fa, k.fingerprint(&b, &[("type", "Opaque")]));
        // keys and values cannot be shifted across the boundary
        let mut c = SecretMap::new();
        c.insert("AB", SecretValue::from(""));
        let mut d = SecretMap::new();
        d.insert("A", SecretValue::from("B"));
        assert_ne!(k.fingerprint(&c, &[]), k.fingerprint(&d, &[]));
        let other = FingerprintKey::from_bytes(vec![8; 32]).unwrap();
        assert_ne!(fa, other.fingerprint(&a, &[("type", "Opaque")]));
        assert_eq!(Fingerprint::parse(&fa.to_string()), Some(fa));
    }
}
