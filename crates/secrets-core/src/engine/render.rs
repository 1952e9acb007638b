//! Turning fetched values into a target's desired state: properties, decoding, extract,
//! find, rewrite, templates, key checks, size limit, fingerprint.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::error::{Error, Location};
use crate::fingerprint::FingerprintKey;
use crate::manifest::{ExternalSecret, RemoteRef, StaticTarget, StoreId};
use crate::sink::*;
use crate::source::{FindQuery, RemoteKey};
use crate::template::{Template, TemplateContext};
use crate::value::{MAX_TARGET_BYTES, SecretMap, SecretValue};
use crate::{rules, transform};

/// A failure that can be shared by every spec that needed the same fetch.
#[derive(Debug, Clone)]
pub struct SpecError {
    /// What went wrong, naming file, document, field and key; never a value.
    pub message: String,
    /// Whether retrying may help.
    pub retryable: bool,
    /// Provider's retry-after.
    pub retry_after: Option<Duration>,
    /// The remote secret does not exist (drives deletionPolicy).
    pub not_found: bool,
}

impl SpecError {
    pub(crate) fn from_error(e: &Error) -> Self {
        Self {
            message: e.to_string(),
            retryable: e.is_retryable(),
            retry_after: e.retry_after(),
            not_found: e.is_not_found(),
        }
    }
    pub(crate) fn at(&self, loc: &impl Place, field: &str) -> Self {
        Self {
            message: format!("{}: {}", loc.place(field), self.message),
            ..self.clone()
        }
    }
    pub(crate) fn invalid(loc: &impl Place, field: &str, e: &Error) -> Self {
        Self::from_error(e).at(loc, field)
    }
}

/// Values by remote key and version, looked up by borrowed name and version: the per-spec
/// lookups of a cycle (thousands) build no keys, and a key read at one version (nearly
/// all) costs no allocation beyond its name.
#[derive(Debug)]
pub(crate) struct KeyMap<V>(HashMap<String, Versions<V>>);

#[derive(Debug)]
enum Versions<V> {
    One(Option<String>, V),
    Many(Vec<(Option<String>, V)>),
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<V> KeyMap<V> {
    pub fn get(&self, key: &str, version: Option<&str>) -> Option<&V> {
        match self.0.get(key)? {
            Versions::One(v, x) => (v.as_deref() == version).then_some(x),
            Versions::Many(all) => all.iter().find(|(v, _)| v.as_deref() == version).map(|(_, x)| x),
        }
    }
    pub fn contains(&self, k: &RemoteKey) -> bool {
        self.get(&k.key, k.version.as_deref()).is_some()
    }
    pub fn insert(&mut self, k: RemoteKey, value: V) {
        use std::collections::hash_map::Entry;
        let slot = match self.0.entry(k.key) {
            Entry::Vacant(e) => {
                e.insert(Versions::One(k.version, value));
                return;
            }
            Entry::Occupied(e) => e.into_mut(),
        };
        match slot {
            Versions::One(v, x) if *v == k.version => *x = value,
            Versions::Many(all) => match all.iter_mut().find(|(v, _)| *v == k.version) {
                Some(found) => found.1 = value,
                None => all.push((k.version, value)),
            },
            Versions::One(..) => {
                let Versions::One(v, x) = std::mem::replace(slot, Versions::Many(Vec::with_capacity(2))) else {
                    unreachable!("matched One above")
                };
                if let Versions::Many(all) = slot {
                    all.push((v, x));
                    all.push((k.version, value));
                }
            }
        }
    }
    pub fn remove(&mut self, k: &RemoteKey) {
        let empty = match self.0.get_mut(&k.key) {
            Some(Versions::One(v, _)) => *v == k.version,
            Some(Versions::Many(all)) => {
                all.retain(|(v, _)| *v != k.version);
                all.is_empty()
            }
            None => false,
        };
        if empty {
            self.0.remove(&k.key);
        }
    }
}

/// What errors name: a field of a document. An ExternalSecret expanded from a
/// ClusterExternalSecret names the ClusterExternalSecret's field that gave it.
pub(crate) trait Place {
    fn place(&self, field: &str) -> Location;
}

impl Place for Location {
    fn place(&self, field: &str) -> Location {
        self.field(field)
    }
}

impl Place for ExternalSecret {
    fn place(&self, field: &str) -> Location {
        self.field(field)
    }
}

/// Everything fetched in a cycle, by store.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub stores: HashMap<StoreId, StoreFetched>,
}

/// What one store gave in a cycle.
#[derive(Debug, Default)]
pub(crate) struct StoreFetched {
    /// The whole fetch failed (e.g. timed out): every lookup gives this error.
    pub error: Option<SpecError>,
    pub values: KeyMap<Result<SecretValue, SpecError>>,
    pub metadata: HashMap<String, Result<SecretValue, SpecError>>,
    pub finds: HashMap<FindQuery, Result<Vec<String>, SpecError>>,
}

pub(crate) fn is_metadata(r: &RemoteRef) -> bool {
    r.metadata_policy.as_deref() == Some("Fetch")
}

pub(crate) fn find_query(f: &crate::manifest::Find) -> FindQuery {
    FindQuery {
        name_regexp: f.name.as_ref().map(|n| n.regexp.clone()),
        path: f.path.clone(),
        tags: f.tags.clone(),
    }
}

impl StoreFetched {
    fn lookup<'a, V>(&'a self, found: Option<&'a Result<V, SpecError>>) -> Result<&'a V, SpecError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match found {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(e.clone()),
            None => Err(missing()),
        }
    }
    fn value(&self, r: &RemoteRef) -> Result<&SecretValue, SpecError> {
        if is_metadata(r) {
            return self.lookup(self.metadata.get(&r.key));
        }
        self.lookup(self.values.get(&r.key, r.version.as_deref()))
    }
    fn named(&self, name: &str) -> Result<&SecretValue, SpecError> {
        self.lookup(self.values.get(name, None))
    }
    fn found(&self, q: &FindQuery) -> Result<&Vec<String>, SpecError> {
        self.lookup(self.finds.get(q))
    }
}

/// What a lookup gives for a store that was not fetched at all.
static NOT_FETCHED: std::sync::LazyLock<StoreFetched> = std::sync::LazyLock::new(|| StoreFetched {
    error: Some(missing()),
    ..Default::default()
});

impl Fetched {
    fn store(&self, id: &StoreId) -> &StoreFetched {
        self.stores.get(id).unwrap_or(&NOT_FETCHED)
    }
}

fn missing() -> SpecError {
    SpecError {
        message: "internal: value was not fetched".into(),
        retryable: true,
        retry_after: None,
        not_found: false,
    }
}

/// One `spec.data[i].remoteRef` value after property and decoding. Error paths are built
/// only on error: this runs for every entry of every spec, every cycle.
fn resolve(r: &RemoteRef, v: &SecretValue, loc: &ExternalSecret, i: usize) -> Result<SecretValue, SpecError> {
    let path = |field: &str| format!("spec.data[{i}].remoteRef.{field}");
    let v = match &r.property {
        Some(p) if !p.is_empty() => {
            transform::get_property(v, p, &r.key).map_err(|e| SpecError::invalid(loc, &path("property"), &e))?
        }
        _ => v.clone(),
    };
    let strategy = r.decoding_strategy.unwrap_or_default();
    let v = if strategy == crate::manifest::DecodingStrategy::None {
        v
    } else {
        transform::decode(v, strategy, &format!("remote key `{}`", r.key))
            .map_err(|e| SpecError::invalid(loc, &path("decodingStrategy"), &e))?
    };
    if r.null_byte_policy.as_deref() == Some("Fail") && v.expose().contains(&0) {
        return Err(SpecError::invalid(
            loc,
            &path("nullBytePolicy"),
            &Error::invalid(format!("remote key `{}` contains a NUL byte", r.key)),
        ));
    }
    Ok(v)
}

/// A fresh value of the generator an entry's `sourceRef` names (resolved by the loader).
fn generated(
    es: &ExternalSecret,
    sr: &crate::manifest::SourceRef,
    field: &str,
) -> Result<(&'static str, SecretValue), SpecError> {
    let g = sr.generator.as_ref().ok_or_else(|| {
        let r = sr.generator_ref.as_ref().expect("a generator entry");
        SpecError::invalid(
            es,
            field,
            &Error::invalid(format!("generator {} {} is not in the given manifests", r.kind, r.name)),
        )
    })?;
    let v = crate::generators::generate(&g.kind)
        .map_err(|m| SpecError::invalid(es, field, &Error::invalid(format!("generator: {m}"))))?;
    Ok((g.output_key(), v))
}

/// With `if-absent`, a generated key the target already holds keeps the target's value.
fn keep_current(
    es: &ExternalSecret,
    sr: &crate::manifest::SourceRef,
    key: &str,
    current: Option<&SecretMap>,
) -> Option<SecretValue> {
    if !es.keeps_generated(sr) {
        return None;
    }
    current.and_then(|c| c.get(key)).cloned()
}

/// What the target of `es` holds now, read only when rendering needs it (an `if-absent`
/// generator, see [`ExternalSecret::needs_current_target`]). A failed read fails the spec:
/// generating anyway could replace a value that must be kept.
pub(crate) async fn current_data(sink: &dyn SecretSink, es: &ExternalSecret) -> Result<Option<SecretMap>, SpecError> {
    if !es.needs_current_target() {
        return Ok(None);
    }
    let field = format!("metadata.annotations.{}", crate::manifest::push::GENERATE_ANNOTATION);
    if !sink.capabilities().readable {
        return Err(SpecError::invalid(
            es,
            &field,
            &Error::invalid(format!(
                "if-absent needs to read the target back, which the {} sink cannot",
                sink.name()
            )),
        ));
    }
    match sink.read(&es.target_ref()).await {
        Ok(state) => Ok(state.map(|s| s.data)),
        Err(e) => Err(SpecError::from_error(&e).at(es, &field)),
    }
}

/// The data of an ExternalSecret, before templates. `current` is what the target holds
/// now, given when [`ExternalSecret::needs_current_target`].
fn collect_data(es: &ExternalSecret, f: &StoreFetched, current: Option<&SecretMap>) -> Result<SecretMap, SpecError> {
    let loc = es;
    let mut data = SecretMap::new();
    for (i, df) in es.spec.data_from.iter().enumerate() {
        let p = format!("spec.dataFrom[{i}]");
        let mut part = SecretMap::new();
        let generator = df.source_ref.as_ref().filter(|s| s.generator_ref.is_some());
        if let Some(sr) = generator {
            let (k, v) = generated(es, sr, &format!("{p}.sourceRef.generatorRef"))?;
            part.insert(k.to_string(), v);
        } else if let Some(x) = &df.extract {
            let raw = f.value(x).map_err(|e| e.at(loc, &format!("{p}.extract.key")))?;
            let raw = match &x.property {
                Some(prop) if !prop.is_empty() => transform::get_property(raw, prop, &x.key)
                    .map_err(|e| SpecError::invalid(loc, &format!("{p}.extract.property"), &e))?,
                _ => raw.clone(),
            };
            let all = transform::extract_all(&raw, &x.key)
                .map_err(|e| SpecError::invalid(loc, &format!("{p}.extract"), &e))?;
            let strategy = x.decoding_strategy.unwrap_or_default();
            for (k, v) in all {
                let what = format!("key `{k}` of remote key `{}`", x.key);
                part.insert(
                    k,
                    transform::decode(v, strategy, &what)
                        .map_err(|e| SpecError::invalid(loc, &format!("{p}.extract.decodingStrategy"), &e))?,
                );
            }
        } else if let Some(find) = &df.find {
            let names = f
                .found(&find_query(find))
                .map_err(|e| e.at(loc, &format!("{p}.find")))?;
            let strategy = find.decoding_strategy.unwrap_or_default();
            for name in names {
                let v = f
                    .named(name)
                    .map_err(|e| e.at(loc, &format!("{p}.find (remote key `{name}`)")))?;
                let v = transform::decode(v.clone(), strategy, &format!("remote key `{name}`"))
                    .map_err(|e| SpecError::invalid(loc, &format!("{p}.find.decodingStrategy"), &e))?;
                part.insert(name.clone(), v);
            }
        }
        let part = transform::rewrite_keys(part, &df.rewrite, &p)
            .map_err(|e| SpecError::invalid(loc, &format!("{p}.rewrite"), &e))?;
        // Find results are remote names (`a/b/c`); make them valid keys after rewrites.
        let mut part: SecretMap = if df.find.is_some() {
            part.into_iter().map(|(k, v)| (transform::convert_key(&k), v)).collect()
        } else {
            part
        };
        // Kept by the key's name in the target, after rewrites.
        if let Some(sr) = generator {
            let keys: Vec<String> = part.keys().cloned().collect();
            for k in keys {
                if let Some(v) = keep_current(es, sr, &k, current) {
                    part.insert(k, v);
                }
            }
        }
        data.extend(part);
    }
    for (i, d) in es.spec.data.iter().enumerate() {
        if let Some(sr) = d.source_ref.as_ref().filter(|s| s.generator_ref.is_some()) {
            let v = match keep_current(es, sr, &d.secret_key, current) {
                Some(v) => v,
                None => {
                    let (_, v) = generated(es, sr, &format!("spec.data[{i}].sourceRef.generatorRef"))?;
                    resolve(&d.remote_ref, &v, loc, i)?
                }
            };
            data.insert(d.secret_key.clone(), v);
            continue;
        }
        let v = f
            .value(&d.remote_ref)
            .map_err(|e| e.at(loc, &format!("spec.data[{i}].remoteRef.key")))?;
        data.insert(d.secret_key.clone(), resolve(&d.remote_ref, v, loc, i)?);
    }
    Ok(data)
}

/// Renders an ExternalSecret into its desired target.
pub(crate) fn render(
    es: &ExternalSecret,
    target: TargetRef,
    store: Option<&StoreId>,
    f: &Fetched,
    (key, memo): (&FingerprintKey, &super::memo::RenderMemo),
    current: Option<&SecretMap>,
) -> Result<DesiredTarget, SpecError> {
    let loc = es;
    // A spec without a store only has generated entries, which read nothing fetched.
    let fetched = store.map_or(&*NOT_FETCHED, |id| f.store(id));
    let mut data = collect_data(es, fetched, current)?;
    let t = &es.spec.target;
    let tpl = t.template.as_ref();
    // Labels and annotations that templateFrom entries render.
    let mut templated = crate::manifest::TemplateOutput::default();
    if let Some(tpl) = tpl
        && (!tpl.data.is_empty() || !tpl.template_from.is_empty())
    {
        // The collected data is the templates' context as it is: borrowed, not copied.
        let ctx: &TemplateContext = data.as_btree();
        // templateFrom first, then template.data (which wins), as ESO applies them.
        crate::manifest::render_template_from(es, ctx, &mut templated)
            .map_err(|(field, e)| SpecError::invalid(loc, &field, &Error::invalid(e)))?;
        for (k, src) in &tpl.data {
            // The field path is only spelled out for an error.
            let fail =
                |e: String| SpecError::invalid(loc, &format!("spec.target.template.data.{k}"), &Error::invalid(e));
            // Parsed once per source: the same template renders for many targets a cycle.
            let parsed = Template::parse_cached(src).map_err(fail)?;
            let v = memo
                .render((es.namespace(), es.name(), k), &parsed, ctx)
                .map_err(fail)?;
            templated.data.insert(k.clone(), v);
        }
        let rendered = std::mem::take(&mut templated.data);
        if tpl.merge_policy.as_deref() == Some("Merge") {
            data.extend(rendered);
        } else {
            data = rendered;
        }
    }
    for k in data.keys() {
        if !rules::is_valid_secret_key(k) {
            return Err(SpecError::invalid(
                loc,
                "spec",
                &Error::invalid(format!("target key `{k}` does not match [-._a-zA-Z0-9]+")),
            ));
        }
    }
    let size = data.byte_size();
    if size > MAX_TARGET_BYTES {
        return Err(SpecError::invalid(
            loc,
            "spec.target",
            &Error::invalid(format!("{target} would be {size} bytes, over Kubernetes' 1 MiB limit")),
        ));
    }
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    if let Some(md) = tpl.and_then(|t| t.metadata.as_ref()) {
        labels.extend(md.labels.clone());
        annotations.extend(md.annotations.clone());
    }
    labels.extend(templated.labels);
    annotations.extend(templated.annotations);
    if matches!(t.creation_policy, CreationPolicy::Owner | CreationPolicy::Orphan) {
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_LABEL_VALUE.into());
    }
    // The owning ExternalSecret for every policy: Owner targets get an owner reference,
    // Merge targets a field manager of their own.
    let owner = Some(owner_of(es));
    let secret_type = match target.kind {
        TargetKind::Secret => Some(tpl.and_then(|t| t.type_.clone()).unwrap_or_else(|| "Opaque".into())),
        TargetKind::ConfigMap => None,
    };
    Ok(finish(
        DesiredTarget {
            target,
            data,
            secret_type,
            labels,
            annotations,
            creation_policy: t.creation_policy,
            deletion_policy: t.deletion_policy,
            immutable: t.immutable,
            owner,
            fingerprint: key.fingerprint(&SecretMap::new(), &[]),
        },
        key,
    ))
}

fn owner_of(es: &ExternalSecret) -> OwnerRef {
    OwnerRef {
        api_version: es.api_version.clone(),
        kind: "ExternalSecret".into(),
        name: es.name().to_string(),
        uid: es.metadata.uid.clone(),
    }
}

/// What `deletionPolicy: Merge` applies when the remote secret is gone: no data of ours,
/// so only our keys leave the target.
pub(crate) fn render_removal(es: &ExternalSecret, key: &FingerprintKey) -> DesiredTarget {
    finish(
        DesiredTarget {
            target: es.target_ref(),
            data: SecretMap::new(),
            secret_type: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            creation_policy: CreationPolicy::Merge,
            deletion_policy: DeletionPolicy::Merge,
            immutable: false,
            owner: Some(owner_of(es)),
            fingerprint: key.fingerprint(&SecretMap::new(), &[]),
        },
        key,
    )
}

/// Desired state of a plain ConfigMap/Secret document.
pub(crate) fn render_static(s: &StaticTarget, key: &FingerprintKey) -> Result<DesiredTarget, SpecError> {
    for k in s.data.keys() {
        if !rules::is_valid_secret_key(k) {
            return Err(SpecError::invalid(
                &s.origin,
                &format!("data.{k}"),
                &Error::invalid(format!("key `{k}` does not match [-._a-zA-Z0-9]+")),
            ));
        }
    }
    if s.data.byte_size() > MAX_TARGET_BYTES {
        return Err(SpecError::invalid(
            &s.origin,
            "data",
            &Error::invalid(format!("{} is over Kubernetes' 1 MiB limit", s.target)),
        ));
    }
    let mut labels = s.metadata.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_LABEL_VALUE.into());
    Ok(finish(
        DesiredTarget {
            target: s.target.clone(),
            data: s.data.clone(),
            secret_type: match s.target.kind {
                TargetKind::Secret => Some(s.secret_type.clone().unwrap_or_else(|| "Opaque".into())),
                TargetKind::ConfigMap => None,
            },
            labels,
            annotations: s.metadata.annotations.clone(),
            creation_policy: CreationPolicy::Orphan,
            deletion_policy: DeletionPolicy::Retain,
            immutable: s.immutable,
            owner: None,
            fingerprint: key.fingerprint(&SecretMap::new(), &[]),
        },
        key,
    ))
}

/// Computes the fingerprint and the annotations that carry it.
fn finish(mut d: DesiredTarget, key: &FingerprintKey) -> DesiredTarget {
    if d.creation_policy == CreationPolicy::Merge {
        d.annotations.insert(
            MANAGED_KEYS_ANNOTATION.into(),
            d.data.keys().cloned().collect::<Vec<_>>().join(","),
        );
    }
    d.annotations.remove(FINGERPRINT_ANNOTATION);
    d.fingerprint = fingerprint_of(&d, key);
    d.annotations
        .insert(FINGERPRINT_ANNOTATION.into(), d.fingerprint.to_string());
    d
}

/// Fingerprint of data plus type, labels and annotations (except the fingerprint itself).
///
/// The attributes are named `annotation:<k>`, `kind`, `label:<k>` and `type`; listed in
/// that order, each map in key order, they are sorted by name, as the fingerprint wants.
pub(crate) fn fingerprint_of(d: &DesiredTarget, key: &FingerprintKey) -> crate::Fingerprint {
    let annotations = || {
        d.annotations
            .iter()
            .filter(|(k, _)| *k != FINGERPRINT_ANNOTATION)
            .map(|(k, v)| (("annotation:", k.as_str()), v.as_str()))
    };
    let kind = d.target.kind.as_str();
    let labels = d.labels.iter().map(|(k, v)| (("label:", k.as_str()), v.as_str()));
    let secret_type = d.secret_type.iter().map(|t| (("", "type"), t.as_str()));
    let count = annotations().count() + 1 + d.labels.len() + usize::from(d.secret_type.is_some());
    let attrs = annotations()
        .chain(std::iter::once((("", "kind"), kind)))
        .chain(labels)
        .chain(secret_type);
    key.fingerprint_sorted(&d.data, count, attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_map_keeps_versions_apart() {
        let mut m = KeyMap::default();
        m.insert(RemoteKey::new("a"), 1);
        m.insert(RemoteKey::with_version("a", "v2"), 2);
        m.insert(RemoteKey::with_version("a", "v3"), 3);
        m.insert(RemoteKey::new("a"), 10);
        m.insert(RemoteKey::with_version("b", "v1"), 4);
        assert_eq!(m.get("a", None), Some(&10));
        assert_eq!(m.get("a", Some("v2")), Some(&2));
        assert_eq!(m.get("a", Some("v3")), Some(&3));
        assert_eq!(m.get("b", None), None);
        assert_eq!(m.get("b", Some("v1")), Some(&4));
        m.remove(&RemoteKey::with_version("a", "v2"));
        assert_eq!(m.get("a", Some("v2")), None);
        assert_eq!(m.get("a", None), Some(&10));
        m.remove(&RemoteKey::new("b"));
        assert_eq!(m.get("b", Some("v1")), Some(&4), "another version stays");
        m.remove(&RemoteKey::with_version("b", "v1"));
        assert!(!m.contains(&RemoteKey::with_version("b", "v1")));
    }

    /// The allocation-free encoding gives the same fingerprint as the general one, so
    /// fingerprints recorded by earlier versions still compare.
    #[test]
    fn fingerprint_of_matches_the_general_encoding() {
        let key = FingerprintKey::from_bytes(vec![3; 32]).expect("key");
        let mut data = SecretMap::new();
        data.insert("password", SecretValue::from("p"));
        data.insert("user", SecretValue::from("u"));
        for (secret_type, kind) in [
            (Some("Opaque".to_string()), TargetKind::Secret),
            (None, TargetKind::ConfigMap),
        ] {
            let d = DesiredTarget {
                target: TargetRef {
                    kind,
                    namespace: "ns".into(),
                    name: "t".into(),
                },
                data: data.clone(),
                secret_type: secret_type.clone(),
                labels: [("app".to_string(), "x".to_string()), ("z".into(), "1".into())].into(),
                annotations: [
                    ("a/b".to_string(), "v".to_string()),
                    (FINGERPRINT_ANNOTATION.into(), "ignored".into()),
                    ("zz".into(), "w".into()),
                ]
                .into(),
                creation_policy: CreationPolicy::Owner,
                deletion_policy: DeletionPolicy::Retain,
                immutable: false,
                owner: None,
                fingerprint: key.fingerprint(&SecretMap::new(), &[]),
            };
            let mut attrs = vec![
                ("kind".to_string(), kind.to_string()),
                ("label:app".into(), "x".into()),
                ("label:z".into(), "1".into()),
                ("annotation:a/b".into(), "v".into()),
                ("annotation:zz".into(), "w".into()),
            ];
            if let Some(t) = &secret_type {
                attrs.push(("type".into(), t.clone()));
            }
            let refs: Vec<(&str, &str)> = attrs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            assert_eq!(fingerprint_of(&d, &key), key.fingerprint(&data, &refs));
            let mut other = d.clone();
            other.labels.insert("app".into(), "y".into());
            assert_ne!(fingerprint_of(&other, &key), fingerprint_of(&d, &key));
        }
    }
}
