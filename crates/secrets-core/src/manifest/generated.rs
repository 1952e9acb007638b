//! Generators on ExternalSecrets: `data[].sourceRef.generatorRef` and
//! `dataFrom[].sourceRef.generatorRef` naming a `Password` or `UUID` document of the given
//! manifests (`generators.external-secrets.io/v1alpha1`).
//!
//! - `dataFrom[]` with a generator gives the generator's whole output (`password` or
//!   `uuid`), then `rewrite` applies, as ESO does; `extract` and `find` do not go with it.
//! - `data[]` with a generator (ESO parses it but does not implement it) gives the output
//!   key named by `remoteRef.key` (`password` / `uuid`) under `secretKey`; `property`,
//!   `version` and `metadataPolicy` do not apply to a generated value.
//! - ESO regenerates on every sync. Our annotation `secretsync.io/generate: if-absent` (on
//!   the ExternalSecret, or on the generator document) keeps a generated key's value when
//!   the target already holds that key, so a value is generated once and never again
//!   (ESO #5782). ESO's `refreshPolicy: CreatedOnce` is not that: it freezes the whole
//!   target, so the store-read keys next to the generated one would never update.

use super::push::{GENERATE_ANNOTATION, GENERATORS_API_GROUP, GeneratorRef};
use super::{ExternalSecret, Manifests, SourceRef};
use crate::error::Error;
use crate::generators::{GeneratePolicy, ResolvedGenerator};

/// Fills every `sourceRef.generatorRef` whose generator is among the manifests' generator
/// documents (same kind and name; a namespaced generator only for its namespace). Others
/// stay unresolved, and [`super::validate`] names them.
pub fn resolve_generators(m: &mut Manifests) {
    if m.generators.is_empty() {
        return;
    }
    let generators = std::mem::take(&mut m.generators);
    for es in &mut m.external_secrets {
        let ns = es.namespace().to_string();
        let refs = es
            .spec
            .data
            .iter_mut()
            .filter_map(|d| d.source_ref.as_mut())
            .chain(es.spec.data_from.iter_mut().filter_map(|d| d.source_ref.as_mut()));
        for sr in refs {
            let Some(r) = &sr.generator_ref else {
                continue;
            };
            if sr.generator.is_some() {
                continue;
            }
            sr.generator = generators
                .iter()
                .find(|g| g.is(r) && g.metadata.namespace.as_deref().is_none_or(|n| n == ns))
                .map(|g| ResolvedGenerator {
                    kind: g.kind.clone(),
                    if_absent: g.if_absent(),
                });
        }
    }
    m.generators = generators;
}

impl ExternalSecret {
    /// The `secretsync.io/generate` annotation: when generated keys get a fresh value.
    pub fn generate_policy(&self) -> Result<GeneratePolicy, String> {
        match self.metadata.annotations.get(GENERATE_ANNOTATION) {
            None => Ok(GeneratePolicy::Always),
            Some(v) => GeneratePolicy::parse(v),
        }
    }

    /// Whether any entry reads a generator.
    pub fn uses_generators(&self) -> bool {
        self.spec
            .data
            .iter()
            .filter_map(|d| d.source_ref.as_ref())
            .chain(self.spec.data_from.iter().filter_map(|d| d.source_ref.as_ref()))
            .any(|s| s.generator_ref.is_some())
    }

    /// Whether every entry reads a generator (and there is at least one): such an
    /// ExternalSecret needs no `secretStoreRef`, as in ESO's generator examples.
    pub fn generated_only(&self) -> bool {
        let entries = self.spec.data.len() + self.spec.data_from.len();
        let generated = self
            .spec
            .data
            .iter()
            .filter_map(|d| d.source_ref.as_ref())
            .chain(self.spec.data_from.iter().filter_map(|d| d.source_ref.as_ref()))
            .filter(|s| s.generator_ref.is_some())
            .count();
        entries > 0 && generated == entries
    }

    /// Whether a generated key keeps the target's current value: the ExternalSecret or the
    /// generator document says `if-absent`.
    pub fn keeps_generated(&self, source: &SourceRef) -> bool {
        self.generate_policy() == Ok(GeneratePolicy::IfAbsent) || source.generator.as_ref().is_some_and(|g| g.if_absent)
    }

    /// Whether rendering needs what the target holds now (an `if-absent` generator).
    pub fn needs_current_target(&self) -> bool {
        self.spec
            .data
            .iter()
            .filter_map(|d| d.source_ref.as_ref())
            .chain(self.spec.data_from.iter().filter_map(|d| d.source_ref.as_ref()))
            .any(|s| s.generator_ref.is_some() && self.keeps_generated(s))
    }
}

/// The checks of `sourceRef` entries that need no other document.
pub(crate) fn check_source_refs(es: &ExternalSecret, errors: &mut Vec<Error>) {
    let not_supported = |path: String, what: &str| {
        Error::manifest(
            es.field(&path),
            format!("{}{} ({what})", super::NOT_SUPPORTED_PREFIX, es.field_path(&path)),
        )
    };
    if let Err(m) = es.generate_policy() {
        errors.push(Error::manifest(
            es.field(&format!("metadata.annotations.{GENERATE_ANNOTATION}")),
            m,
        ));
    }
    for (i, d) in es.spec.data.iter().enumerate() {
        let Some(sr) = &d.source_ref else {
            continue;
        };
        let p = format!("spec.data[{i}].sourceRef");
        if !check_one(es, sr, &p, errors, &not_supported) {
            continue;
        }
        let g = sr.generator_ref.as_ref().expect("checked");
        let out = output_key(&g.kind);
        let r = &d.remote_ref;
        if r.key != out {
            errors.push(Error::manifest(
                es.field(&format!("spec.data[{i}].remoteRef.key")),
                format!(
                    "generator {} {} produces only the key `{out}`: set remoteRef.key to it",
                    g.kind, g.name
                ),
            ));
        }
        for (set, field) in [
            (r.property.is_some(), "property"),
            (r.version.is_some(), "version"),
            (
                r.metadata_policy.as_deref().is_some_and(|m| m != "None"),
                "metadataPolicy",
            ),
        ] {
            if set {
                errors.push(Error::manifest(
                    es.field(&format!("spec.data[{i}].remoteRef.{field}")),
                    format!("does not apply to generator {} {}", g.kind, g.name),
                ));
            }
        }
    }
    for (i, df) in es.spec.data_from.iter().enumerate() {
        let Some(sr) = &df.source_ref else {
            continue;
        };
        let p = format!("spec.dataFrom[{i}].sourceRef");
        if !check_one(es, sr, &p, errors, &not_supported) {
            continue;
        }
        if df.extract.is_some() || df.find.is_some() {
            errors.push(Error::manifest(
                es.field(&p),
                "a generator gives its whole output: remove extract and find",
            ));
        }
    }
    if es.needs_current_target()
        && es.spec.target.template.as_ref().is_some_and(|t| {
            t.merge_policy.as_deref() != Some("Merge") && (!t.data.is_empty() || !t.template_from.is_empty())
        })
    {
        errors.push(Error::manifest(
            es.field(&format!("metadata.annotations.{GENERATE_ANNOTATION}")),
            "if-absent keeps a generated key by its name in the target, which a template with mergePolicy Replace renames: use mergePolicy Merge",
        ));
    }
}

/// One `sourceRef`: a generator of a supported kind, no `storeRef`. Whether it names a
/// generator that can be checked further.
fn check_one(
    es: &ExternalSecret,
    sr: &SourceRef,
    p: &str,
    errors: &mut Vec<Error>,
    not_supported: &dyn Fn(String, &str) -> Error,
) -> bool {
    if sr.store_ref.is_some() {
        errors.push(not_supported(format!("{p}.storeRef"), "one store per ExternalSecret"));
        return false;
    }
    let Some(g) = &sr.generator_ref else {
        errors.push(Error::manifest(es.field(p), "set generatorRef"));
        return false;
    };
    if let Some(v) = &g.api_version
        && v != &format!("{GENERATORS_API_GROUP}/v1alpha1")
    {
        errors.push(Error::manifest(
            es.field(&format!("{p}.generatorRef.apiVersion")),
            format!("`{v}`: expected {GENERATORS_API_GROUP}/v1alpha1"),
        ));
        return false;
    }
    if !matches!(g.kind.as_str(), "Password" | "UUID") {
        errors.push(not_supported(
            format!("{p}.generatorRef.kind"),
            &format!("generator kind {}; Password and UUID are", g.kind),
        ));
        return false;
    }
    true
}

/// Unresolved generator references (the generator is not among the manifests).
pub(crate) fn check_resolved(es: &ExternalSecret, errors: &mut Vec<Error>) {
    let entries = es
        .spec
        .data
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            d.source_ref
                .as_ref()
                .map(|s| (format!("spec.data[{i}].sourceRef.generatorRef"), s))
        })
        .chain(es.spec.data_from.iter().enumerate().filter_map(|(i, d)| {
            d.source_ref
                .as_ref()
                .map(|s| (format!("spec.dataFrom[{i}].sourceRef.generatorRef"), s))
        }));
    for (p, sr) in entries {
        if let Some(g) = sr.generator_ref.as_ref().filter(|g| is_supported(g))
            && sr.generator.is_none()
        {
            errors.push(Error::manifest(
                es.field(&p),
                format!("generator {} {} is not in the given manifests", g.kind, g.name),
            ));
        }
    }
}

fn is_supported(g: &GeneratorRef) -> bool {
    matches!(g.kind.as_str(), "Password" | "UUID")
}

fn output_key(kind: &str) -> &'static str {
    if kind == "UUID" { "uuid" } else { "password" }
}
