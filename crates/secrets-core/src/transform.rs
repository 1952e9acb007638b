//! What ESO does to a remote value before it lands in a target: `property` (gjson paths),
//! `decodingStrategy`, `dataFrom.extract`, key conversion of `find` results, `rewrite`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::error::{Error, Result};
use crate::manifest::{DecodingStrategy, Rewrite};
use crate::rules::{check_property, compile_regex};
use crate::template::{Template, TemplateContext};
use crate::value::{SecretMap, SecretValue};

/// Reads `property` of a JSON value with gjson path semantics, as ESO does: a property
/// containing dots is first tried as one key (dots escaped), then as a path. Strings come
/// back unquoted; objects, arrays and numbers as their JSON text; `null` as empty.
///
/// `key` names the remote key in errors.
pub fn get_property(value: &SecretValue, property: &str, key: &str) -> Result<SecretValue> {
    check_property(property).map_err(|e| e.context(format!("property of remote key `{key}`")))?;
    let text = value.expose_str().filter(|t| gjson::valid(t)).ok_or_else(|| {
        Error::invalid(format!(
            "remote key `{key}` is not JSON, but property `{property}` is set"
        ))
    })?;
    if property.contains('.') {
        let escaped = property.replace('.', "\\.");
        let v = gjson::get(text, &escaped);
        if v.exists() {
            return Ok(SecretValue::from(v.str()));
        }
    }
    let v = gjson::get(text, property);
    if !v.exists() {
        return Err(Error::not_found(format!("property `{property}` in remote key `{key}`")));
    }
    Ok(SecretValue::from(v.str()))
}

/// Applies a `decodingStrategy`. `what` names the key in errors.
pub fn decode(value: SecretValue, strategy: DecodingStrategy, what: &str) -> Result<SecretValue> {
    let raw = value.expose();
    let trimmed: &[u8] = raw.trim_ascii();
    let try_engines = |engines: &[&base64::engine::GeneralPurpose]| engines.iter().find_map(|e| e.decode(trimmed).ok());
    match strategy {
        DecodingStrategy::None => Ok(value),
        DecodingStrategy::Base64 => try_engines(&[&STANDARD, &STANDARD_NO_PAD])
            .map(SecretValue::new)
            .ok_or_else(|| Error::invalid(format!("{what}: value is not valid base64 (decodingStrategy Base64)"))),
        DecodingStrategy::Base64Url => try_engines(&[&URL_SAFE, &URL_SAFE_NO_PAD])
            .map(SecretValue::new)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{what}: value is not valid base64url (decodingStrategy Base64URL)"
                ))
            }),
        DecodingStrategy::Auto => Ok(try_engines(&[&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD])
            .map(SecretValue::new)
            .unwrap_or(value)),
    }
}

/// `dataFrom.extract`: every top-level key of a JSON object. Nested objects and arrays
/// come back as JSON text, strings unquoted, `null` empty.
pub fn extract_all(value: &SecretValue, key: &str) -> Result<SecretMap> {
    let text = value
        .expose_str()
        .filter(|t| gjson::valid(t))
        .ok_or_else(|| Error::invalid(format!("remote key `{key}` is not a JSON object (dataFrom.extract)")))?;
    let root = gjson::parse(text);
    if root.kind() != gjson::Kind::Object {
        return Err(Error::invalid(format!(
            "remote key `{key}` is not a JSON object (dataFrom.extract)"
        )));
    }
    let mut out = SecretMap::new();
    root.each(|k, v| {
        out.insert(k.str().to_string(), SecretValue::from(v.str()));
        true
    });
    Ok(out)
}

/// Key conversion of `find` results (ESO's `Default` conversion): every character outside
/// `[-._a-zA-Z0-9]` becomes `_`, so `crawbl/dev/backend/redis` is `crawbl_dev_backend_redis`.
pub fn convert_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Applies `rewrite` rules in order to every key. `at` is the field path for errors.
pub fn rewrite_keys(map: SecretMap, rules: &[Rewrite], at: &str) -> Result<SecretMap> {
    let mut map = map;
    for (j, rule) in rules.iter().enumerate() {
        let mut next = SecretMap::new();
        if let Some(r) = &rule.regexp {
            let re = compile_regex(&r.source).map_err(|e| e.context(format!("{at}.rewrite[{j}].regexp.source")))?;
            for (k, v) in map {
                next.insert(re.replace_all(&k, r.target.as_str()).into_owned(), v);
            }
        } else if let Some(t) = &rule.transform {
            let tpl = Template::parse(&t.template)
                .map_err(|e| Error::invalid(format!("{at}.rewrite[{j}].transform.template: {e}")))?;
            for (k, v) in map {
                let mut ctx = TemplateContext::new();
                ctx.insert("value".to_string(), SecretValue::from(k.as_str()));
                let rendered = tpl
                    .render(&ctx)
                    .map_err(|e| Error::invalid(format!("{at}.rewrite[{j}].transform.template: {e}")))?;
                let new_key = rendered.expose_str().unwrap_or_default().to_string();
                next.insert(new_key, v);
            }
        } else {
            next = map;
        }
        map = next;
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::is_valid_secret_key;

    fn s(v: &SecretValue) -> &str {
        v.expose_str().unwrap()
    }

    #[test]
    fn property_semantics_match_eso() {
        let v = SecretValue::from(r#"{"a":{"b":"nested"},"a.b":"flat","n":5,"o":{"x":[1,2]},"z":null}"#);
        assert_eq!(s(&get_property(&v, "a.b", "k").unwrap()), "flat", "escaped key first");
        assert_eq!(s(&get_property(&v, "o.x", "k").unwrap()), "[1,2]");
        assert_eq!(s(&get_property(&v, "o", "k").unwrap()), r#"{"x":[1,2]}"#);
        assert_eq!(s(&get_property(&v, "n", "k").unwrap()), "5");
        assert_eq!(s(&get_property(&v, "z", "k").unwrap()), "");
        assert_eq!(s(&get_property(&v, "o.x.1", "k").unwrap()), "2");
        let e = get_property(&v, "missing", "db").unwrap_err();
        assert!(
            e.is_not_found() && e.to_string().contains("`missing`") && e.to_string().contains("`db`"),
            "{e}"
        );
        let e = get_property(&SecretValue::from("plain-canary"), "x", "db").unwrap_err();
        assert!(
            e.to_string().contains("not JSON") && !e.to_string().contains("canary"),
            "{e}"
        );
    }

    #[test]
    fn decoding() {
        let d = |v: &str, st| decode(SecretValue::from(v), st, "k").map(|v| v.expose().to_vec());
        assert_eq!(d("aGVsbG8=", DecodingStrategy::Base64).unwrap(), b"hello");
        assert_eq!(d("aGVsbG8", DecodingStrategy::Base64).unwrap(), b"hello");
        assert_eq!(d("_-8", DecodingStrategy::Base64Url).unwrap(), vec![0xff, 0xef]);
        assert!(d("!!", DecodingStrategy::Base64).is_err());
        assert_eq!(d("not base64!", DecodingStrategy::Auto).unwrap(), b"not base64!");
        assert_eq!(d("aGVsbG8=", DecodingStrategy::Auto).unwrap(), b"hello");
        assert_eq!(d("aGVsbG8=", DecodingStrategy::None).unwrap(), b"aGVsbG8=");
    }

    #[test]
    fn extract_and_convert() {
        let m = extract_all(&SecretValue::from(r#"{"u":"x","n":{"a":1},"b":true}"#), "k").unwrap();
        assert_eq!(m.keys().cloned().collect::<Vec<_>>(), vec!["b", "n", "u"]);
        assert_eq!(s(m.get("n").unwrap()), r#"{"a":1}"#);
        assert_eq!(s(m.get("b").unwrap()), "true");
        assert!(extract_all(&SecretValue::from("[1]"), "k").is_err());
        assert_eq!(convert_key("crawbl/dev/backend/redis"), "crawbl_dev_backend_redis");
        assert!(is_valid_secret_key("a-b_c.D9") && !is_valid_secret_key("a/b") && !is_valid_secret_key(""));
        assert!(!is_valid_secret_key("..") && !is_valid_secret_key(".") && is_valid_secret_key("..."));
    }

    #[test]
    fn rewrites() {
        let mut m = SecretMap::new();
        m.insert("crawbl_dev_x", SecretValue::from("1"));
        let rules: Vec<Rewrite> = serde_json::from_str(
            r#"[{"regexp":{"source":"crawbl_dev_(.*)","target":"$1"}},{"transform":{"template":"{{ .value | upper }}"}}]"#,
        )
        .unwrap();
        let out = rewrite_keys(m, &rules, "spec.dataFrom[0]").unwrap();
        assert_eq!(out.keys().cloned().collect::<Vec<_>>(), vec!["X"]);
    }
}
