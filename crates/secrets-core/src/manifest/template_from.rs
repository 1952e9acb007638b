//! `target.template.templateFrom`: templates kept in ConfigMaps and Secrets, or literals,
//! rendered into the target's data, labels or annotations.
//!
//! Out of a cluster, a referenced ConfigMap or Secret is a plain `v1` document of the given
//! manifests in the ExternalSecret's namespace: [`resolve_template_from`] finds it (the
//! loader calls it), validation reports what it could not find, rendering uses what it found.
//! The operator may fill [`TemplateRef::resolved`](super::TemplateRef) from a cluster.

use std::collections::{BTreeMap, HashMap};

use super::{ExternalSecret, Manifests, TemplateFrom, TemplateRef};
use crate::sink::TargetKind;
use crate::template::{Template, TemplateContext};
use crate::value::{SecretMap, SecretValue};

/// Fills every `templateFrom` reference whose ConfigMap / Secret is among the manifests'
/// plain documents (same namespace). Others stay unresolved.
pub fn resolve_template_from(m: &mut Manifests) {
    if !m.external_secrets.iter().any(|es| {
        es.spec
            .target
            .template
            .as_ref()
            .is_some_and(|t| !t.template_from.is_empty())
    }) {
        return;
    }
    let index: HashMap<(TargetKind, &str, &str), &SecretMap> = m
        .static_targets
        .iter()
        .map(|s| {
            (
                (s.target.kind, s.target.namespace.as_str(), s.target.name.as_str()),
                &s.data,
            )
        })
        .collect();
    for es in &mut m.external_secrets {
        let ns = es.namespace().to_string();
        let Some(tpl) = es.spec.target.template.as_mut() else {
            continue;
        };
        for tf in &mut tpl.template_from {
            for (kind, r) in [
                (TargetKind::ConfigMap, &mut tf.config_map),
                (TargetKind::Secret, &mut tf.secret),
            ] {
                if let Some(r) = r
                    && r.resolved.is_none()
                {
                    r.resolved = index.get(&(kind, ns.as_str(), r.name.as_str())).map(|d| (*d).clone());
                }
            }
        }
    }
}

/// Where a `templateFrom` entry renders to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Data,
    Annotations,
    Labels,
}

/// The `target` of an entry (ESO compares it case-insensitively); `None` if unsupported.
pub(crate) fn scope(tf: &TemplateFrom) -> Option<Scope> {
    match tf.target.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("data") => Some(Scope::Data),
        Some("annotations") => Some(Scope::Annotations),
        Some("labels") => Some(Scope::Labels),
        _ => None,
    }
}

/// The reference of an entry and the kind it names.
pub(crate) fn reference(tf: &TemplateFrom) -> Option<(&'static str, &TemplateRef)> {
    match (&tf.config_map, &tf.secret) {
        (Some(r), None) => Some(("configMap", r)),
        (None, Some(r)) => Some(("secret", r)),
        _ => None,
    }
}

/// What templates render besides the fetched data.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    pub data: SecretMap,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Rendered {
    fn put(&mut self, scope: Scope, key: String, value: SecretValue) -> Result<(), String> {
        match scope {
            Scope::Data => {
                self.data.insert(key, value);
            }
            Scope::Labels | Scope::Annotations => {
                let v = value
                    .expose_str()
                    .ok_or_else(|| format!("the value for `{key}` is not UTF-8 text"))?
                    .to_string();
                if scope == Scope::Labels {
                    self.labels.insert(key, v);
                } else {
                    self.annotations.insert(key, v);
                }
            }
        }
        Ok(())
    }

    /// `KeysAndValues`: the rendered text is a YAML map of strings.
    fn put_all(&mut self, scope: Scope, text: &SecretValue) -> Result<(), String> {
        let map: BTreeMap<String, String> = serde_norway::from_slice(text.expose())
            .map_err(|_| "the rendered text is not a YAML map of strings (templateAs: KeysAndValues)".to_string())?;
        for (k, v) in map {
            self.put(scope, k, SecretValue::from(v))?;
        }
        Ok(())
    }
}

/// Renders every `templateFrom` entry of `es`. Errors are (field path, message).
pub(crate) fn render_template_from(
    es: &ExternalSecret,
    ctx: &TemplateContext,
    out: &mut Rendered,
) -> Result<(), (String, String)> {
    let Some(tpl) = &es.spec.target.template else {
        return Ok(());
    };
    for (i, tf) in tpl.template_from.iter().enumerate() {
        let at = format!("spec.target.template.templateFrom[{i}]");
        let scope = scope(tf).ok_or_else(|| {
            (
                format!("{at}.target"),
                "target must be Data, Annotations or Labels".to_string(),
            )
        })?;
        if let Some(lit) = &tf.literal {
            let field = format!("{at}.literal");
            let t = Template::parse_cached(lit).map_err(|e| (field.clone(), e))?;
            let text = t.render(ctx).map_err(|e| (field.clone(), e))?;
            out.put_all(scope, &text).map_err(|e| (field, e))?;
            continue;
        }
        let Some((kind, r)) = reference(tf) else {
            return Err((at, "exactly one of configMap, secret and literal".into()));
        };
        let Some(source) = &r.resolved else {
            return Err((
                format!("{at}.{kind}.name"),
                format!(
                    "{kind} `{}` is not in the manifests (namespace {})",
                    r.name,
                    es.namespace()
                ),
            ));
        };
        for (j, item) in r.items.iter().enumerate() {
            let field = format!("{at}.{kind}.items[{j}]");
            let src = source.get(&item.key).ok_or_else(|| {
                (
                    format!("{field}.key"),
                    format!("key `{}` is not in {kind} `{}`", item.key, r.name),
                )
            })?;
            let src = src.expose_str().ok_or_else(|| {
                (
                    format!("{field}.key"),
                    format!("the template at key `{}` is not UTF-8", item.key),
                )
            })?;
            let t = Template::parse_cached(src).map_err(|e| (field.clone(), e))?;
            let text = t.render(ctx).map_err(|e| (field.clone(), e))?;
            match item.template_as.as_deref() {
                None | Some("Values") => out.put(scope, item.key.clone(), text),
                Some("KeysAndValues") => out.put_all(scope, &text),
                Some(_) => Err("templateAs must be Values or KeysAndValues".into()),
            }
            .map_err(|e| (field, e))?;
        }
    }
    Ok(())
}
