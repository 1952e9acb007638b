//! A fake of Doppler's REST API (`/v3`), served over loopback.
//!
//! It answers what secretsync's Doppler provider, ESO's Doppler client and the Doppler CLI
//! send, in the shapes Doppler documents:
//!
//! - `GET /v3/configs/config/secrets/download?project&config&format&name_transformer&secrets`
//!   — the config's secrets as one document (`json`, `env`, `env-no-quotes`, `docker`,
//!   `yaml`), with an `ETag`; `If-None-Match` with the current ETag answers `304 Not Modified`.
//!   The ETag changes if and only if the downloaded content changes. Like Doppler, every
//!   config also holds the read-only `DOPPLER_PROJECT`, `DOPPLER_ENVIRONMENT` and
//!   `DOPPLER_CONFIG`.
//! - `GET /v3/configs/config/secrets` (list with `raw` / `computed` values),
//!   `GET /v3/configs/config/secrets/names`, `GET /v3/configs/config/secret?name=`.
//! - `POST /v3/configs/config/secrets` with either `secrets` (a name → value map) or
//!   `change_requests` (`originalName`, `name`, `value`, `shouldDelete`, `originalValue`);
//!   project and config in the body or the query.
//! - `GET /v3/projects` (what ESO calls to validate a token).
//!
//! Authentication is `Authorization: Bearer <token>` (the CLI) or HTTP Basic with the token
//! as user name (ESO). Service tokens (`dp.st.<config>.…`) are bound to one project and
//! config and may be read-only; personal tokens (`dp.pt.…`) reach every config but must name
//! project and config. Errors are JSON `{"messages": [...], "success": false}`.
//!
//! Tests count requests with [`FakeDoppler::requests`] and inject failures (429 with
//! `Retry-After`, 5xx) with [`FakeDoppler::fail_next`].

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri, header};
use base64::Engine as _;
use serde_json::{Value, json};

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method (`GET`, `POST`).
    pub method: String,
    /// Path, like `/v3/configs/config/secrets/download`.
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The status the fake answered.
    pub status: u16,
    /// The `If-None-Match` header sent, if any.
    pub if_none_match: Option<String>,
}

#[derive(Debug, Clone)]
enum TokenScope {
    /// Bound to one config.
    Service {
        project: String,
        config: String,
        write: bool,
    },
    /// Reaches every config; must name project and config.
    Personal,
}

#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    retry_after: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// (project, config) → name → value.
    configs: BTreeMap<(String, String), BTreeMap<String, String>>,
    tokens: BTreeMap<String, TokenScope>,
    failures: std::collections::VecDeque<Failure>,
    log: Vec<LoggedRequest>,
}

/// A running fake Doppler API. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeDoppler {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDoppler {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Names Doppler adds to every config; they cannot be written.
const RESERVED: [&str; 3] = ["DOPPLER_PROJECT", "DOPPLER_ENVIRONMENT", "DOPPLER_CONFIG"];

impl FakeDoppler {
    /// Starts serving on `127.0.0.1` on a random port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let shared = shared.clone();
            async move { handle(&shared, method, uri, headers, body) }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, server }
    }

    /// The base URL, `http://127.0.0.1:<port>` (what `--api-host` / `endpoint` take).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates an empty config if it does not exist.
    pub fn create_config(&self, project: &str, config: &str) {
        self.lock().configs.entry((project.into(), config.into())).or_default();
    }

    /// Sets one secret (creating the config if needed), as a user would in the dashboard.
    pub fn set_secret(&self, project: &str, config: &str, name: &str, value: &str) {
        self.lock()
            .configs
            .entry((project.into(), config.into()))
            .or_default()
            .insert(name.into(), value.into());
    }

    /// Sets many secrets at once (one change, as one dashboard save).
    pub fn set_secrets<'a>(&self, project: &str, config: &str, secrets: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut s = self.lock();
        let cfg = s.configs.entry((project.into(), config.into())).or_default();
        for (k, v) in secrets {
            cfg.insert(k.into(), v.into());
        }
    }

    /// Removes a secret; returns whether it existed.
    pub fn remove_secret(&self, project: &str, config: &str, name: &str) -> bool {
        self.lock()
            .configs
            .get_mut(&(project.into(), config.into()))
            .is_some_and(|c| c.remove(name).is_some())
    }

    /// The stored value of a secret (for assertions).
    pub fn secret(&self, project: &str, config: &str, name: &str) -> Option<String> {
        self.lock()
            .configs
            .get(&(project.into(), config.into()))
            .and_then(|c| c.get(name).cloned())
    }

    /// Issues a read/write service token (`dp.st.<config>.…`) bound to one config, which is
    /// created if needed.
    pub fn service_token(&self, project: &str, config: &str) -> String {
        self.issue_service_token(project, config, true)
    }

    /// Issues a read-only service token bound to one config.
    pub fn read_only_service_token(&self, project: &str, config: &str) -> String {
        self.issue_service_token(project, config, false)
    }

    fn issue_service_token(&self, project: &str, config: &str, write: bool) -> String {
        let token = format!("dp.st.{config}.{}", random_suffix());
        let mut s = self.lock();
        s.configs.entry((project.into(), config.into())).or_default();
        s.tokens.insert(
            token.clone(),
            TokenScope::Service {
                project: project.into(),
                config: config.into(),
                write,
            },
        );
        token
    }

    /// Issues a personal token (`dp.pt.…`) that reaches every config.
    pub fn personal_token(&self) -> String {
        let token = format!("dp.pt.{}", random_suffix());
        self.lock().tokens.insert(token.clone(), TokenScope::Personal);
        token
    }

    /// Revokes a token: later requests with it get 401.
    pub fn revoke_token(&self, token: &str) {
        self.lock().tokens.remove(token);
    }

    /// The next `n` requests (of any kind) are answered with `status` and, if given, a
    /// `Retry-After: <seconds>` header, before authentication is checked.
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        let mut s = self.lock();
        for _ in 0..n {
            s.failures.push_back(Failure { status, retry_after });
        }
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// How many requests of `method` to `path` were answered (any status).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// The ETag a JSON download of the config would carry now (no name transformer).
    pub fn etag(&self, project: &str, config: &str) -> Option<String> {
        let s = self.lock();
        let cfg = s.configs.get(&(project.into(), config.into()))?;
        let entries = with_reserved(project, config, cfg);
        Some(etag_of(&entries, "json", None))
    }
}

fn random_suffix() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn handle(shared: &Mutex<State>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let mut query = BTreeMap::new();
    if let Some(q) = uri.query() {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query.insert(percent_decode(k), percent_decode(v));
        }
    }
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
    let response = match state.failures.pop_front() {
        Some(f) => {
            let mut r = error(
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                failure_message(f.status),
            );
            if let Some(secs) = f.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, secs.to_string().parse().expect("header value"));
            }
            r
        }
        None => route(&mut state, &method, uri.path(), &query, &headers, &body),
    };
    state.log.push(LoggedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        status: response.status().as_u16(),
        if_none_match,
    });
    response
}

fn failure_message(status: u16) -> &'static str {
    match status {
        429 => "You have exceeded the rate limit. Please retry after the time given in the Retry-After header.",
        500..=599 => "Internal server error",
        _ => "Request failed",
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({ "messages": [message.into()], "success": false }))
}

/// The token from `Authorization: Bearer <t>` or `Basic base64(<t>:)`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = raw.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_string()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            Some(text.split_once(':').map(|(u, _)| u.to_string()).unwrap_or(text))
        }
        _ => None,
    }
}

/// Which (project, config) a request targets, after checking the token may reach it.
fn resolve_config(
    state: &State,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    body: Option<&Value>,
    write: bool,
) -> Result<(String, String), Box<Response<Body>>> {
    let Some(token) = bearer(headers) else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: missing or malformed Authorization header",
        )));
    };
    let Some(scope) = state.tokens.get(&token) else {
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "Invalid Auth token")));
    };
    let param = |name: &str| -> Option<String> {
        query.get(name).filter(|v| !v.is_empty()).cloned().or_else(|| {
            body.and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
    };
    let (project, config) = match scope {
        TokenScope::Service {
            project,
            config,
            write: can_write,
        } => {
            if let Some(p) = param("project")
                && &p != project
            {
                return Err(Box::new(error(
                    StatusCode::FORBIDDEN,
                    "This token does not have access to the requested project",
                )));
            }
            if let Some(c) = param("config")
                && &c != config
            {
                return Err(Box::new(error(
                    StatusCode::FORBIDDEN,
                    "This token does not have access to the requested config",
                )));
            }
            if write && !can_write {
                return Err(Box::new(error(
                    StatusCode::FORBIDDEN,
                    "This token does not have write access to this config",
                )));
            }
            (project.clone(), config.clone())
        }
        TokenScope::Personal => {
            let Some(project) = param("project") else {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "Missing required parameter: project",
                )));
            };
            let Some(config) = param("config") else {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "Missing required parameter: config",
                )));
            };
            (project, config)
        }
    };
    if !state.configs.contains_key(&(project.clone(), config.clone())) {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "Could not find requested config",
        )));
    }
    Ok((project, config))
}

fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<Body> {
    match (method.as_str(), path.trim_end_matches('/')) {
        ("GET", "/v3/configs/config/secrets/download") => download(state, query, headers),
        ("GET", "/v3/configs/config/secrets") => list(state, query, headers),
        ("GET", "/v3/configs/config/secrets/names") => names(state, query, headers),
        ("GET", "/v3/configs/config/secret") => get_one(state, query, headers),
        ("POST", "/v3/configs/config/secrets") => update(state, query, headers, body),
        ("GET", "/v3/projects") => projects(state, headers),
        _ => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

fn environment_of(config: &str) -> &str {
    // Root configs are named after their environment; branch configs are `<env>_<branch>`.
    config.split('_').next().unwrap_or(config)
}

fn with_reserved(project: &str, config: &str, secrets: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = secrets.clone();
    all.insert("DOPPLER_PROJECT".into(), project.into());
    all.insert("DOPPLER_ENVIRONMENT".into(), environment_of(config).into());
    all.insert("DOPPLER_CONFIG".into(), config.into());
    all
}

fn etag_of(entries: &BTreeMap<String, String>, format: &str, transformer: Option<&str>) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entries.hash(&mut h);
    format.hash(&mut h);
    transformer.hash(&mut h);
    format!("W/\"{:016x}\"", h.finish())
}

/// Doppler's name transformers (what `name_transformer` / `--name-transformer` take).
fn transform_name(name: &str, transformer: &str) -> Option<String> {
    fn words(s: &str) -> Vec<String> {
        s.split('_')
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    }
    fn capitalize(w: &str) -> String {
        let mut c = w.chars();
        match c.next() {
            Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
            None => String::new(),
        }
    }
    let upper_camel = |s: &str| words(s).iter().map(|w| capitalize(w)).collect::<String>();
    Some(match transformer {
        "upper-camel" => upper_camel(name),
        "camel" => {
            let w = words(name);
            w.iter()
                .enumerate()
                .map(|(i, w)| if i == 0 { w.clone() } else { capitalize(w) })
                .collect()
        }
        "lower-snake" => words(name).join("_"),
        "lower-kebab" => words(name).join("-"),
        "tf-var" => format!("TF_VAR_{}", words(name).join("_")),
        "dotnet-env" => name.split("__").map(upper_camel).collect::<Vec<_>>().join("__"),
        "dotnet" => name.split("__").map(upper_camel).collect::<Vec<_>>().join(":"),
        _ => return None,
    })
}

fn download(state: &mut State, query: &BTreeMap<String, String>, headers: &HeaderMap) -> Response<Body> {
    let (project, config) = match resolve_config(state, headers, query, None, false) {
        Ok(pc) => pc,
        Err(r) => return *r,
    };
    let format = query
        .get("format")
        .map(String::as_str)
        .filter(|f| !f.is_empty())
        .unwrap_or("json");
    let transformer = query
        .get("name_transformer")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    let mut entries = with_reserved(&project, &config, &state.configs[&(project.clone(), config.clone())]);
    if let Some(only) = query.get("secrets").filter(|s| !s.is_empty()) {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        entries.retain(|k, _| wanted.contains(&k.as_str()));
    }
    if let Some(t) = transformer {
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            match transform_name(&k, t) {
                Some(name) => {
                    out.insert(name, v);
                }
                None => {
                    return error(StatusCode::BAD_REQUEST, format!("Invalid name transformer: {t}"));
                }
            }
        }
        entries = out;
    }
    let (content_type, text) = match format {
        "json" => (
            "application/json; charset=utf-8",
            serde_json::to_string(&entries).expect("json"),
        ),
        "env" => (
            "text/plain; charset=utf-8",
            entries
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"\n", escape_env(v)))
                .collect(),
        ),
        "env-no-quotes" => (
            "text/plain; charset=utf-8",
            entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
        ),
        "docker" => (
            "text/plain; charset=utf-8",
            entries
                .iter()
                .map(|(k, v)| format!("{k}={}\n", v.replace('\n', "\\n")))
                .collect(),
        ),
        "yaml" => (
            "text/yaml; charset=utf-8",
            entries
                .iter()
                .map(|(k, v)| format!("{k}: {}\n", Value::String(v.clone())))
                .collect(),
        ),
        other => return error(StatusCode::BAD_REQUEST, format!("Invalid format: {other}")),
    };
    let etag = etag_of(&entries, format, transformer);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sent| sent.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, &etag)
            .body(Body::empty())
            .expect("response");
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ETAG, &etag)
        .body(Body::from(text))
        .expect("response")
}

fn escape_env(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn secret_object(value: &str) -> Value {
    json!({
        "raw": value,
        "computed": value,
        "note": "",
        "rawVisibility": "masked",
        "computedVisibility": "masked",
    })
}

fn list(state: &mut State, query: &BTreeMap<String, String>, headers: &HeaderMap) -> Response<Body> {
    let (project, config) = match resolve_config(state, headers, query, None, false) {
        Ok(pc) => pc,
        Err(r) => return *r,
    };
    let entries = with_reserved(&project, &config, &state.configs[&(project.clone(), config.clone())]);
    let only: Option<Vec<&str>> = query
        .get("secrets")
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::trim).collect());
    let secrets: serde_json::Map<String, Value> = entries
        .iter()
        .filter(|(k, _)| only.as_ref().is_none_or(|o| o.contains(&k.as_str())))
        .map(|(k, v)| (k.clone(), secret_object(v)))
        .collect();
    json_response(StatusCode::OK, &json!({ "secrets": secrets, "success": true }))
}

fn names(state: &mut State, query: &BTreeMap<String, String>, headers: &HeaderMap) -> Response<Body> {
    let (project, config) = match resolve_config(state, headers, query, None, false) {
        Ok(pc) => pc,
        Err(r) => return *r,
    };
    let entries = with_reserved(&project, &config, &state.configs[&(project.clone(), config.clone())]);
    json_response(
        StatusCode::OK,
        &json!({ "names": entries.keys().collect::<Vec<_>>(), "success": true }),
    )
}

fn get_one(state: &mut State, query: &BTreeMap<String, String>, headers: &HeaderMap) -> Response<Body> {
    let (project, config) = match resolve_config(state, headers, query, None, false) {
        Ok(pc) => pc,
        Err(r) => return *r,
    };
    let Some(name) = query.get("name").filter(|n| !n.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "Missing required parameter: name");
    };
    let entries = with_reserved(&project, &config, &state.configs[&(project.clone(), config.clone())]);
    match entries.get(name) {
        Some(v) => json_response(
            StatusCode::OK,
            &json!({ "name": name, "value": { "raw": v, "computed": v, "note": "" }, "success": true }),
        ),
        None => error(StatusCode::NOT_FOUND, "Could not find requested secret"),
    }
}

/// Doppler's rule: upper-case letters, digits and underscores, not starting with a digit.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn update(state: &mut State, query: &BTreeMap<String, String>, headers: &HeaderMap, body: &Bytes) -> Response<Body> {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error(StatusCode::BAD_REQUEST, "Request body must be a JSON object");
        }
    };
    let (project, config) = match resolve_config(state, headers, query, Some(&parsed), true) {
        Ok(pc) => pc,
        Err(r) => return *r,
    };
    let current = state.configs[&(project.clone(), config.clone())].clone();
    let mut next = current.clone();
    match (parsed.get("secrets"), parsed.get("change_requests")) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Specify either secrets or change_requests, not both",
            );
        }
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Missing required parameter: secrets or change_requests",
            );
        }
        (Some(Value::Object(secrets)), None) => {
            for (name, value) in secrets {
                if !valid_name(name) || RESERVED.contains(&name.as_str()) {
                    return error(StatusCode::BAD_REQUEST, format!("Invalid secret name: {name}"));
                }
                match value {
                    Value::String(v) => {
                        next.insert(name.clone(), v.clone());
                    }
                    Value::Null => {
                        next.remove(name);
                    }
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("Secret value must be a string: {name}"),
                        );
                    }
                }
            }
        }
        (None, Some(Value::Array(changes))) => {
            for change in changes {
                let Some(name) = change.get("name").and_then(Value::as_str) else {
                    return error(StatusCode::BAD_REQUEST, "Each change request needs a name");
                };
                let original = change
                    .get("originalName")
                    .and_then(Value::as_str)
                    .filter(|o| !o.is_empty());
                if !valid_name(name) || RESERVED.contains(&name) {
                    return error(StatusCode::BAD_REQUEST, format!("Invalid secret name: {name}"));
                }
                if let Some(expected) = change.get("originalValue").filter(|v| !v.is_null()) {
                    let actual = original.and_then(|o| current.get(o));
                    if expected.as_str() != actual.map(String::as_str) {
                        return error(
                            StatusCode::CONFLICT,
                            format!("The value of {name} does not match originalValue"),
                        );
                    }
                }
                if let Some(o) = original
                    && !current.contains_key(o)
                {
                    return error(StatusCode::BAD_REQUEST, format!("Could not find secret to update: {o}"));
                }
                if change.get("shouldDelete").and_then(Value::as_bool).unwrap_or(false) {
                    next.remove(original.unwrap_or(name));
                    continue;
                }
                let value = match change.get("value") {
                    Some(Value::String(v)) => Some(v.clone()),
                    None | Some(Value::Null) => None,
                    Some(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("Secret value must be a string: {name}"),
                        );
                    }
                };
                let value = match (value, original) {
                    (Some(v), _) => v,
                    (None, Some(o)) => current.get(o).cloned().unwrap_or_default(),
                    (None, None) => {
                        return error(StatusCode::BAD_REQUEST, format!("A new secret needs a value: {name}"));
                    }
                };
                if let Some(o) = original
                    && o != name
                {
                    next.remove(o);
                }
                next.insert(name.to_string(), value);
            }
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "secrets must be an object and change_requests an array",
            );
        }
    }
    state.configs.insert((project.clone(), config.clone()), next.clone());
    let all = with_reserved(&project, &config, &next);
    let secrets: serde_json::Map<String, Value> = all.iter().map(|(k, v)| (k.clone(), secret_object(v))).collect();
    json_response(StatusCode::OK, &json!({ "secrets": secrets, "success": true }))
}

fn projects(state: &mut State, headers: &HeaderMap) -> Response<Body> {
    let Some(token) = bearer(headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: missing or malformed Authorization header",
        );
    };
    let Some(scope) = state.tokens.get(&token) else {
        return error(StatusCode::UNAUTHORIZED, "Invalid Auth token");
    };
    let mut names: Vec<&String> = match scope {
        TokenScope::Service { project, .. } => vec![project],
        TokenScope::Personal => state.configs.keys().map(|(p, _)| p).collect(),
    };
    names.dedup();
    let projects: Vec<Value> = names
        .iter()
        .map(|p| json!({ "id": p, "slug": p, "name": p, "description": "" }))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "page": 1, "projects": projects, "success": true }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformers_follow_doppler() {
        assert_eq!(transform_name("API_KEY", "upper-camel").as_deref(), Some("ApiKey"));
        assert_eq!(transform_name("API_KEY", "camel").as_deref(), Some("apiKey"));
        assert_eq!(transform_name("API_KEY", "lower-snake").as_deref(), Some("api_key"));
        assert_eq!(transform_name("API_KEY", "lower-kebab").as_deref(), Some("api-key"));
        assert_eq!(transform_name("API_KEY", "tf-var").as_deref(), Some("TF_VAR_api_key"));
        assert_eq!(
            transform_name("SMTP__USER_NAME", "dotnet-env").as_deref(),
            Some("Smtp__UserName")
        );
        assert_eq!(
            transform_name("SMTP__USER_NAME", "dotnet").as_deref(),
            Some("Smtp:UserName")
        );
        assert_eq!(transform_name("X", "nope"), None);
    }

    #[test]
    fn decodes_query() {
        assert_eq!(percent_decode("a%2Cb+c"), "a,b c");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn names_follow_doppler_rule() {
        assert!(valid_name("DATABASE_URL"));
        assert!(!valid_name("1SECRET"));
        assert!(!valid_name("lower"));
    }
}
