//! Checks made before any API call: object names (RFC 1123), keys (`[-._a-zA-Z0-9]+`) and
//! the 1 MiB size limit of a Secret or ConfigMap. Errors name the target and the key,
//! never a value.

use secretsync_core::{DesiredTarget, Error, Result, TargetRef};

/// Largest total size of keys and values in one Secret or ConfigMap (the core's limit).
pub use secretsync_core::engine::MAX_TARGET_BYTES as MAX_DATA_BYTES;

/// A lowercase RFC 1123 subdomain (object names): the core's rule.
pub use secretsync_core::manifest::is_valid_object_name as is_object_name;

/// A lowercase RFC 1123 label (namespace names): a subdomain without dots, at most 63.
pub fn is_namespace_name(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_object_name(s)
}

/// A Secret or ConfigMap key (`[-._a-zA-Z0-9]+`, at most 253, not `.` or `..`): the core's rule.
pub use secretsync_core::rules::is_valid_secret_key as is_key;

/// Checks a target's namespace and name.
pub fn check_target(t: &TargetRef) -> Result<()> {
    if !is_namespace_name(&t.namespace) {
        return Err(Error::invalid(format!(
            "{t}: namespace `{}` is not a valid namespace name (lowercase RFC 1123 label: a-z, 0-9 and '-', at most 63 characters)",
            t.namespace
        )));
    }
    if !is_object_name(&t.name) {
        return Err(Error::invalid(format!(
            "{t}: `{}` is not a valid object name (lowercase RFC 1123 subdomain: a-z, 0-9, '-' and '.', at most 253 characters)",
            t.name
        )));
    }
    Ok(())
}

/// Checks a desired target: names, every key, and the total size.
pub fn check_desired(d: &DesiredTarget) -> Result<()> {
    check_target(&d.target)?;
    if let Some(bad) = d.data.keys().find(|k| !is_key(k)) {
        return Err(Error::invalid(format!(
            "{}: key `{}` is not a valid key (letters, digits, '-', '_' and '.' only, at most 253 characters)",
            d.target,
            bad.escape_debug()
        )));
    }
    let size = d.data.byte_size();
    if size > MAX_DATA_BYTES {
        return Err(Error::invalid(format!(
            "{}: data is {size} bytes over {} keys, more than the {MAX_DATA_BYTES}-byte (1 MiB) limit of a Kubernetes object",
            d.target,
            d.data.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_object_name("backend-secrets-prod"));
        assert!(is_object_name("a.b-c"));
        assert!(!is_object_name("Backend"));
        assert!(!is_object_name("a_b"));
        assert!(!is_object_name("a-"));
        assert!(!is_object_name(""));
        assert!(!is_object_name(&"a".repeat(254)));
        assert!(is_namespace_name("prod"));
        assert!(!is_namespace_name("a.b"));
    }

    #[test]
    fn keys() {
        assert!(is_key("DB_PASSWORD"));
        assert!(is_key(".dockerconfigjson"));
        assert!(is_key("tls.crt"));
        assert!(!is_key("a b"));
        assert!(!is_key("a/b"));
        assert!(!is_key(".."));
        assert!(!is_key(""));
    }
}
