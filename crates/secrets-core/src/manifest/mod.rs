//! ESO manifests: load multi-document YAML files of SecretStore, ClusterSecretStore,
//! ExternalSecret and ClusterExternalSecret (`external-secrets.io/v1` and `v1beta1`), plus
//! plain `v1` ConfigMaps and Secrets that are synced as they are.
//!
//! Loading collects every problem it finds, each naming the file, the document and the
//! field path; it never stops at the first.
//!
//! A ClusterExternalSecret expands into one ExternalSecret per namespace of its
//! `spec.namespaces` (named `spec.externalSecretName` or after it, labelled and annotated
//! from `spec.externalSecretMetadata`), so everything downstream sees plain ExternalSecrets;
//! errors about them still name the ClusterExternalSecret's document and fields. Namespace
//! selectors need the Namespaces of a cluster: without one (file mode) they are an error, and
//! the operator resolves them (see [`ClusterExternalSecret::selects`]).

mod decode;
mod generated;
mod load;
pub mod model;
pub mod push;
mod template_from;
mod types;
mod validate;
mod walk;

pub(crate) use decode::{Document, require_name, typed, typed_at};
pub use generated::resolve_generators;
pub use load::{from_value, load_file, load_paths, load_str, manifest_files, merge_files};
pub use model::*;
pub use push::{GeneratorDoc, GeneratorKind, PushSecret};
pub use template_from::resolve_template_from;
pub(crate) use template_from::{Rendered as TemplateOutput, render_template_from};
pub use types::*;
pub use validate::{
    ValidateOptions, check_external_secret, check_external_secret_in_cluster, is_valid_object_name, validate,
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::error::{Error, Location};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const CES: &str = "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: db}\nspec:\n  namespaces: [listed]\n  namespaceSelector: {matchLabels: {legacy: 'yes'}}\n  namespaceSelectors:\n    - matchLabels: {team: payments}\n      matchExpressions:\n        - {key: env, operator: NotIn, values: [dev]}\n    - matchExpressions:\n        - {key: shared, operator: Exists}\n        - {key: private, operator: DoesNotExist}\n  externalSecretSpec:\n    secretStoreRef: {name: s, kind: ClusterSecretStore}\n    data:\n      - {secretKey: A, remoteRef: {key: a}}\n";

    fn parse(text: &str) -> Result<ClusterExternalSecret, Error> {
        let value: Value = serde_norway::from_str(text).unwrap();
        ClusterExternalSecret::parse(value, &Location::default())
    }

    #[test]
    fn namespaces_are_the_listed_ones_or_any_selector_match() {
        let ces = parse(CES).unwrap();
        assert_eq!(ces.selectors().len(), 3);
        assert_eq!(ces.refresh_time(), Ok(Some(DEFAULT_CES_REFRESH_TIME)));
        assert!(ces.selects("listed", &labels(&[])));
        assert!(ces.selects("x", &labels(&[("legacy", "yes")])));
        assert!(
            ces.selects("x", &labels(&[("team", "payments")])),
            "NotIn holds when unset"
        );
        assert!(ces.selects("x", &labels(&[("team", "payments"), ("env", "prod")])));
        assert!(!ces.selects("x", &labels(&[("team", "payments"), ("env", "dev")])));
        assert!(ces.selects("x", &labels(&[("shared", "")])));
        assert!(!ces.selects("x", &labels(&[("shared", "1"), ("private", "1")])));
        assert!(!ces.selects("x", &labels(&[("team", "other")])));
        assert!(
            LabelSelector::default().matches(&labels(&[])),
            "an empty selector matches all"
        );
        let in_ = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: LabelSelectorOperator::In,
                values: vec!["prod".into(), "staging".into()],
            }],
            ..LabelSelector::default()
        };
        assert!(in_.matches(&labels(&[("env", "staging")])));
        assert!(!in_.matches(&labels(&[])));
        assert!(ces.check_spec().is_empty(), "{:?}", ces.check_spec());
    }

    #[test]
    fn expanded_external_secrets_name_the_cluster_external_secret_fields() {
        let ces = parse(CES).unwrap();
        let es = ces.external_secret("listed", 0);
        assert_eq!(es.id().to_string(), "listed/db");
        assert_eq!(
            es.field_path("spec.data[0].sourceRef"),
            "spec.externalSecretSpec.data[0].sourceRef"
        );
        assert_eq!(es.field_path("spec"), "spec.externalSecretSpec");
        assert_eq!(es.field_path("metadata.name"), "metadata.name");
        assert_eq!(es.field_path("metadata.namespace"), "spec.namespaces[0]");
        assert_eq!(
            es.field_path("metadata.annotations.force-sync"),
            "spec.externalSecretMetadata.annotations.force-sync"
        );
        let named = parse(&CES.replace(
            "  namespaces: [listed]",
            "  externalSecretName: creds\n  namespaces: [listed]",
        ))
        .unwrap();
        let es = named.external_secret("other", 3);
        assert_eq!(es.id().to_string(), "other/creds");
        assert_eq!(es.field_path("metadata.name"), "spec.externalSecretName");
        assert_eq!(es.field_path("metadata.namespace"), "spec.namespaces[3]");
        // A plain ExternalSecret's paths are its own.
        let plain = ExternalSecret {
            expanded_from: None,
            ..es
        };
        assert_eq!(plain.field_path("spec.data"), "spec.data");
    }

    #[test]
    fn a_problem_shared_by_every_namespace_is_reported_once() {
        let text = "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: s}\nspec: {provider: {fake: {data: []}}}\n---\napiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: db}\nspec:\n  namespaces: [a, b, c]\n  externalSecretSpec:\n    secretStoreRef: {name: s, kind: ClusterSecretStore}\n    refreshInterval: often\n    data:\n      - {secretKey: A, remoteRef: {key: a}, sourceRef: {storeRef: {name: s}}}\n";
        let loaded = load_str(text, "ces.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.manifests.external_secrets.len(), 3);
        let (errors, _) = validate(&loaded.manifests, ValidateOptions::default());
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "ces.yaml: document 2 (ClusterExternalSecret db): spec.externalSecretSpec.refreshInterval: invalid duration `often`: expected a number",
                "ces.yaml: document 2 (ClusterExternalSecret db): spec.externalSecretSpec.data[0].sourceRef.storeRef: not supported yet: spec.externalSecretSpec.data[0].sourceRef.storeRef (one store per ExternalSecret)",
            ]
        );
        // The operator's check of the same spec, before any namespace is known.
        let ces = &loaded.manifests.cluster_external_secrets[0];
        let checked: Vec<String> = ces.check_spec().iter().map(ToString::to_string).collect();
        assert_eq!(checked, errors);
    }

    #[test]
    fn refresh_time_zero_means_no_periodic_re_evaluation() {
        let ces = parse(&CES.replace("  namespaces: [listed]", "  refreshTime: 0s\n  namespaces: [listed]")).unwrap();
        assert_eq!(ces.refresh_time(), Ok(None));
        let ces =
            parse(&CES.replace("  namespaces: [listed]", "  refreshTime: 1h30m\n  namespaces: [listed]")).unwrap();
        assert_eq!(ces.refresh_time(), Ok(Some(Duration::from_secs(5400))));
    }
}
