//! HTTP answers in the API server's `Status` shape, and small helpers: time, uids, query
//! strings, names.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::schema::ResourceDef;

pub(super) fn json_response(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .expect("a valid response")
}

pub(super) fn status_error(code: u16, reason: &str, message: impl Into<String>, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

pub(super) fn not_found(res: &ResourceDef, name: &str) -> Response {
    status_error(
        404,
        "NotFound",
        format!("{} \"{}\" not found", res.qualified(), name),
        Some(json!({"name": name, "group": res.group, "kind": res.plural})),
    )
}

pub(super) fn no_such_path() -> Response {
    status_error(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

pub(super) fn bad_request(message: impl Into<String>) -> Response {
    status_error(400, "BadRequest", message, None)
}

pub(super) fn conflict(res: &ResourceDef, name: &str) -> Response {
    status_error(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            res.qualified(),
            name
        ),
        Some(json!({"name": name, "group": res.group, "kind": res.plural})),
    )
}

pub(super) fn invalid(res: &ResourceDef, name: &str, causes: Vec<(String, String)>) -> Response {
    let summary: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let message = if summary.len() == 1 {
        format!("{} \"{}\" is invalid: {}", res.qualified_kind(), name, summary[0])
    } else {
        format!(
            "{} \"{}\" is invalid: [{}]",
            res.qualified_kind(),
            name,
            summary.join(", ")
        )
    };
    let causes: Vec<Value> = causes
        .into_iter()
        .map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f}))
        .collect();
    status_error(
        422,
        "Invalid",
        message,
        Some(json!({"name": name, "group": res.group, "kind": res.kind, "causes": causes})),
    )
}

pub(super) fn now_rfc3339() -> String {
    let secs = k8s_openapi::jiff::Timestamp::now().as_second();
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub(super) fn new_uid() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A lowercase RFC 1123 subdomain: what most object names must be.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A lowercase RFC 1123 label: what namespace names must be.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns_subdomain(s)
}

/// A valid Secret or ConfigMap key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
pub fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Db%2Cc%21%3Dd"), "a=b,c!=d");
        assert_eq!(percent_decode("x+y%"), "x y%");
    }

    #[test]
    fn names_and_keys() {
        assert!(is_dns_subdomain("backend-secrets.prod"));
        assert!(!is_dns_subdomain("Backend"));
        assert!(!is_dns_subdomain("-a"));
        assert!(is_config_key("DB_PASSWORD.v1-x"));
        assert!(!is_config_key("bad key"));
        assert!(!is_config_key(".."));
    }
}
