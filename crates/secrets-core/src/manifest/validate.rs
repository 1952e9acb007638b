//! Offline checks of loaded manifests: everything that can be known without a fetch.

use std::collections::{BTreeMap, BTreeSet};

use super::model::NOT_SUPPORTED_PREFIX as NS;
use super::{ExternalSecret, Manifests, StoreKind};
use crate::error::{Error, Location};
use crate::rules::is_valid_secret_key;
use crate::template::Template;

/// What counts as an error.
#[derive(Debug, Clone, Copy)]
pub struct ValidateOptions {
    /// A reference to a store that is not in the manifests is an error (sync) rather than a
    /// warning (`--check` of a partial set of files).
    pub missing_store_is_error: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self {
            missing_store_is_error: true,
        }
    }
}

fn store_not_supported(loc: &Location, path: &str, what: &str) -> Error {
    Error::manifest(
        loc.field(path),
        format!(
            "{NS}{path}{}",
            if what.is_empty() {
                String::new()
            } else {
                format!(" ({what})")
            }
        ),
    )
}

/// "not supported yet: <field path>" for a field of an ExternalSecret, named by the document
/// it came from.
fn not_supported(es: &ExternalSecret, path: &str, what: &str) -> Error {
    store_not_supported(&es.origin, &es.field_path(path), what)
}

/// Checks every store and ExternalSecret; returns (errors, warnings).
pub fn validate(m: &Manifests, opts: ValidateOptions) -> (Vec<Error>, Vec<String>) {
    let mut errors = vec![];
    let mut warnings = vec![];
    // PushSecrets: unsupported parts and invalid combinations (see PushSecret::check).
    for ps in &m.push_secrets {
        errors.extend(ps.check());
    }

    let mut seen_stores = BTreeSet::new();
    for s in &m.stores {
        let loc = &s.origin;
        if !seen_stores.insert(s.id.clone()) {
            errors.push(Error::manifest(
                loc.field("metadata.name"),
                format!("duplicate {}", s.id),
            ));
        }
        for (i, c) in s.spec.conditions.iter().enumerate() {
            if s.id.kind == StoreKind::SecretStore {
                errors.push(Error::manifest(
                    loc.field(format!("spec.conditions[{i}]")),
                    "conditions apply to ClusterSecretStores only",
                ));
            }
            if c.namespace_selector.is_some() {
                errors.push(store_not_supported(
                    loc,
                    &format!("spec.conditions[{i}].namespaceSelector"),
                    "use namespaces or namespaceRegexes",
                ));
            }
            for (j, r) in c.namespace_regexes.iter().enumerate() {
                if let Err(e) = regex::Regex::new(r) {
                    errors.push(Error::manifest(
                        loc.field(format!("spec.conditions[{i}].namespaceRegexes[{j}]")),
                        crate::rules::one_line_regex_error(r, &e),
                    ));
                }
            }
        }
        if let Some(r) = &s.spec.retry_settings
            && let Some(iv) = &r.retry_interval
            && let Err(e) = crate::duration::parse_go_duration(iv)
        {
            errors.push(Error::manifest(loc.field("spec.retrySettings.retryInterval"), e));
        }
        // The provider's own settings are checked by its factory (`Registry::validate`).
    }

    let mut seen_specs = BTreeSet::new();
    let mut targets: BTreeMap<crate::sink::TargetRef, (String, bool)> = BTreeMap::new();
    for es in &m.external_secrets {
        if !seen_specs.insert(es.id()) {
            // One expanded from a ClusterExternalSecret collides through its namespace entry.
            let at = if es.expanded_from.is_some() {
                "metadata.namespace"
            } else {
                "metadata.name"
            };
            errors.push(Error::manifest(
                es.field(at),
                format!("duplicate ExternalSecret {}", es.id()),
            ));
        }
        if check_store_ref(es, &mut errors) {
            let id = es.store_id().expect("secretStoreRef is set");
            match m.store(&id) {
                None => {
                    let msg = format!("missing store: {id} is not in the given manifests");
                    if opts.missing_store_is_error {
                        errors.push(Error::manifest(es.field("spec.secretStoreRef.name"), msg));
                    } else {
                        warnings.push(format!("{}: {msg}", es.field("spec.secretStoreRef.name")));
                    }
                }
                Some(store) if !store.allows_namespace(es.namespace()) => {
                    errors.push(Error::manifest(
                        es.field("spec.secretStoreRef.name"),
                        format!(
                            "{id} does not allow namespace `{}` (its spec.conditions)",
                            es.namespace()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        check_spec(es, &mut errors, Refs::Required);
        super::generated::check_resolved(es, &mut errors);
        let t = &es.spec.target;
        let target = es.target_ref();
        let merge = t.creation_policy == crate::sink::CreationPolicy::Merge;
        if t.creation_policy != crate::sink::CreationPolicy::None {
            match targets.get(&target) {
                Some((other, other_merge)) if !(merge && *other_merge) => errors.push(Error::manifest(
                    es.field("spec.target.name"),
                    format!("{target} is also written by ExternalSecret {other}; only Merge targets may be shared"),
                )),
                _ => {
                    targets.insert(target, (es.id().to_string(), merge));
                }
            }
        }
    }
    // The ExternalSecrets of one ClusterExternalSecret share its fields: say each problem
    // of them once.
    let mut said = BTreeSet::new();
    errors.retain(|e| said.insert(e.to_string()));
    (errors, warnings)
}

/// The checks of one ExternalSecret that need no other document (everything [`validate`]
/// checks but its store, duplicates and shared targets), named by the fields of the
/// document it came from ([`ExternalSecret::field`]).
pub fn check_external_secret(es: &ExternalSecret) -> Vec<Error> {
    let mut errors = vec![];
    check_store_ref(es, &mut errors);
    check_spec(es, &mut errors, Refs::Required);
    errors
}

/// [`check_external_secret`] for an ExternalSecret read from a cluster, whose
/// `templateFrom` ConfigMaps and Secrets the caller finds there later: an unresolved
/// reference is not an error here (a resolved one is checked as usual). Call
/// [`check_external_secret`] again once the references are filled in.
pub fn check_external_secret_in_cluster(es: &ExternalSecret) -> Vec<Error> {
    let mut errors = vec![];
    check_store_ref(es, &mut errors);
    check_spec(es, &mut errors, Refs::FromCluster);
    errors
}

/// Whether an unresolved `templateFrom` reference is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refs {
    /// It must be among the manifests.
    Required,
    /// The operator resolves it from the cluster later.
    FromCluster,
}

/// `secretStoreRef` is there and of a known kind; whether it is there.
fn check_store_ref(es: &ExternalSecret, errors: &mut Vec<Error>) -> bool {
    match &es.spec.secret_store_ref {
        // Every entry is generated: there is nothing to read from a store.
        None if es.generated_only() => false,
        None => {
            errors.push(Error::manifest(
                es.field("spec.secretStoreRef"),
                "missing secretStoreRef",
            ));
            false
        }
        Some(r) => {
            if let Some(k) = &r.kind
                && k != "SecretStore"
                && k != "ClusterSecretStore"
            {
                errors.push(Error::manifest(
                    es.field("spec.secretStoreRef.kind"),
                    format!("unknown store kind `{k}` (SecretStore, ClusterSecretStore)"),
                ));
            }
            true
        }
    }
}

fn check_spec(es: &ExternalSecret, errors: &mut Vec<Error>, refs: Refs) {
    let spec = &es.spec;
    if let Err(e) = es.refresh_interval() {
        errors.push(Error::manifest(es.field("spec.refreshInterval"), e));
    }
    if let Err(e) = es.declared_consumers() {
        errors.push(Error::manifest(
            es.field(&format!("metadata.annotations.{}", super::RESTART_ANNOTATION)),
            e,
        ));
    }
    let t = &spec.target;
    if let Some(name) = &t.name
        && !is_valid_object_name(name)
    {
        errors.push(Error::manifest(
            es.field("spec.target.name"),
            format!("`{name}` is not a valid object name (lowercase RFC 1123 subdomain)"),
        ));
    }
    if !is_valid_object_name(es.name()) {
        errors.push(Error::manifest(
            es.field("metadata.name"),
            format!(
                "`{}` is not a valid object name (lowercase RFC 1123 subdomain)",
                es.name()
            ),
        ));
    }
    if let Some(mf) = &t.manifest
        && (mf.api_version != "v1" || (mf.kind != "ConfigMap" && mf.kind != "Secret"))
    {
        errors.push(not_supported(
            es,
            "spec.target.manifest",
            &format!("{} {}; only v1 ConfigMap", mf.api_version, mf.kind),
        ));
    }
    if let Some(tpl) = &t.template {
        if let Some(v) = &tpl.engine_version
            && v != "v2"
        {
            errors.push(not_supported(
                es,
                "spec.target.template.engineVersion",
                &format!("`{v}`; only v2"),
            ));
        }
        for (i, tf) in tpl.template_from.iter().enumerate() {
            check_template_from(es, tf, &format!("spec.target.template.templateFrom[{i}]"), errors, refs);
        }
        if let Some(p) = &tpl.merge_policy
            && p != "Replace"
            && p != "Merge"
        {
            errors.push(Error::manifest(
                es.field("spec.target.template.mergePolicy"),
                format!("unknown mergePolicy `{p}` (Replace, Merge)"),
            ));
        }
        if let Some(md) = &tpl.metadata
            && !md.finalizers.is_empty()
        {
            errors.push(not_supported(es, "spec.target.template.metadata.finalizers", ""));
        }
        for (k, src) in &tpl.data {
            if !is_valid_secret_key(k) {
                errors.push(Error::manifest(
                    es.field(&format!("spec.target.template.data.{k}")),
                    format!("key `{k}` does not match [-._a-zA-Z0-9]+"),
                ));
            }
            if let Err(e) = Template::parse(src) {
                errors.push(Error::manifest(es.field(&format!("spec.target.template.data.{k}")), e));
            }
        }
    }
    let mut keys = BTreeSet::new();
    for (i, d) in spec.data.iter().enumerate() {
        let p = format!("spec.data[{i}]");
        if !is_valid_secret_key(&d.secret_key) {
            errors.push(Error::manifest(
                es.field(&format!("{p}.secretKey")),
                format!("key `{}` does not match [-._a-zA-Z0-9]+", d.secret_key),
            ));
        }
        if !keys.insert(d.secret_key.as_str()) {
            errors.push(Error::manifest(
                es.field(&format!("{p}.secretKey")),
                format!("duplicate secretKey `{}`", d.secret_key),
            ));
        }
        check_remote_ref(&d.remote_ref, es, &format!("{p}.remoteRef"), errors);
    }
    if spec.data.is_empty()
        && spec.data_from.is_empty()
        && t.template
            .as_ref()
            .is_none_or(|t| t.data.is_empty() && t.template_from.is_empty())
    {
        errors.push(Error::manifest(
            es.field("spec"),
            "no data, dataFrom or template.data: nothing to sync",
        ));
    }
    for (i, df) in spec.data_from.iter().enumerate() {
        let p = format!("spec.dataFrom[{i}]");
        match (&df.extract, &df.find) {
            (Some(x), None) => check_remote_ref(x, es, &format!("{p}.extract"), errors),
            (None, Some(f)) => {
                if f.name.is_none() && f.path.is_none() && f.tags.is_empty() {
                    errors.push(Error::manifest(
                        es.field(&format!("{p}.find")),
                        "find needs name, path or tags",
                    ));
                }
                if let Some(n) = &f.name
                    && let Err(e) = regex::Regex::new(&n.regexp)
                {
                    errors.push(Error::manifest(
                        es.field(&format!("{p}.find.name.regexp")),
                        crate::rules::one_line_regex_error(&n.regexp, &e),
                    ));
                }
                if f.conversion_strategy.as_deref().is_some_and(|c| c != "Default") {
                    errors.push(not_supported(
                        es,
                        &format!("{p}.find.conversionStrategy"),
                        "only Default",
                    ));
                }
            }
            // A generator's output (checked with the other sourceRefs).
            (None, None) if df.source_ref.as_ref().is_some_and(|s| s.generator_ref.is_some()) => {}
            _ => errors.push(Error::manifest(es.field(&p), "exactly one of extract and find")),
        }
        for (j, rw) in df.rewrite.iter().enumerate() {
            let rp = format!("{p}.rewrite[{j}]");
            if rw.merge.is_some() {
                errors.push(not_supported(es, &format!("{rp}.merge"), ""));
                continue;
            }
            match (&rw.regexp, &rw.transform) {
                (Some(r), None) => {
                    if let Err(e) = regex::Regex::new(&r.source) {
                        errors.push(Error::manifest(
                            es.field(&format!("{rp}.regexp.source")),
                            crate::rules::one_line_regex_error(&r.source, &e),
                        ));
                    }
                }
                (None, Some(tf)) => {
                    if let Err(e) = Template::parse(&tf.template) {
                        errors.push(Error::manifest(es.field(&format!("{rp}.transform.template")), e));
                    }
                }
                _ => errors.push(Error::manifest(es.field(&rp), "exactly one of regexp and transform")),
            }
        }
    }
    super::generated::check_source_refs(es, errors);
}

/// A `templateFrom` entry: its shape, its reference found in the manifests (or filled by
/// the operator), its keys present, its templates parsing.
fn check_template_from(es: &ExternalSecret, tf: &super::TemplateFrom, at: &str, errors: &mut Vec<Error>, refs: Refs) {
    use super::template_from::{reference, scope};
    if scope(tf).is_none() {
        errors.push(not_supported(
            es,
            &format!("{at}.target"),
            "only Data, Annotations and Labels",
        ));
    }
    if let Some(lit) = &tf.literal {
        if tf.config_map.is_some() || tf.secret.is_some() {
            errors.push(Error::manifest(
                es.field(at),
                "exactly one of configMap, secret and literal",
            ));
        }
        if let Err(e) = Template::parse(lit) {
            errors.push(Error::manifest(es.field(&format!("{at}.literal")), e));
        }
        return;
    }
    let Some((kind, r)) = reference(tf) else {
        errors.push(Error::manifest(
            es.field(at),
            "exactly one of configMap, secret and literal",
        ));
        return;
    };
    if r.items.is_empty() {
        errors.push(Error::manifest(
            es.field(&format!("{at}.{kind}.items")),
            "items is required",
        ));
    }
    for (j, item) in r.items.iter().enumerate() {
        if let Some(s) = &item.template_as
            && s != "Values"
            && s != "KeysAndValues"
        {
            errors.push(Error::manifest(
                es.field(&format!("{at}.{kind}.items[{j}].templateAs")),
                format!("unknown templateAs `{s}` (Values, KeysAndValues)"),
            ));
        }
    }
    let Some(source) = &r.resolved else {
        if refs == Refs::FromCluster {
            return;
        }
        errors.push(Error::manifest(
            es.field(&format!("{at}.{kind}.name")),
            format!(
                "{kind} `{}` is not in the manifests (a plain v1 {} in namespace {})",
                r.name,
                if kind == "configMap" { "ConfigMap" } else { "Secret" },
                es.namespace()
            ),
        ));
        return;
    };
    for (j, item) in r.items.iter().enumerate() {
        let field = format!("{at}.{kind}.items[{j}]");
        match source.get(&item.key).map(|v| v.expose_str()) {
            None => errors.push(Error::manifest(
                es.field(&format!("{field}.key")),
                format!("key `{}` is not in {kind} `{}`", item.key, r.name),
            )),
            Some(None) => errors.push(Error::manifest(
                es.field(&format!("{field}.key")),
                format!("the template at key `{}` is not UTF-8", item.key),
            )),
            Some(Some(src)) => {
                if let Err(e) = Template::parse(src) {
                    errors.push(Error::manifest(es.field(&field), e));
                }
            }
        }
    }
}

fn check_remote_ref(r: &super::RemoteRef, es: &ExternalSecret, p: &str, errors: &mut Vec<Error>) {
    if let Some(prop) = &r.property
        && let Err(e) = crate::rules::check_property(prop)
    {
        errors.push(Error::manifest(es.field(&format!("{p}.property")), e.to_string()));
    }
    if r.key.is_empty() {
        errors.push(Error::manifest(es.field(&format!("{p}.key")), "empty key"));
    }
    if let Some(m) = &r.metadata_policy
        && m != "None"
        && m != "Fetch"
    {
        errors.push(Error::manifest(
            es.field(&format!("{p}.metadataPolicy")),
            format!("unknown metadataPolicy `{m}` (None, Fetch)"),
        ));
    }
    if let Some(c) = &r.conversion_strategy
        && c != "Default"
    {
        errors.push(not_supported(
            es,
            &format!("{p}.conversionStrategy"),
            &format!("`{c}`; only Default"),
        ));
    }
    if let Some(n) = &r.null_byte_policy
        && n != "Ignore"
        && n != "Fail"
    {
        errors.push(Error::manifest(
            es.field(&format!("{p}.nullBytePolicy")),
            format!("unknown nullBytePolicy `{n}` (Ignore, Fail)"),
        ));
    }
}

/// A Kubernetes object name: a lowercase RFC 1123 subdomain of at most 253 characters.
pub fn is_valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
