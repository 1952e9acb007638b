//! secretsync's `file` provider: a local YAML, JSON or dotenv file of secrets, for local
//! development, or Terraform's `.tfvars` / `terraform output -json` files. The file is a flat map of names to values; nested YAML/JSON values are
//! returned as JSON text (so `property` works on them). Writes rewrite the file atomically
//! (temporary file + rename, mode 0600); comments in a dotenv file are not kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::memory::merge_property;
use crate::error::{Error, Result};
use crate::manifest::Store;
use crate::registry::{BuiltStore, CredentialResolver, SourceFactory};
use crate::source::*;
use crate::value::{SecretMap, SecretValue};

/// The format of a secrets file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// A YAML mapping.
    Yaml,
    /// A JSON object.
    Json,
    /// `KEY=value` lines.
    Dotenv,
    /// Terraform variables (`.tfvars`: HCL `name = value` attributes); read-only.
    Tfvars,
    /// `terraform output -json`: each output's `.value`; read-only.
    TerraformOutput,
}

impl FileFormat {
    /// From a `format` setting, or the file's extension.
    pub fn detect(path: &Path, format: Option<&str>) -> Result<Self> {
        let f = format.map(str::to_string).unwrap_or_else(|| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match path.extension().and_then(|e| e.to_str()) {
                _ if name.ends_with(".tfvars.json") => "tfvars-json".into(),
                Some("tfvars") => "tfvars".into(),
                Some("yaml" | "yml") => "yaml".into(),
                Some("json") => "json".into(),
                _ if name.starts_with(".env") || name.ends_with(".env") => "dotenv".into(),
                _ => "".into(),
            }
        });
        match f.as_str() {
            "yaml" => Ok(FileFormat::Yaml),
            "json" => Ok(FileFormat::Json),
            // Terraform's JSON variable files are a flat JSON object: lists and maps
            // become JSON text, exactly as the JSON format reads them.
            "tfvars-json" => Ok(FileFormat::Json),
            "dotenv" | "env" => Ok(FileFormat::Dotenv),
            "tfvars" | "hcl" => Ok(FileFormat::Tfvars),
            "terraform-output" => Ok(FileFormat::TerraformOutput),
            "" => Err(Error::invalid(format!(
                "{}: cannot tell the format from the name; set format: yaml, json, dotenv, tfvars or terraform-output",
                path.display()
            ))),
            other => Err(Error::invalid(format!(
                "unknown file format `{other}` (yaml, json, dotenv, tfvars, terraform-output)"
            ))),
        }
    }
}

/// A local file of secrets.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    format: FileFormat,
    calls: AtomicU64,
    write_lock: Mutex<()>,
}

impl FileSource {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>, format: FileFormat) -> Self {
        Self {
            path: path.into(),
            format,
            calls: AtomicU64::new(0),
            write_lock: Mutex::new(()),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's entries; NotFound naming the file when it does not exist (reads).
    async fn read_all(&self) -> Result<SecretMap> {
        self.read_if_exists()
            .await?
            .ok_or_else(|| Error::not_found(format!("secrets file {} does not exist", self.path.display())))
    }

    /// The file's entries, `None` when it does not exist yet (writes create it).
    async fn read_if_exists(&self) -> Result<Option<SecretMap>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let text =
            std::str::from_utf8(&bytes).map_err(|_| Error::invalid(format!("{}: not UTF-8", self.path.display())))?;
        let file = self.path.display().to_string();
        match self.format {
            FileFormat::Dotenv => crate::format::dotenv::parse(text, &file).map(Some),
            FileFormat::Tfvars => crate::format::tfvars::parse_tfvars(text, &file).map(Some),
            FileFormat::TerraformOutput => crate::format::tfvars::parse_terraform_output(text, &file).map(Some),
            FileFormat::Yaml | FileFormat::Json => {
                let v: serde_json::Value = if self.format == FileFormat::Json {
                    serde_json::from_str(text).map_err(|e| {
                        Error::invalid(format!(
                            "{file}: invalid JSON at line {} column {}",
                            e.line(),
                            e.column()
                        ))
                    })?
                } else {
                    serde_norway::from_str(text).map_err(|e| {
                        Error::invalid(format!(
                            "{file}: invalid YAML{}",
                            e.location()
                                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                                .unwrap_or_default()
                        ))
                    })?
                };
                let obj = match v {
                    serde_json::Value::Object(o) => o,
                    serde_json::Value::Null => Default::default(),
                    _ => {
                        return Err(Error::invalid(format!("{file}: expected a mapping of names to values")));
                    }
                };
                Ok(Some(
                    obj.into_iter()
                        .map(|(k, v)| {
                            let s = match v {
                                serde_json::Value::String(s) => s,
                                serde_json::Value::Null => String::new(),
                                other => other.to_string(),
                            };
                            (k, SecretValue::from(s))
                        })
                        .collect(),
                ))
            }
        }
    }

    async fn write_all(&self, map: &SecretMap) -> Result<()> {
        let text: zeroize::Zeroizing<String> = match self.format {
            FileFormat::Dotenv => crate::format::dotenv::render_with(
                map,
                &self.path.display().to_string(),
                crate::format::dotenv::Keys::Relaxed,
            )?,
            FileFormat::Tfvars | FileFormat::TerraformOutput => {
                return Err(Error::not_supported(format!(
                    "writing to {}: Terraform's files are read-only for secretsync (edit them, or push from them)",
                    self.path.display()
                )));
            }
            FileFormat::Yaml | FileFormat::Json => {
                let mut obj = serde_json::Map::new();
                for (k, v) in map.iter() {
                    let s = v
                        .expose_str()
                        .ok_or_else(|| Error::invalid(format!("key `{k}`: value is not UTF-8")))?;
                    obj.insert(k.clone(), serde_json::Value::String(s.to_string()));
                }
                let v = serde_json::Value::Object(obj);
                zeroize::Zeroizing::new(if self.format == FileFormat::Json {
                    serde_json::to_string_pretty(&v).expect("JSON serializes")
                } else {
                    serde_norway::to_string(&v).expect("YAML serializes")
                })
            }
        };
        crate::files::atomic_write(&self.path, text.as_bytes()).await
    }

    fn lookup(map: &SecretMap, key: &RemoteKey, file: &Path) -> Result<Fetched> {
        if let Some(v) = &key.version {
            return Err(Error::not_supported(format!(
                "version `{v}` of key `{}`: the file provider has no versions",
                key.key
            )));
        }
        map.get(&key.key)
            .map(|v| Fetched::new(v.clone()))
            .ok_or_else(|| Error::not_found(format!("key `{}` in {}", key.key, file.display())))
    }
}

#[async_trait]
impl SecretSource for FileSource {
    fn provider(&self) -> &str {
        "file"
    }
    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities {
            batch_read: true,
            find_by_name: true,
            find_by_path: true,
            ..SourceCapabilities::none()
        }
    }
    async fn get(&self, key: &RemoteKey) -> Result<Fetched> {
        let map = self.read_all().await?;
        Self::lookup(&map, key, &self.path)
    }
    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        match self.read_all().await {
            Ok(map) => keys.iter().map(|k| Self::lookup(&map, k, &self.path)).collect(),
            Err(e) => {
                let msg = e.to_string();
                let missing = e.is_not_found();
                let gone = || Error::not_found(format!("secrets file {} does not exist", self.path.display()));
                keys.iter()
                    .map(|_| Err(if missing { gone() } else { Error::invalid(msg.clone()) }))
                    .collect()
            }
        }
    }
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        if !query.tags.is_empty() {
            return Err(Error::not_supported(
                "find.tags on the file provider (files have no tags)",
            ));
        }
        let re = match &query.name_regexp {
            Some(r) => Some(crate::rules::compile_regex(r).map_err(|e| e.context("find.name.regexp"))?),
            None => None,
        };
        let map = self.read_all().await?;
        Ok(map
            .keys()
            .filter(|k| {
                re.as_ref().is_none_or(|re| re.is_match(k))
                    && query.path.as_ref().is_none_or(|p| k.starts_with(p.as_str()))
            })
            .cloned()
            .collect())
    }
    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl SecretWriter for FileSource {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        let map = self.read_if_exists().await?.unwrap_or_default();
        Ok(map.contains_key(key).then(|| RemoteDescription {
            current_version: None,
            managed: true,
            versions: vec![],
        }))
    }
    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        let _guard = self.write_lock.lock().await;
        let mut map = self.read_if_exists().await?.unwrap_or_default();
        let existed = map.contains_key(&request.key);
        let value = match &request.property {
            None => request.value.clone(),
            Some(p) => merge_property(map.get(&request.key), p, &request.value, &request.key)?,
        };
        map.insert(request.key.clone(), value);
        self.write_all(&map).await?;
        Ok(if existed {
            WriteOutcome::Updated {
                version: None,
                previous: None,
                disabled_previous: false,
            }
        } else {
            WriteOutcome::Created { version: None }
        })
    }
    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        Err(Error::not_supported(format!(
            "disable version {version} of `{key}`: the file provider has no versions"
        )))
    }
    /// Removes the key (a local file has no tags: every key counts as managed; Terraform's
    /// files are refused as for writes).
    async fn delete(&self, key: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        let Some(mut map) = self.read_if_exists().await? else {
            return Ok(());
        };
        if map.remove(key).is_some() {
            self.write_all(&map).await?;
        }
        Ok(())
    }
}

/// secretsync's `spec.provider.file`: a local YAML, JSON or dotenv file of secrets.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileProvider {
    /// Path; relative paths are relative to the manifest's folder.
    pub path: String,
    /// `yaml`, `json`, `dotenv`, `tfvars` or `terraform-output`; inferred from the extension
    /// (`.yaml`, `.json`, `.env`, `.tfvars`, `.tfvars.json`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Builds [`FileSource`]s; relative paths are relative to the manifest's folder.
#[derive(Debug, Clone, Copy)]
pub struct FileFactory;

impl FileFactory {
    fn settings(store: &Store) -> Result<(PathBuf, FileFormat)> {
        let spec: FileProvider = store.provider_config()?;
        let p = PathBuf::from(&spec.path);
        let path = if p.is_absolute() { p } else { store.base_dir().join(p) };
        let format = FileFormat::detect(&path, spec.format.as_deref())
            .map_err(|e| Error::manifest(store.provider_field(""), e.to_string()))?;
        Ok((path, format))
    }
}

#[async_trait]
impl SourceFactory for FileFactory {
    fn provider(&self) -> &'static str {
        "file"
    }
    fn validate(&self, store: &Store) -> Vec<Error> {
        Self::settings(store).err().into_iter().collect()
    }
    async fn build(&self, store: &Store, _credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let (path, format) = Self::settings(store)?;
        Ok(BuiltStore::writable(FileSource::new(path, format)))
    }
}
