//! Secret values and maps of them.
//!
//! A [`SecretValue`] never prints its content: `Debug` and `Display` show
//! `[REDACTED]`, and the bytes are zeroized when the last clone is dropped.
//! Reading the bytes is an explicit call to [`SecretValue::expose`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretSlice};

/// One secret value: opaque bytes that are redacted when printed and zeroized on drop.
///
/// Cloning is cheap (a reference count): one value fetched once can feed many targets.
#[derive(Clone)]
pub struct SecretValue(Arc<SecretSlice<u8>>);

impl SecretValue {
    /// Wraps bytes. A vector with spare capacity would be reallocated (and its old buffer
    /// freed unzeroed) on the way into a box, so it is copied into an exact allocation and
    /// the original zeroized instead.
    pub fn new(mut bytes: Vec<u8>) -> Self {
        if bytes.capacity() != bytes.len() {
            let exact: Box<[u8]> = bytes.as_slice().into();
            zeroize::Zeroize::zeroize(&mut bytes);
            return Self(Arc::new(secrecy::SecretBox::new(exact)));
        }
        Self(Arc::new(SecretSlice::from(bytes)))
    }

    /// Wraps a UTF-8 string.
    pub fn from_string(s: String) -> Self {
        Self::new(s.into_bytes())
    }

    /// The bytes. Every call site is a place where a value leaves its wrapper: keep them few.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The value as UTF-8 text, if it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(self.expose()).ok()
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// Constant-time-ish equality of two values' bytes.
    pub fn ct_eq(&self, other: &SecretValue) -> bool {
        let (a, b) = (self.expose(), other.expose());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}
impl Eq for SecretValue {}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for SecretValue {
    fn from(s: String) -> Self {
        Self::from_string(s)
    }
}

impl From<&str> for SecretValue {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

/// Keys to values, sorted by key. `Debug` lists the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretMap(BTreeMap<String, SecretValue>);

impl SecretMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
    /// Inserts a value, returning the previous one.
    pub fn insert(&mut self, key: impl Into<String>, value: SecretValue) -> Option<SecretValue> {
        self.0.insert(key.into(), value)
    }
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&SecretValue> {
        self.0.get(key)
    }
    /// Removes a key.
    pub fn remove(&mut self, key: &str) -> Option<SecretValue> {
        self.0.remove(key)
    }
    /// Whether the key is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &SecretValue)> {
        self.0.iter()
    }
    /// Total bytes of keys and values (what counts toward Kubernetes' 1 MiB object limit).
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
    /// Moves every entry of `other` in, overwriting equal keys.
    pub fn extend(&mut self, other: SecretMap) {
        self.0.extend(other.0)
    }
    /// The underlying map.
    pub fn as_btree(&self) -> &BTreeMap<String, SecretValue> {
        &self.0
    }
}

impl fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "[REDACTED]"))).finish()
    }
}

impl FromIterator<(String, SecretValue)> for SecretMap {
    fn from_iter<I: IntoIterator<Item = (String, SecretValue)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl IntoIterator for SecretMap {
    type Item = (String, SecretValue);
    type IntoIter = std::collections::btree_map::IntoIter<String, SecretValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a SecretMap {
    type Item = (&'a String, &'a SecretValue);
    type IntoIter = std::collections::btree_map::Iter<'a, String, SecretValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Kubernetes refuses objects over 1 MiB; the data must fit with room for metadata.
pub const MAX_TARGET_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let v = SecretValue::from("hunter2-canary");
        assert_eq!(format!("{v:?}"), "[REDACTED]");
        assert_eq!(format!("{v}"), "[REDACTED]");
        let mut m = SecretMap::new();
        m.insert("PASSWORD", v);
        let dbg = format!("{m:?}");
        assert!(dbg.contains("PASSWORD") && !dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn equality_compares_bytes() {
        assert_eq!(SecretValue::from("a"), SecretValue::from("a"));
        assert_ne!(SecretValue::from("a"), SecretValue::from("ab"));
        assert_ne!(SecretValue::from("ab"), SecretValue::from("ac"));
    }
}
