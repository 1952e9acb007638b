//! The ESO CustomResourceDefinitions the fake serves, read from `deploy/crds.yaml` (the
//! file users apply), so printer columns and schemas cannot drift from it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

const CRDS_YAML: &str = include_str!("../../../../deploy/crds.yaml");

/// One served version of a CRD.
#[derive(Debug, Clone)]
pub(super) struct CrdVersion {
    /// `additionalPrinterColumns`: name, type, JSONPath.
    pub(super) columns: Vec<(String, String, String)>,
    /// `schema.openAPIV3Schema`.
    pub(super) schema: Value,
}

/// Kind → version → its definition.
fn all() -> &'static BTreeMap<(String, String), CrdVersion> {
    static CRDS: OnceLock<BTreeMap<(String, String), CrdVersion>> = OnceLock::new();
    CRDS.get_or_init(|| {
        let mut out = BTreeMap::new();
        for doc in serde_norway::Deserializer::from_str(CRDS_YAML) {
            let Ok(crd) = <Value as serde::Deserialize>::deserialize(doc) else {
                continue;
            };
            let Some(kind) = crd.pointer("/spec/names/kind").and_then(Value::as_str) else {
                continue;
            };
            for v in crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
                let columns = v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .map(|cols| {
                        cols.iter()
                            .map(|c| {
                                let s = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
                                (s("name"), s("type"), s("jsonPath"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let schema = v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(Value::Null);
                out.insert((kind.to_string(), name.to_string()), CrdVersion { columns, schema });
            }
        }
        out
    })
}

/// The definition of `kind` at `version`, if deploy/crds.yaml has it.
pub(super) fn crd(kind: &str, version: &str) -> Option<&'static CrdVersion> {
    all().get(&(kind.to_string(), version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_deploy_crds() {
        let es = crd("ExternalSecret", "v1").expect("ExternalSecret v1 in deploy/crds.yaml");
        assert!(es.columns.iter().any(|c| c.0 == "Store"));
        assert_eq!(es.schema["type"], "object");
        assert!(crd("ClusterSecretStore", "v1beta1").is_some());
    }
}
