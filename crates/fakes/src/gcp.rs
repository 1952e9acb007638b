//! A fake of GCP Secret Manager's REST API (`v1`), faithful to the requests that
//! `google-cloud-secretmanager-v1` sends over its REST transport.
//!
//! What it models, because the real service does and drongo (the PyPI emulator) does not:
//!
//! - global (`/v1/projects/{p}/secrets/...`) and regional
//!   (`/v1/projects/{p}/locations/{l}/secrets/...`) resources;
//! - version states `ENABLED`, `DISABLED`, `DESTROYED`; `latest` is the most recently
//!   created version whatever its state, so accessing it when it is disabled fails with
//!   `FAILED_PRECONDITION` like the real service;
//! - labels and annotations, `ListSecrets` filters on labels (`labels.k=v`, `labels.k:v`,
//!   joined by spaces or `AND`), `ListSecretVersions` filters on `state:`;
//! - pagination (`pageSize`, `pageToken`), versions listed newest first;
//! - `dataCrc32c` on access (and checked on `addVersion` when the client sends one);
//! - Google's JSON error envelope `{"error":{"code","message","status"}}`;
//! - `$alt=json;enum-encoding=int` (enums as numbers, as the client asks);
//! - injectable errors (429 `RESOURCE_EXHAUSTED`, 403 `PERMISSION_DENIED`, ...);
//! - a request log (operation, method, path, status) for counting calls.
//!
//! A request that matches no route is answered 404, printed to stderr and kept in
//! [`FakeSecretManager::unknown_routes`], so a test can fail loudly when the client
//! sends something the fake does not know.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// A version's state, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Readable.
    Enabled,
    /// Not readable; can be enabled again.
    Disabled,
    /// Data gone for good.
    Destroyed,
}

impl VersionState {
    fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "ENABLED",
            VersionState::Disabled => "DISABLED",
            VersionState::Destroyed => "DESTROYED",
        }
    }
    fn number(self) -> i64 {
        match self {
            VersionState::Enabled => 1,
            VersionState::Disabled => 2,
            VersionState::Destroyed => 3,
        }
    }
}

/// How the fake treats `dataCrc32c` on access responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Crc32cMode {
    /// Send the correct checksum (the real service does).
    #[default]
    Correct,
    /// Send none (like drongo).
    Omit,
    /// Send a wrong checksum, as if the payload were corrupted in transit.
    Corrupt,
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The API operation (`AccessSecretVersion`, `ListSecrets`, ...), or `Unknown`.
    pub operation: &'static str,
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The status code sent.
    pub status: u16,
    /// Whether the request carried an `Authorization` header.
    pub authorized: bool,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: Option<String>,
    path_contains: String,
    code: u16,
    remaining: usize,
}

#[derive(Debug, Clone)]
struct Version {
    number: u64,
    data: Vec<u8>,
    state: VersionState,
    create_time: String,
}

#[derive(Debug, Clone)]
struct Secret {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    create_time: String,
    versions: Vec<Version>,
    etag_counter: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Full secret name (`projects/p/secrets/s` or `projects/p/locations/l/secrets/s`) to secret.
    secrets: BTreeMap<String, Secret>,
    log: Vec<LoggedRequest>,
    unknown: Vec<String>,
    faults: Vec<Fault>,
    crc: Crc32cMode,
    default_page_size: usize,
    max_page_size: usize,
}

type Shared = Arc<Mutex<Inner>>;

/// The fake server, listening on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct FakeSecretManager {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSecretManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Largest page the real service returns.
const MAX_PAGE_SIZE: usize = 25_000;

impl FakeSecretManager {
    /// Starts the fake on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test cannot run without one).
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1:0 for the fake Secret Manager")
    }

    /// Starts the fake on `addr` (port 0 picks a free one): what the `fake-gcp` binary
    /// serves for `gcloud` and Google's client libraries.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            default_page_size: MAX_PAGE_SIZE,
            max_page_size: MAX_PAGE_SIZE,
            ..Inner::default()
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake Secret Manager server stopped");
            }
        });
        Ok(Self { addr, inner, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>` (the form of `SECRETMANAGER_EMULATOR_HOST`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake gcp lock")
    }

    /// Creates a secret under `parent` (`projects/p` or `projects/p/locations/l`) with labels.
    pub fn create_secret(&self, parent: &str, id: &str, labels: &[(&str, &str)]) {
        let name = format!("{parent}/secrets/{id}");
        let mut inner = self.lock();
        inner.secrets.insert(
            name,
            Secret {
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                annotations: BTreeMap::new(),
                create_time: now_rfc3339(),
                versions: vec![],
                etag_counter: 1,
            },
        );
    }

    /// Sets an annotation on an existing secret.
    pub fn set_annotation(&self, parent: &str, id: &str, key: &str, value: &str) {
        let mut inner = self.lock();
        let s = inner
            .secrets
            .get_mut(&format!("{parent}/secrets/{id}"))
            .expect("secret exists");
        s.annotations.insert(key.into(), value.into());
    }

    /// Adds a version (creating the secret, unlabelled, if needed); returns its number.
    pub fn add_version(&self, parent: &str, id: &str, data: &[u8]) -> u64 {
        let name = format!("{parent}/secrets/{id}");
        let mut inner = self.lock();
        let s = inner.secrets.entry(name).or_insert_with(|| Secret {
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            create_time: now_rfc3339(),
            versions: vec![],
            etag_counter: 1,
        });
        let number = s.versions.len() as u64 + 1;
        s.versions.push(Version {
            number,
            data: data.to_vec(),
            state: VersionState::Enabled,
            create_time: now_rfc3339(),
        });
        number
    }

    /// Sets a version's state (as `gcloud secrets versions disable|enable|destroy` would).
    pub fn set_state(&self, parent: &str, id: &str, version: u64, state: VersionState) {
        let mut inner = self.lock();
        let s = inner
            .secrets
            .get_mut(&format!("{parent}/secrets/{id}"))
            .expect("secret exists");
        let v = s
            .versions
            .iter_mut()
            .find(|v| v.number == version)
            .expect("version exists");
        v.state = state;
        if state == VersionState::Destroyed {
            v.data.clear();
        }
    }

    /// A version's state, if the secret and version exist.
    pub fn state(&self, parent: &str, id: &str, version: u64) -> Option<VersionState> {
        let inner = self.lock();
        inner
            .secrets
            .get(&format!("{parent}/secrets/{id}"))?
            .versions
            .iter()
            .find(|v| v.number == version)
            .map(|v| v.state)
    }

    /// Number of versions of a secret (0 if it does not exist).
    pub fn version_count(&self, parent: &str, id: &str) -> usize {
        self.lock()
            .secrets
            .get(&format!("{parent}/secrets/{id}"))
            .map_or(0, |s| s.versions.len())
    }

    /// Labels of a secret.
    pub fn labels(&self, parent: &str, id: &str) -> Option<BTreeMap<String, String>> {
        self.lock()
            .secrets
            .get(&format!("{parent}/secrets/{id}"))
            .map(|s| s.labels.clone())
    }

    /// The data of a version (for assertions; the fake is test code).
    pub fn data(&self, parent: &str, id: &str, version: u64) -> Option<Vec<u8>> {
        let inner = self.lock();
        inner
            .secrets
            .get(&format!("{parent}/secrets/{id}"))?
            .versions
            .iter()
            .find(|v| v.number == version)
            .map(|v| v.data.clone())
    }

    /// How `dataCrc32c` is sent on access.
    pub fn set_crc32c(&self, mode: Crc32cMode) {
        self.lock().crc = mode;
    }

    /// Page size used when a list request asks for none (`pageSize` 0); the real service
    /// picks its own, up to 25000.
    pub fn set_default_page_size(&self, n: usize) {
        self.lock().default_page_size = n.clamp(1, MAX_PAGE_SIZE);
    }

    /// Largest page sent whatever `pageSize` asks: the service may return fewer items than
    /// asked (with a `nextPageToken`), and clients must follow the token (AIP-158).
    pub fn set_max_page_size(&self, n: usize) {
        self.lock().max_page_size = n.clamp(1, MAX_PAGE_SIZE);
    }

    /// Answers the next `times` requests of `operation` (`AccessSecretVersion`, ...;
    /// `None` for any) whose path contains `path_contains` with error `code`
    /// (403, 404, 429, 500, 503, ...), in Google's JSON error format.
    pub fn fail_next(&self, operation: Option<&str>, path_contains: &str, code: u16, times: usize) {
        self.lock().faults.push(Fault {
            operation: operation.map(str::to_string),
            path_contains: path_contains.to_string(),
            code,
            remaining: times,
        });
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// Requests of one operation.
    pub fn count(&self, operation: &str) -> usize {
        self.lock().log.iter().filter(|r| r.operation == operation).count()
    }

    /// Clears the request log.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// Requests that matched no route (`METHOD path?query`).
    pub fn unknown_routes(&self) -> Vec<String> {
        self.lock().unknown.clone()
    }
}

/// Seconds since the epoch as RFC 3339 UTC.
fn now_rfc3339() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// An API error: HTTP code, canonical status and message.
struct ApiError {
    code: u16,
    status: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            status: status_name(code),
            message: message.into(),
        }
    }
    fn failed_precondition(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            status: "FAILED_PRECONDITION",
            message: message.into(),
        }
    }
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message, "status": self.status}});
        let mut r = (
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(body),
        )
            .into_response();
        if self.code == 429 {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}

type ApiResult = Result<Value, ApiError>;

/// What a path addresses.
#[derive(Debug)]
enum Target {
    /// `{parent}/secrets`
    Secrets { parent: String },
    /// `{parent}/secrets/{s}` with an optional `:verb`
    Secret { name: String, verb: Option<String> },
    /// `{parent}/secrets/{s}/versions`
    Versions { secret: String },
    /// `{parent}/secrets/{s}/versions/{v}` with an optional `:verb`
    Version {
        secret: String,
        version: String,
        verb: Option<String>,
    },
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn parse_target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/v1/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.len() < 3 || segs[0] != "projects" || !valid_segment(segs[1]) {
        return None;
    }
    let (parent, tail) = if segs.len() >= 5 && segs[2] == "locations" {
        if !valid_segment(segs[3]) {
            return None;
        }
        (format!("projects/{}/locations/{}", segs[1], segs[3]), &segs[4..])
    } else {
        (format!("projects/{}", segs[1]), &segs[2..])
    };
    let split_verb = |s: &str| -> (String, Option<String>) {
        match s.split_once(':') {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (s.to_string(), None),
        }
    };
    match tail {
        ["secrets"] => Some(Target::Secrets { parent }),
        ["secrets", s] => {
            let (s, verb) = split_verb(s);
            valid_segment(&s).then(|| Target::Secret {
                name: format!("{parent}/secrets/{s}"),
                verb,
            })
        }
        ["secrets", s, "versions"] => valid_segment(s).then(|| Target::Versions {
            secret: format!("{parent}/secrets/{s}"),
        }),
        ["secrets", s, "versions", v] => {
            let (v, verb) = split_verb(v);
            (valid_segment(s) && valid_segment(&v)).then(|| Target::Version {
                secret: format!("{parent}/secrets/{s}"),
                version: v,
                verb,
            })
        }
        _ => None,
    }
}

fn operation_of(method: &Method, t: &Target) -> Option<&'static str> {
    Some(match (method.as_str(), t) {
        ("GET", Target::Secrets { .. }) => "ListSecrets",
        ("POST", Target::Secrets { .. }) => "CreateSecret",
        ("GET", Target::Secret { verb: None, .. }) => "GetSecret",
        ("PATCH", Target::Secret { verb: None, .. }) => "UpdateSecret",
        ("DELETE", Target::Secret { verb: None, .. }) => "DeleteSecret",
        ("POST", Target::Secret { verb: Some(v), .. }) if v == "addVersion" => "AddSecretVersion",
        ("GET", Target::Versions { .. }) => "ListSecretVersions",
        ("GET", Target::Version { verb: None, .. }) => "GetSecretVersion",
        ("GET", Target::Version { verb: Some(v), .. }) if v == "access" => "AccessSecretVersion",
        ("POST", Target::Version { verb: Some(v), .. }) if v == "disable" => "DisableSecretVersion",
        ("POST", Target::Version { verb: Some(v), .. }) if v == "enable" => "EnableSecretVersion",
        ("POST", Target::Version { verb: Some(v), .. }) if v == "destroy" => "DestroySecretVersion",
        _ => return None,
    })
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| url_pairs(q).into_iter().collect())
        .unwrap_or_default()
}

/// Decodes `a=b&c=d` with percent-encoding and `+` as space.
fn url_pairs(q: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b'%' if i + 2 < b.len() => {
                    let h = std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match h {
                        Some(c) => {
                            out.push(c);
                            i += 3;
                        }
                        None => {
                            out.push(b'%');
                            i += 1;
                        }
                    }
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

async fn handle(State(inner): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let raw_query = uri.query().unwrap_or("").to_string();
    let authorized = headers.contains_key("authorization");
    let target = parse_target(&path);
    let op = target.as_ref().and_then(|t| operation_of(&method, t));
    let mut g = inner.lock().expect("fake gcp lock");
    let Some(op) = op else {
        let line = format!("{method} {path}?{raw_query}");
        eprintln!("fake Secret Manager: UNKNOWN ROUTE {line}");
        g.unknown.push(line);
        g.log.push(LoggedRequest {
            operation: "Unknown",
            method: method.to_string(),
            path,
            query: raw_query,
            status: 404,
            authorized,
        });
        return ApiError::new(
            404,
            format!("fake Secret Manager: no route for {method} {}", uri.path()),
        )
        .into_response();
    };
    let target = target.expect("matched");
    let q = query_map(&uri);
    let ints = q.get("$alt").is_some_and(|a| a.contains("enum-encoding=int"));

    let injected = g
        .faults
        .iter_mut()
        .find(|f| f.remaining > 0 && f.operation.as_deref().is_none_or(|o| o == op) && path.contains(&f.path_contains))
        .map(|f| {
            f.remaining -= 1;
            f.code
        });
    let result = match injected {
        Some(code) => Err(injected_error(code, op, &target)),
        None => serve(&mut g, op, &target, &q, &body, ints),
    };
    let response = match result {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    };
    g.log.push(LoggedRequest {
        operation: op,
        method: method.to_string(),
        path,
        query: raw_query,
        status: response.status().as_u16(),
        authorized,
    });
    response
}

fn injected_error(code: u16, op: &str, t: &Target) -> ApiError {
    let resource = match t {
        Target::Secrets { parent } => parent.clone(),
        Target::Secret { name, .. } => name.clone(),
        Target::Versions { secret } => secret.clone(),
        Target::Version { secret, version, .. } => format!("{secret}/versions/{version}"),
    };
    let permission = match op {
        "AccessSecretVersion" => "secretmanager.versions.access",
        "GetSecretVersion" => "secretmanager.versions.get",
        "ListSecretVersions" => "secretmanager.versions.list",
        "AddSecretVersion" => "secretmanager.versions.add",
        "DisableSecretVersion" => "secretmanager.versions.disable",
        "ListSecrets" => "secretmanager.secrets.list",
        "CreateSecret" => "secretmanager.secrets.create",
        _ => "secretmanager.secrets.get",
    };
    match code {
        403 => ApiError::new(
            403,
            format!("Permission '{permission}' denied for resource '{resource}' (or it may not exist)."),
        ),
        429 => ApiError::new(
            429,
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service 'secretmanager.googleapis.com'.",
        ),
        401 => ApiError::new(401, "Request had invalid authentication credentials."),
        c => ApiError::new(c, format!("injected error {c}")),
    }
}

fn version_json(secret: &str, v: &Version, ints: bool) -> Value {
    let state = if ints {
        json!(v.state.number())
    } else {
        json!(v.state.name())
    };
    let mut j = json!({
        "name": format!("{secret}/versions/{}", v.number),
        "createTime": v.create_time,
        "state": state,
        "etag": format!("\"{}\"", v.number),
        "clientSpecifiedPayloadChecksum": true,
    });
    if v.state == VersionState::Destroyed {
        j["destroyTime"] = json!(v.create_time);
    }
    j
}

fn secret_json(name: &str, s: &Secret) -> Value {
    let mut j = json!({
        "name": name,
        "replication": {"automatic": {}},
        "createTime": s.create_time,
        "etag": format!("\"{}\"", s.etag_counter),
    });
    if !s.labels.is_empty() {
        j["labels"] = json!(s.labels);
    }
    if !s.annotations.is_empty() {
        j["annotations"] = json!(s.annotations);
    }
    j
}

fn page_of<T>(
    items: Vec<T>,
    q: &BTreeMap<String, String>,
    default_size: usize,
    max_size: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = match q.get("pageSize").map(String::as_str) {
        None | Some("") | Some("0") => default_size,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 => (n as usize).min(MAX_PAGE_SIZE),
            _ => return Err(ApiError::new(400, "Invalid page size.")),
        },
    };
    let start = match q.get("pageToken").map(String::as_str) {
        None | Some("") => 0,
        Some(t) => match t.strip_prefix("fake-offset-").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n <= items.len() => n,
            _ => return Err(ApiError::new(400, "Invalid page token.")),
        },
    };
    let size = size.min(max_size);
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| format!("fake-offset-{end}"));
    Ok((items.into_iter().skip(start).take(end - start).collect(), next))
}

/// One clause of a list filter: `field op value`.
fn filter_clauses(filter: &str) -> Result<Vec<(String, char, String)>, ApiError> {
    let mut out = vec![];
    for term in filter.split_whitespace() {
        if term == "AND" {
            continue;
        }
        if term == "OR" || term.starts_with("NOT") || term.starts_with('-') {
            return Err(ApiError::new(
                400,
                format!("fake Secret Manager: unsupported filter operator in `{filter}`"),
            ));
        }
        let (field, op, value) = if let Some((f, v)) = term.split_once('=') {
            (f, '=', v)
        } else if let Some((f, v)) = term.split_once(':') {
            (f, ':', v)
        } else {
            return Err(ApiError::new(400, format!("Invalid filter: `{filter}`")));
        };
        out.push((field.to_string(), op, value.trim_matches('"').to_string()));
    }
    Ok(out)
}

fn secret_matches(name: &str, s: &Secret, clauses: &[(String, char, String)]) -> Result<bool, ApiError> {
    for (field, op, value) in clauses {
        let ok = if let Some(k) = field.strip_prefix("labels.") {
            match (s.labels.get(k), *op, value.as_str()) {
                (Some(_), ':', "*") => true,
                (Some(v), _, want) => v == want,
                (None, _, _) => false,
            }
        } else if field == "name" {
            let id = name.rsplit('/').next().unwrap_or(name);
            if *op == ':' {
                id.contains(value.as_str())
            } else {
                id == value
            }
        } else {
            return Err(ApiError::new(
                400,
                format!("fake Secret Manager: unsupported filter field `{field}`"),
            ));
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn resolve<'a>(s: &'a Secret, secret: &str, version: &str) -> Result<&'a Version, ApiError> {
    let found = if version == "latest" {
        s.versions.last()
    } else {
        version
            .parse::<u64>()
            .ok()
            .and_then(|n| s.versions.iter().find(|v| v.number == n))
    };
    found.ok_or_else(|| ApiError::new(404, format!("Secret Version [{secret}/versions/{version}] not found.")))
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::new(400, "Invalid JSON payload received."))
}

fn string_map(v: &Value, field: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| ApiError::new(400, format!("Invalid value at '{field}'")))
            })
            .collect(),
        Some(_) => Err(ApiError::new(400, format!("Invalid value at '{field}'"))),
    }
}

fn serve(
    g: &mut Inner,
    op: &'static str,
    t: &Target,
    q: &BTreeMap<String, String>,
    body: &Bytes,
    ints: bool,
) -> ApiResult {
    let not_found = |name: &str| ApiError::new(404, format!("Secret [{name}] not found or has no versions."));
    match (op, t) {
        ("ListSecrets", Target::Secrets { parent }) => {
            let clauses = filter_clauses(q.get("filter").map(String::as_str).unwrap_or(""))?;
            let prefix = format!("{parent}/secrets/");
            let mut items = vec![];
            for (name, s) in g
                .secrets
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix) && !n[prefix.len()..].contains('/'))
            {
                if secret_matches(name, s, &clauses)? {
                    items.push(secret_json(name, s));
                }
            }
            let total = items.len();
            let (page, next) = page_of(items, q, g.default_page_size, g.max_page_size)?;
            let mut out = json!({"totalSize": total});
            if !page.is_empty() {
                out["secrets"] = Value::Array(page);
            }
            if let Some(n) = next {
                out["nextPageToken"] = json!(n);
            }
            Ok(out)
        }
        ("CreateSecret", Target::Secrets { parent }) => {
            let id = q.get("secretId").cloned().unwrap_or_default();
            if id.is_empty() || id.len() > 255 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ApiError::new(
                    400,
                    "Invalid secret ID: must be 1-255 characters of [a-zA-Z0-9_-].",
                ));
            }
            let b = parse_json(body)?;
            // Global secrets need a replication policy; regional ones live in their location.
            if !parent.contains("/locations/") && b.get("replication").is_none_or(Value::is_null) {
                return Err(ApiError::new(400, "Secret.replication is required."));
            }
            let name = format!("{parent}/secrets/{id}");
            if g.secrets.contains_key(&name) {
                return Err(ApiError::new(409, format!("Secret [{name}] already exists.")));
            }
            let s = Secret {
                labels: string_map(&b, "labels")?,
                annotations: string_map(&b, "annotations")?,
                create_time: now_rfc3339(),
                versions: vec![],
                etag_counter: 1,
            };
            let out = secret_json(&name, &s);
            g.secrets.insert(name, s);
            Ok(out)
        }
        ("GetSecret", Target::Secret { name, .. }) => g
            .secrets
            .get(name)
            .map(|s| secret_json(name, s))
            .ok_or_else(|| ApiError::new(404, format!("Secret [{name}] not found."))),
        ("UpdateSecret", Target::Secret { name, .. }) => {
            let b = parse_json(body)?;
            let mask = q.get("updateMask").cloned().unwrap_or_default();
            let s = g
                .secrets
                .get_mut(name)
                .ok_or_else(|| ApiError::new(404, format!("Secret [{name}] not found.")))?;
            for field in mask.split(',').filter(|f| !f.is_empty()) {
                match field {
                    "labels" => s.labels = string_map(&b, "labels")?,
                    "annotations" => s.annotations = string_map(&b, "annotations")?,
                    other => {
                        return Err(ApiError::new(
                            400,
                            format!("fake Secret Manager: unsupported update mask field `{other}`"),
                        ));
                    }
                }
            }
            s.etag_counter += 1;
            Ok(secret_json(name, s))
        }
        ("DeleteSecret", Target::Secret { name, .. }) => g
            .secrets
            .remove(name)
            .map(|_| json!({}))
            .ok_or_else(|| ApiError::new(404, format!("Secret [{name}] not found."))),
        ("AddSecretVersion", Target::Secret { name, .. }) => {
            let b = parse_json(body)?;
            let payload = b.get("payload").cloned().unwrap_or(Value::Null);
            let data = match payload.get("data").and_then(Value::as_str) {
                Some(d) => B64
                    .decode(d)
                    .map_err(|_| ApiError::new(400, "Invalid value at 'payload.data' (TYPE_BYTES)."))?,
                None => vec![],
            };
            if data.is_empty() {
                return Err(ApiError::new(400, "Secret Payload cannot be empty."));
            }
            if let Some(c) = payload.get("dataCrc32c") {
                let sent = c.as_str().and_then(|s| s.parse::<i64>().ok()).or_else(|| c.as_i64());
                if sent != Some(i64::from(crc32c::crc32c(&data))) {
                    return Err(ApiError::new(
                        400,
                        "Checksum mismatch: the data_crc32c does not match the payload.",
                    ));
                }
            }
            let s = g
                .secrets
                .get_mut(name)
                .ok_or_else(|| ApiError::new(404, format!("Secret [{name}] not found.")))?;
            let number = s.versions.len() as u64 + 1;
            s.versions.push(Version {
                number,
                data,
                state: VersionState::Enabled,
                create_time: now_rfc3339(),
            });
            Ok(version_json(name, s.versions.last().expect("pushed"), ints))
        }
        ("ListSecretVersions", Target::Versions { secret }) => {
            let s = g
                .secrets
                .get(secret)
                .ok_or_else(|| ApiError::new(404, format!("Secret [{secret}] not found.")))?;
            let clauses = filter_clauses(q.get("filter").map(String::as_str).unwrap_or(""))?;
            let mut items = vec![];
            for v in s.versions.iter().rev() {
                let mut keep = true;
                for (field, _, value) in &clauses {
                    match field.as_str() {
                        "state" => keep &= v.state.name().eq_ignore_ascii_case(value),
                        other => {
                            return Err(ApiError::new(
                                400,
                                format!("fake Secret Manager: unsupported filter field `{other}`"),
                            ));
                        }
                    }
                }
                if keep {
                    items.push(version_json(secret, v, ints));
                }
            }
            let total = items.len();
            let (page, next) = page_of(items, q, g.default_page_size, g.max_page_size)?;
            let mut out = json!({"totalSize": total});
            if !page.is_empty() {
                out["versions"] = Value::Array(page);
            }
            if let Some(n) = next {
                out["nextPageToken"] = json!(n);
            }
            Ok(out)
        }
        ("GetSecretVersion", Target::Version { secret, version, .. }) => {
            let s = g.secrets.get(secret).ok_or_else(|| not_found(secret))?;
            Ok(version_json(secret, resolve(s, secret, version)?, ints))
        }
        ("AccessSecretVersion", Target::Version { secret, version, .. }) => {
            let crc_mode = g.crc;
            let s = g.secrets.get(secret).ok_or_else(|| not_found(secret))?;
            let v = resolve(s, secret, version)?;
            if v.state != VersionState::Enabled {
                return Err(ApiError::failed_precondition(format!(
                    "Secret Version [{secret}/versions/{}] is in {} state.",
                    v.number,
                    v.state.name()
                )));
            }
            let mut payload = json!({"data": B64.encode(&v.data)});
            let crc = i64::from(crc32c::crc32c(&v.data));
            match crc_mode {
                Crc32cMode::Correct => payload["dataCrc32c"] = json!(crc.to_string()),
                Crc32cMode::Corrupt => payload["dataCrc32c"] = json!((crc ^ 1).to_string()),
                Crc32cMode::Omit => {}
            }
            Ok(json!({"name": format!("{secret}/versions/{}", v.number), "payload": payload}))
        }
        (
            "DisableSecretVersion" | "EnableSecretVersion" | "DestroySecretVersion",
            Target::Version { secret, version, .. },
        ) => {
            let s = g.secrets.get_mut(secret).ok_or_else(|| not_found(secret))?;
            let number = resolve(s, secret, version)?.number;
            let v = s.versions.iter_mut().find(|v| v.number == number).expect("resolved");
            let to = match op {
                "DisableSecretVersion" => VersionState::Disabled,
                "EnableSecretVersion" => VersionState::Enabled,
                _ => VersionState::Destroyed,
            };
            if v.state == VersionState::Destroyed && to != VersionState::Destroyed {
                return Err(ApiError::failed_precondition(format!(
                    "Secret Version [{secret}/versions/{number}] is in DESTROYED state."
                )));
            }
            v.state = to;
            if to == VersionState::Destroyed {
                v.data.clear();
            }
            Ok(version_json(secret, v, ints))
        }
        _ => Err(ApiError::new(
            500,
            format!("fake Secret Manager: operation {op} not implemented"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert!(matches!(
            parse_target("/v1/projects/p/secrets"),
            Some(Target::Secrets { .. })
        ));
        assert!(matches!(
            parse_target("/v1/projects/p/locations/us-east1/secrets/s/versions/3:access"),
            Some(Target::Version { ref verb, .. }) if verb.as_deref() == Some("access")
        ));
        assert!(
            matches!(parse_target("/v1/projects/p/secrets/s:addVersion"), Some(Target::Secret { ref verb, .. }) if verb.as_deref() == Some("addVersion"))
        );
        assert!(parse_target("/v2/projects/p/secrets").is_none());
        assert!(parse_target("/v1/projects/p/secrets/a/b/c/d").is_none());
    }

    #[test]
    fn decodes_queries() {
        let q = url_pairs("%24alt=json%3Benum-encoding%3Dint&filter=labels.a%3Db+AND+labels.c%3Dd&pageToken=");
        assert_eq!(q[0], ("$alt".into(), "json;enum-encoding=int".into()));
        assert_eq!(q[1].1, "labels.a=b AND labels.c=d");
        assert_eq!(q[2], ("pageToken".into(), String::new()));
    }

    #[test]
    fn rfc3339_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2024-01-01T00:00:00.000000Z".len(), "{t}");
        assert!(t.starts_with("20"), "{t}");
    }
}
