//! Typed deserialization of a document or a part of one, with the field path of the first
//! error and never a value.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::error::{Error, Location, redact_quoted};

/// Typed deserialization with the field path of the first error.
pub(crate) fn typed<T: DeserializeOwned>(value: Value, location: &Location) -> Result<T, Error> {
    typed_at(value, location, "")
}

/// [`typed`] for a value found at `prefix` of the document (`spec.provider.aws`): error
/// paths start with it.
pub(crate) fn typed_at<T: DeserializeOwned>(value: Value, location: &Location, prefix: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        if !prefix.is_empty() {
            path = if path.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{path}")
            };
        }
        let mut msg = e.inner().to_string();
        // Nested provider errors carry their sub-path as `@@sub.path@@message`.
        if let Some(rest) = msg.strip_prefix("@@")
            && let Some((sub, m)) = rest.split_once("@@")
        {
            path = if path.is_empty() {
                sub.to_string()
            } else {
                format!("{path}.{sub}")
            };
            msg = m.to_string();
        }
        // serde names the unknown field in the message but not in the path.
        if let Some(rest) = msg.strip_prefix("unknown field `")
            && let Some((field, _)) = rest.split_once('`')
            && !path.ends_with(field)
        {
            path = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
        }
        if let Some(rest) = msg.strip_prefix("missing field `")
            && let Some((field, _)) = rest.split_once('`')
        {
            path = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
        }
        let msg = redact_quoted(&msg);
        let msg = match msg.strip_prefix(model::NOT_SUPPORTED_PREFIX) {
            Some(rest) => {
                // "not supported yet: <field path>" names the full path.
                let what = rest.split_once(':').map(|(_, w)| w.trim()).unwrap_or(rest);
                return Error::manifest(
                    location.field(path.clone()),
                    format!("{}{path} ({what})", model::NOT_SUPPORTED_PREFIX),
                );
            }
            None => msg,
        };
        let loc = if path.is_empty() {
            location.clone()
        } else {
            location.field(path)
        };
        Error::manifest(loc, msg)
    })
}

pub(crate) fn require_name(meta: &ObjectMeta, location: &Location) -> Result<(), Error> {
    if meta.name.is_empty() {
        return Err(Error::manifest(location.field("metadata.name"), "missing name"));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Document<S> {
    #[allow(dead_code)]
    pub(crate) api_version: String,
    #[allow(dead_code)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) metadata: ObjectMeta,
    pub(crate) spec: S,
    #[allow(dead_code)]
    #[serde(default)]
    pub(crate) status: Option<Value>,
}
