//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`).
//!
//! client-go's generated clients send built-in kinds as protobuf whatever discovery says,
//! so `kubectl create secret|configmap|namespace` POST protobuf. The fake answers in JSON
//! (client-go reads whatever `Content-Type` comes back) and decodes the few request kinds
//! kubectl's `create` subcommands send for what it serves: Secret, ConfigMap, Namespace.
//! Anything else gets 415, naming JSON as the way to send it.
//!
//! The envelope is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message
//! (k8s.io/apimachinery/pkg/runtime/generated.proto: `typeMeta` = 1 with `apiVersion` = 1
//! and `kind` = 2, `raw` = 2); field numbers of the kinds are those of
//! k8s.io/api/core/v1/generated.proto and k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto.
//!
//! A well-kept crate was not used: `k8s-pb` has the prost types but no mapping to the JSON
//! form the rest of the fake works in, and a table of the handful of fields is shorter.

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bytes,
    Bool,
    Int,
    Time,
    MapStrStr,
    MapStrBytes,
    Msg(&'static [Field]),
}

/// (field number, JSON name, type, repeated)
type Field = (u64, &'static str, Ty, bool);

const OWNER_REFERENCE: &[Field] = &[
    (1, "kind", Ty::Str, false),
    (3, "name", Ty::Str, false),
    (4, "uid", Ty::Str, false),
    (5, "apiVersion", Ty::Str, false),
    (6, "controller", Ty::Bool, false),
    (7, "blockOwnerDeletion", Ty::Bool, false),
];

const OBJECT_META: &[Field] = &[
    (1, "name", Ty::Str, false),
    (2, "generateName", Ty::Str, false),
    (3, "namespace", Ty::Str, false),
    (5, "uid", Ty::Str, false),
    (6, "resourceVersion", Ty::Str, false),
    (7, "generation", Ty::Int, false),
    (8, "creationTimestamp", Ty::Time, false),
    (11, "labels", Ty::MapStrStr, false),
    (12, "annotations", Ty::MapStrStr, false),
    (13, "ownerReferences", Ty::Msg(OWNER_REFERENCE), true),
    (14, "finalizers", Ty::Str, true),
];

const SECRET: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "data", Ty::MapStrBytes, false),
    (3, "type", Ty::Str, false),
    (4, "stringData", Ty::MapStrStr, false),
    (5, "immutable", Ty::Bool, false),
];

const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "data", Ty::MapStrStr, false),
    (3, "binaryData", Ty::MapStrBytes, false),
    (4, "immutable", Ty::Bool, false),
];

const NAMESPACE_SPEC: &[Field] = &[(1, "finalizers", Ty::Str, true)];

const NAMESPACE: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "spec", Ty::Msg(NAMESPACE_SPEC), false),
];

const TYPE_META: &[Field] = &[(1, "apiVersion", Ty::Str, false), (2, "kind", Ty::Str, false)];

const UNKNOWN: &[Field] = &[(1, "typeMeta", Ty::Msg(TYPE_META), false), (2, "raw", Ty::Bytes, false)];

/// Decodes a protobuf request body into the JSON object it stands for. The error says
/// what is unsupported or malformed, never a value.
pub(super) fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body does not start with the Kubernetes magic number")?;
    let envelope = message(rest, UNKNOWN)?;
    let api_version = envelope
        .pointer("/typeMeta/apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = envelope.pointer("/typeMeta/kind").and_then(Value::as_str).unwrap_or("");
    let raw = envelope
        .get("raw")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default();
    let fields = match (api_version, kind) {
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        _ => {
            return Err(format!(
                "this fake decodes protobuf only for v1 Secret, ConfigMap and Namespace (got {api_version} {kind}); send application/json"
            ));
        }
    };
    let mut obj = message(&raw, fields)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated protobuf varint")?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err("protobuf varint too long".into())
}

fn bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a [u8], String> {
    let len = usize::try_from(varint(buf, pos)?).map_err(|_| "protobuf length too large")?;
    let end = pos
        .checked_add(len)
        .filter(|e| *e <= buf.len())
        .ok_or("truncated protobuf field")?;
    let out = &buf[*pos..end];
    *pos = end;
    Ok(out)
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a protobuf string field is not UTF-8".to_string())
}

/// A map entry: key = 1, value = 2.
fn entry(b: &[u8], value_bytes: bool) -> Result<(String, Value), String> {
    let mut pos = 0;
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while pos < b.len() {
        let tag = varint(b, &mut pos)?;
        let chunk = bytes(b, &mut pos)?;
        match tag >> 3 {
            1 => k = string(chunk)?,
            2 if value_bytes => v = json!(base64::engine::general_purpose::STANDARD.encode(chunk)),
            2 => v = json!(string(chunk)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Value, String> {
    let mut pos = 0;
    let mut seconds = 0i64;
    while pos < b.len() {
        let tag = varint(b, &mut pos)?;
        let v = varint(b, &mut pos)?;
        if tag >> 3 == 1 {
            seconds = v as i64;
        }
    }
    Ok(k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| json!(t.to_string()))
        .unwrap_or(Value::Null))
}

fn message(buf: &[u8], fields: &[Field]) -> Result<Value, String> {
    let mut out = Map::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (number, wire) = (tag >> 3, tag & 7);
        let field = fields.iter().find(|f| f.0 == number);
        let value = match wire {
            0 => {
                let v = varint(buf, &mut pos)?;
                match field {
                    Some((_, _, Ty::Bool, _)) => json!(v != 0),
                    _ => json!(v as i64),
                }
            }
            1 => {
                pos += 8;
                continue;
            }
            5 => {
                pos += 4;
                continue;
            }
            2 => {
                let chunk = bytes(buf, &mut pos)?;
                let Some((_, name, ty, _)) = field else {
                    continue;
                };
                match ty {
                    Ty::Str => json!(string(chunk)?),
                    Ty::Bytes => json!(base64::engine::general_purpose::STANDARD.encode(chunk)),
                    Ty::Time => time(chunk)?,
                    Ty::Msg(inner) => message(chunk, inner)?,
                    Ty::MapStrStr | Ty::MapStrBytes => {
                        let (k, v) = entry(chunk, matches!(ty, Ty::MapStrBytes))?;
                        let map = out.entry(name.to_string()).or_insert_with(|| json!({}));
                        map[k] = v;
                        continue;
                    }
                    Ty::Bool | Ty::Int => return Err(format!("protobuf field {name} has the wrong wire type")),
                }
            }
            _ => return Err("unsupported protobuf wire type".into()),
        };
        if pos > buf.len() {
            return Err("truncated protobuf field".into());
        }
        let Some((_, name, _, repeated)) = field else {
            continue;
        };
        // Go's JSON leaves out empty strings and zero numbers (`omitempty`); protobuf
        // carries them, so drop them to get the JSON the same object would have sent.
        if !*repeated && (value == json!("") || value == json!(0) || value.is_null()) {
            continue;
        }
        if *repeated {
            out.entry(name.to_string())
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("repeated fields are lists")
                .push(value);
        } else {
            out.insert(name.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn decodes_a_secret_envelope() {
        let entry = [field(1, b"k"), field(2, b"\x00\x01")].concat();
        let meta = [field(1, b"s"), field(11, &[field(1, b"app"), field(2, b"x")].concat())].concat();
        let secret = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let obj = decode(&body).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"app": "x"}}, "data": {"k": "AAE="}, "type": "Opaque"})
        );
    }
}
