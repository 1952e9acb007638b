//! Kubernetes Secret / ConfigMap manifests as YAML text, written by hand into a zeroized
//! buffer so no unzeroized copy of the encoded data is left behind.

use std::collections::BTreeMap;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::sink::{DesiredTarget, TargetKind, TargetRef, TargetState};
use crate::value::{SecretMap, SecretValue};

fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn map_block(out: &mut String, indent: &str, name: &str, m: &BTreeMap<String, String>) {
    if m.is_empty() {
        return;
    }
    out.push_str(&format!("{indent}{name}:\n"));
    for (k, v) in m {
        out.push_str(&format!("{indent}  {}: {}\n", q(k), q(v)));
    }
}

/// Renders the manifest of a target as `apply` would write it (`data` base64 for Secrets;
/// `data` text and `binaryData` base64 for ConfigMaps).
pub fn render_manifest(d: &DesiredTarget) -> Zeroizing<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Zeroizing::new(String::with_capacity(256 + d.data.byte_size() * 2));
    out.push_str("apiVersion: v1\n");
    out.push_str(&format!("kind: {}\n", d.target.kind));
    out.push_str("metadata:\n");
    out.push_str(&format!(
        "  name: {}\n  namespace: {}\n",
        q(&d.target.name),
        q(&d.target.namespace)
    ));
    map_block(&mut out, "  ", "labels", &d.labels);
    map_block(&mut out, "  ", "annotations", &d.annotations);
    if let Some(o) = &d.owner
        && let Some(uid) = &o.uid
        && d.creation_policy == crate::sink::CreationPolicy::Owner
    {
        out.push_str(&format!(
            "  ownerReferences:\n  - apiVersion: {}\n    kind: {}\n    name: {}\n    uid: {}\n    controller: true\n    blockOwnerDeletion: true\n",
            q(&o.api_version),
            q(&o.kind),
            q(&o.name),
            q(uid)
        ));
    }
    if d.immutable {
        out.push_str("immutable: true\n");
    }
    match d.target.kind {
        TargetKind::Secret => {
            out.push_str(&format!("type: {}\n", q(d.secret_type.as_deref().unwrap_or("Opaque"))));
            if !d.data.is_empty() {
                out.push_str("data:\n");
                for (k, v) in d.data.iter() {
                    out.push_str(&format!("  {}: ", q(k)));
                    let enc = Zeroizing::new(b64.encode(v.expose()));
                    out.push_str(&enc);
                    out.push('\n');
                }
            }
        }
        TargetKind::ConfigMap => {
            let (text, binary): (Vec<_>, Vec<_>) = d.data.iter().partition(|(_, v)| v.expose_str().is_some());
            if !text.is_empty() {
                out.push_str("data:\n");
                for (k, v) in text {
                    out.push_str(&format!("  {}: ", q(k)));
                    let s = Zeroizing::new(
                        serde_json::Value::String(v.expose_str().unwrap_or_default().to_string()).to_string(),
                    );
                    out.push_str(&s);
                    out.push('\n');
                }
            }
            if !binary.is_empty() {
                out.push_str("binaryData:\n");
                for (k, v) in binary {
                    out.push_str(&format!("  {}: {}\n", q(k), &*Zeroizing::new(b64.encode(v.expose()))));
                }
            }
        }
    }
    out
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    kind: String,
    metadata: Meta,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    binary_data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
    #[serde(default)]
    immutable: bool,
}

#[derive(serde::Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Parses a manifest written by [`render_manifest`] (or by hand) back into its target and
/// state. `file` names it in errors.
pub fn parse_manifest(text: &str, file: &str) -> Result<(TargetRef, TargetState)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let doc: Doc = serde_norway::from_str(text).map_err(|e| {
        Error::invalid(format!(
            "{file}: not a Secret/ConfigMap manifest{}",
            e.location()
                .map(|l| format!(" (line {} column {})", l.line(), l.column()))
                .unwrap_or_default()
        ))
    })?;
    let kind = match doc.kind.as_str() {
        "Secret" => TargetKind::Secret,
        "ConfigMap" => TargetKind::ConfigMap,
        other => {
            return Err(Error::invalid(format!(
                "{file}: kind `{other}` is not Secret or ConfigMap"
            )));
        }
    };
    let mut data = SecretMap::new();
    for (k, v) in &doc.data {
        let value = match kind {
            TargetKind::Secret => SecretValue::new(
                b64.decode(v.trim())
                    .map_err(|_| Error::invalid(format!("{file}: data.{k} is not valid base64")))?,
            ),
            TargetKind::ConfigMap => SecretValue::from(v.as_str()),
        };
        data.insert(k.clone(), value);
    }
    for (k, v) in &doc.binary_data {
        data.insert(
            k.clone(),
            SecretValue::new(
                b64.decode(v.trim())
                    .map_err(|_| Error::invalid(format!("{file}: binaryData.{k} is not valid base64")))?,
            ),
        );
    }
    for (k, v) in &doc.string_data {
        data.insert(k.clone(), SecretValue::from(v.as_str()));
    }
    let target = TargetRef {
        kind,
        namespace: doc.metadata.namespace.unwrap_or_else(|| "default".into()),
        name: doc.metadata.name,
    };
    let state = TargetState {
        data,
        secret_type: match kind {
            TargetKind::Secret => Some(doc.type_.unwrap_or_else(|| "Opaque".into())),
            TargetKind::ConfigMap => None,
        },
        labels: doc.metadata.labels,
        annotations: doc.metadata.annotations,
        immutable: doc.immutable,
    };
    Ok((target, state))
}
