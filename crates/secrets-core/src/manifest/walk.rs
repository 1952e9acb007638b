//! Folders of real repositories: which files are read (recursively, dot-folders skipped)
//! and which documents are someone else's (a Deployment, a Service, a
//! `kustomization.yaml`): those are noted and left alone, never an error.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::API_GROUP;
use crate::error::Error;

/// The kinds secretsync reads from [`API_GROUP`]; a document of one of these kinds with
/// another apiVersion is a mistake to report, not a foreign document.
const OUR_KINDS: &[&str] = &[
    "SecretStore",
    "ClusterSecretStore",
    "ExternalSecret",
    "ClusterExternalSecret",
    "PushSecret",
    "ClusterPushSecret",
];

/// The manifest files of a path: the file itself, or every `*.yaml` / `*.yml` / `*.json`
/// under a folder, recursively, skipping folders whose name starts with `.` (`.git`,
/// `.github`) and symbolic links to folders; sorted by path.
pub(crate) fn list_files(p: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    if !meta.is_dir() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut files = vec![];
    walk(p, &mut files)?;
    files.sort();
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let file_type = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if file_type.is_dir() {
            if !hidden {
                walk(&path, files)?;
            }
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !hidden && matches!(ext, "yaml" | "yml" | "json") && path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// `Some(what)` when a document is not one secretsync syncs (another API group or kind, or
/// not a Kubernetes object at all): it is skipped with a note naming `what`.
pub(crate) fn foreign(value: &Value) -> Option<String> {
    // A list or a scalar is a broken manifest more often than someone else's document.
    let Value::Object(obj) = value else {
        return None;
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    if group == API_GROUP
        || group == super::push::GENERATORS_API_GROUP
        || (api_version == "v1" && matches!(kind, "ConfigMap" | "Secret"))
        || OUR_KINDS.contains(&kind)
    {
        return None;
    }
    Some(match (api_version, kind) {
        ("", "") => "a document without apiVersion and kind (not a Kubernetes object)".into(),
        (api, "") => format!("a document of apiVersion `{api}` without kind"),
        ("", kind) => format!("kind `{kind}` without apiVersion"),
        (api, kind) => format!("kind `{kind}` ({api})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_kinds_are_foreign_ours_and_typos_are_not() {
        let doc = |y: &str| foreign(&serde_norway::from_str(y).unwrap());
        assert_eq!(
            doc("apiVersion: apps/v1\nkind: Deployment").as_deref(),
            Some("kind `Deployment` (apps/v1)")
        );
        assert!(doc("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization").is_some());
        assert!(doc("apiVersion: v1\nkind: Service").is_some());
        assert!(doc("services: {web: {image: x}}").is_some());
        assert!(doc("apiVersion: external-secrets.io/v1\nkind: Nope").is_none());
        assert!(doc("apiVersion: external-secret.io/v1\nkind: ExternalSecret").is_none());
        assert!(doc("apiVersion: v1\nkind: Secret").is_none());
        assert!(doc("[1, 2]").is_none());
    }

    #[test]
    fn folders_recurse_and_skip_dot_folders() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "a.yaml",
            "sub/b.yml",
            "sub/deeper/c.json",
            ".git/d.yaml",
            "sub/.hidden/e.yaml",
            "f.txt",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "{}").unwrap();
        }
        let got: Vec<_> = list_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(got, ["a.yaml", "sub/b.yml", "sub/deeper/c.json"]);
    }
}
