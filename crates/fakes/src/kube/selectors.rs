//! Label and field selectors.

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::Value;

use super::schema::ResourceDef;
use super::wire::bad_request;

#[derive(Debug)]
pub(super) enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

pub(super) fn split_top_level(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

pub(super) fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    let mut out = vec![];
    for term in split_top_level(s) {
        let set_values = |rest: &str| -> Result<Vec<String>, String> {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("unable to parse requirement: `{term}`"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        if let Some(k) = term.strip_prefix('!') {
            out.push(LabelReq::NotExists(k.trim().to_string()));
        } else if let Some((k, v)) = term.split_once("!=") {
            out.push(LabelReq::Ne(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = term.split_once("==") {
            out.push(LabelReq::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = term.split_once('=') {
            out.push(LabelReq::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            out.push(LabelReq::NotIn(k.trim().into(), set_values(rest)?));
        } else if let Some((k, rest)) = term.split_once(" in ") {
            out.push(LabelReq::In(k.trim().into(), set_values(rest)?));
        } else if term.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
            out.push(LabelReq::Exists(term.clone()));
        } else {
            return Err(format!("unable to parse requirement: `{term}`"));
        }
    }
    Ok(out)
}

pub(super) fn labels_match(obj: &Value, reqs: &[LabelReq]) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
        LabelReq::Ne(k, v) => get(k) != Some(v.as_str()),
        LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
    })
}

pub(super) fn parse_field_selector(s: &str) -> Result<Vec<(Vec<String>, bool, String)>, String> {
    split_top_level(s)
        .into_iter()
        .map(|term| {
            // The first operator in the term splits it: values may contain `=`.
            let Some(at) = term.find(['=', '!']) else {
                return Err(format!("invalid field selector: `{term}`"));
            };
            let (k, rest) = term.split_at(at);
            let (v, eq) = if let Some(v) = rest.strip_prefix("!=") {
                (v, false)
            } else if let Some(v) = rest.strip_prefix("==") {
                (v, true)
            } else if let Some(v) = rest.strip_prefix('=') {
                (v, true)
            } else {
                return Err(format!("invalid field selector: `{term}`"));
            };
            Ok((
                k.trim().split('.').map(str::to_string).collect(),
                eq,
                v.trim().to_string(),
            ))
        })
        .collect()
}

pub(super) fn fields_match(obj: &Value, reqs: &[(Vec<String>, bool, String)]) -> bool {
    reqs.iter().all(|(path, eq, want)| {
        if path.len() == 1 && path[0] == "source" {
            let got = obj.pointer("/source/component").and_then(Value::as_str).unwrap_or("");
            return (got == want.as_str()) == *eq;
        }
        let got = path.iter().try_fold(obj, |v, seg| v.get(seg)).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        (got.as_deref().unwrap_or("") == want.as_str()) == *eq
    })
}

pub(super) struct Filter {
    pub(super) ns: Option<String>,
    pub(super) labels: Vec<LabelReq>,
    pub(super) fields: Vec<(Vec<String>, bool, String)>,
}

/// The field labels a kind can be selected by: `metadata.name` and `metadata.namespace`
/// for every kind, plus what each kind's registry adds (pkg/registry/core/secret/strategy.go
/// `SelectableFields`: `type`; namespace: `status.phase`; events: the involved object,
/// reason, source, type). Custom resources: only the two (apiextensions-apiserver), as
/// deploy/crds.yaml declares no `selectableFields`.
fn selectable(kind: &str, label: &str) -> bool {
    matches!(label, "metadata.name" | "metadata.namespace")
        || match kind {
            "Secret" => label == "type",
            "Namespace" => label == "status.phase",
            "Event" => matches!(
                label,
                "involvedObject.kind"
                    | "involvedObject.namespace"
                    | "involvedObject.name"
                    | "involvedObject.uid"
                    | "involvedObject.apiVersion"
                    | "involvedObject.resourceVersion"
                    | "involvedObject.fieldPath"
                    | "reason"
                    | "reportingComponent"
                    | "source"
                    | "type"
            ),
            _ => false,
        }
}

impl Filter {
    pub(super) fn from_query(
        res: &ResourceDef,
        ns: Option<String>,
        q: &BTreeMap<String, String>,
    ) -> Result<Filter, Response> {
        let labels = match q.get("labelSelector") {
            Some(s) => parse_label_selector(s).map_err(bad_request)?,
            None => vec![],
        };
        let fields = match q.get("fieldSelector") {
            Some(s) => parse_field_selector(s).map_err(bad_request)?,
            None => vec![],
        };
        for (path, _, _) in &fields {
            let label = path.join(".");
            if !selectable(res.kind, &label) {
                let message = if res.custom {
                    format!("\"{label}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
                } else {
                    format!("field label not supported: {label}")
                };
                return Err(bad_request(message));
            }
        }
        Ok(Filter { ns, labels, fields })
    }
    pub(super) fn matches(&self, ns: &str, obj: &Value) -> bool {
        self.ns.as_deref().is_none_or(|n| n == ns) && labels_match(obj, &self.labels) && fields_match(obj, &self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_parse_and_match() {
        let obj = json!({"metadata": {"labels": {"app": "api", "tier": "web"}}});
        let m = |s: &str| labels_match(&obj, &parse_label_selector(s).unwrap());
        assert!(m("app=api"));
        assert!(m("app==api,tier!=db"));
        assert!(!m("app=worker"));
        assert!(m("tier in (web, db)"));
        assert!(!m("tier notin (web)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
    }
}
