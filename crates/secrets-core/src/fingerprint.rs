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

/// Overrides the folder of the key file (see [`state_dir`]).
pub const STATE_DIR_ENV: &str = "SECRETSYNC_STATE_DIR";

/// The key file's name in [`state_dir`].
pub const KEY_FILE_NAME: &str = "fingerprint.key";

/// secretsync's state folder: `$SECRETSYNC_STATE_DIR`, else `$XDG_STATE_HOME/secretsync`,
/// else `~/.local/state/secretsync`; `None` when none of these variables is set.
pub fn state_dir() -> Option<std::path::PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    var(STATE_DIR_ENV)
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("secretsync")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/secretsync")))
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

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
        Ok(Self::from_env()?.unwrap_or_else(Self::random))
    }

    /// The key from [`FINGERPRINT_KEY_ENV`] (hex or base64); `None` when it is unset or empty.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(FINGERPRINT_KEY_ENV) {
            Ok(s) if !s.trim().is_empty() => Self::from_text(&s)
                .map(Some)
                .map_err(|e| e.context(FINGERPRINT_KEY_ENV)),
            _ => Ok(None),
        }
    }

    /// A key from its text form: hex or base64 of at least 16 bytes. The error never
    /// contains the text.
    pub fn from_text(text: &str) -> Result<Self> {
        let s = text.trim();
        let bytes = hex::decode(s)
            .or_else(|_| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(s)
            })
            .map_err(|_| Error::invalid("fingerprint key: neither hex nor base64"))?;
        Self::from_bytes(bytes)
    }

    /// 32 fresh random bytes in hex: the text of a new key, for a key file or a Secret
    /// that others then read with [`FingerprintKey::from_text`].
    pub fn generate_text() -> Zeroizing<String> {
        let mut k = Zeroizing::new(vec![0u8; 32]);
        rand::rng().fill_bytes(&mut k);
        Zeroizing::new(hex::encode(&*k))
    }

    /// The stable key of this user, without configuration: [`FINGERPRINT_KEY_ENV`] when
    /// set, else the key file in [`state_dir`] (created on first use, mode 0600). The same
    /// data then gives the same fingerprint across runs and processes of this user.
    pub fn stable() -> Result<Self> {
        if let Some(k) = Self::from_env()? {
            return Ok(k);
        }
        let dir = state_dir().ok_or_else(|| {
            Error::invalid(format!(
                "fingerprint key: no state folder (set {STATE_DIR_ENV}, XDG_STATE_HOME or HOME, or {FINGERPRINT_KEY_ENV})"
            ))
        })?;
        Self::from_file_or_create(&dir.join(KEY_FILE_NAME))
    }

    /// The key in `path`, creating the file (and its folder) with a new random key when it
    /// does not exist. Creation is atomic: the key is written to a temporary file with mode
    /// 0600 and linked into place only if no file is there, so processes starting together
    /// all end up with the one key that won.
    pub fn from_file_or_create(path: &std::path::Path) -> Result<Self> {
        let read = |p: &std::path::Path| -> Result<Option<Self>> {
            match std::fs::read_to_string(p) {
                Ok(text) => Self::from_text(&text)
                    .map(Some)
                    .map_err(|e| e.context(format!("fingerprint key file {}", p.display()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::invalid(format!("fingerprint key file {}: {e}", p.display()))),
            }
        };
        if let Some(k) = read(path)? {
            return Ok(k);
        }
        let io = |what: &str, e: std::io::Error| {
            Error::invalid(format!("fingerprint key file {}: {what}: {e}", path.display()))
        };
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        create_private_dir(dir).map_err(|e| io("creating its folder", e))?;
        let text = Self::generate_text();
        let mut tmp = tempfile::Builder::new()
            .prefix(".fingerprint.key.")
            .tempfile_in(dir)
            .map_err(|e| io("creating a temporary file", e))?;
        // tempfile creates files with mode 0600 on Unix.
        {
            use std::io::Write as _;
            tmp.write_all(text.as_bytes()).map_err(|e| io("writing", e))?;
            tmp.as_file().sync_all().map_err(|e| io("writing", e))?;
        }
        match tmp.persist_noclobber(path) {
            Ok(_) => {}
            // Another process created it first: its key wins.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", e.error)),
        }
        read(path)?.ok_or_else(|| io("reading after creating", std::io::ErrorKind::NotFound.into()))
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
    fn key_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/secretsync").join(KEY_FILE_NAME);
        let mut m = SecretMap::new();
        m.insert("A", SecretValue::from("1"));
        let a = FingerprintKey::from_file_or_create(&path).unwrap();
        let b = FingerprintKey::from_file_or_create(&path).unwrap();
        assert_eq!(
            a.fingerprint(&m, &[]),
            b.fingerprint(&m, &[]),
            "the second use reads the same key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Racing creators all get the one key that won.
        let dir2 = tempfile::tempdir().unwrap();
        let p2 = dir2.path().join(KEY_FILE_NAME);
        let fps: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| FingerprintKey::from_file_or_create(&p2).unwrap().fingerprint(&m, &[])))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(fps.windows(2).all(|w| w[0] == w[1]));
        // A broken file is an error naming the file, never its content.
        std::fs::write(&p2, "not-a-key-zzz").unwrap();
        let e = FingerprintKey::from_file_or_create(&p2).unwrap_err().to_string();
        assert!(e.contains(&p2.display().to_string()) && !e.contains("zzz"), "{e}");
    }

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
