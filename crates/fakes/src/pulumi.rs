//! A fake of the Pulumi ESC API (`/api/esc`), served over loopback.
//!
//! It answers what secretsync's Pulumi provider, ESO's Pulumi client and Pulumi's own SDKs
//! (`pulumi-esc-sdk`) send, in the shapes of ESC's published OpenAPI document:
//!
//! - `POST /api/esc/environments/{org}` with `{"project", "name"}` creates an empty
//!   environment (`204`; `409` if it exists).
//! - `GET /api/esc/environments/{org}/{project}/{env}` returns the YAML definition as
//!   stored (`application/x-yaml`), with `ETag` and `Pulumi-ESC-Revision` headers.
//! - `HEAD` of the same path returns the `ETag` (and the revision) without a body.
//! - `PATCH` of the same path with a YAML body replaces the definition and adds a revision.
//!   A precondition in `If-Match` or in `ETag` (what Pulumi's Go client sends) that is not
//!   the current ETag answers `409 Conflict`; a definition that does not evaluate answers
//!   `400` with `{"diagnostics": [...]}`.
//! - `POST .../{env}/open?duration=2h` evaluates the definition now and returns
//!   `{"id": "<session>"}`; the session serves the values of that moment until it expires.
//!   The answer carries the `ETag` of the revision that was opened.
//! - `GET .../{env}/open/{id}` returns the whole evaluated environment
//!   (`{"exprs", "properties", "schema", "executionContext"}`), each property a `Value`
//!   (`{"value", "secret", "unknown", "trace"}`, nested for objects and arrays);
//!   `?property=<path>` returns one `Value`. An expired or unknown session is `404`.
//!
//! Definitions are evaluated like ESC for what secretsync's tests need: `imports` (other
//! environments of the org, `project/env`; own values override imported ones, objects merge
//! deeply), `values`, `fn::secret` (the value is marked secret), `fn::toJSON`, and
//! `fn::open::<provider>` — which in the fake takes `{value: ...}` (resolved to it),
//! `{unknown: true}` (reported `unknown`, as ESC does for values it cannot know) or
//! `{fail: "<summary>"}` (the open fails with that diagnostic). Other `fn::` builtins are a
//! diagnostic. `${...}` interpolation is not evaluated. Definitions are stored verbatim:
//! the fake does not encrypt `fn::secret` plaintext into ciphertext as the service does.
//!
//! Authentication is `Authorization: token <token>`; a missing or unknown token is `401`,
//! a read-only token's `PATCH` is `403`, a token of another organization is `403`. Errors are
//! `{"code": <status>, "message": "..."}`. Tests count requests with
//! [`FakeEsc::requests`] and inject failures (429 with `Retry-After`, 5xx) with
//! [`FakeEsc::fail_next`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri, header};
use serde_json::{Map, Value, json};

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method (`GET`, `HEAD`, `POST`, `PATCH`).
    pub method: String,
    /// Path, like `/api/esc/environments/acme/app/prod/open`.
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The status the fake answered.
    pub status: u16,
    /// The precondition sent (`If-Match`, else the `ETag` request header), if any.
    pub precondition: Option<String>,
}

impl LoggedRequest {
    /// What the request was, in ESC's operation names: `OpenEnvironment`,
    /// `ReadOpenEnvironment`, `ReadOpenEnvironmentProperty`, `GetEnvironmentETag`,
    /// `GetEnvironment`, `UpdateEnvironmentYaml`, `CreateEnvironment`, or `Other`.
    pub fn operation(&self) -> &'static str {
        let rest = self.path.strip_prefix("/api/esc/environments/").unwrap_or("");
        let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match (self.method.as_str(), parts.as_slice()) {
            ("POST", [_]) => "CreateEnvironment",
            ("HEAD", [_, _, _]) => "GetEnvironmentETag",
            ("GET", [_, _, _]) => "GetEnvironment",
            ("PATCH", [_, _, _]) => "UpdateEnvironmentYaml",
            ("DELETE", [_, _, _]) => "DeleteEnvironment",
            ("POST", [_, _, _, "open"]) => "OpenEnvironment",
            ("GET", [_, _, _, "open", _]) if self.query.contains_key("property") => "ReadOpenEnvironmentProperty",
            ("GET", [_, _, _, "open", _]) => "ReadOpenEnvironment",
            _ => "Other",
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    /// `None`: every organization.
    org: Option<String>,
    write: bool,
}

#[derive(Debug, Clone)]
struct Env {
    /// Every revision's definition, oldest first; revision n is `revisions[n - 1]`.
    revisions: Vec<String>,
}

impl Env {
    fn yaml(&self) -> &str {
        self.revisions.last().map(String::as_str).unwrap_or("")
    }
    fn revision(&self) -> usize {
        self.revisions.len()
    }
}

#[derive(Debug, Clone)]
struct Session {
    env: (String, String, String),
    properties: Map<String, Value>,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    retry_after: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// (org, project, env) → environment.
    envs: BTreeMap<(String, String, String), Env>,
    tokens: HashMap<String, Token>,
    sessions: HashMap<String, Session>,
    failures: VecDeque<Failure>,
    log: Vec<LoggedRequest>,
    next_session: u64,
    /// A console edit applied just before the next `PATCH` of that environment is handled.
    race: Option<(Key, String)>,
}

/// A running fake ESC API. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeEsc {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEsc {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Key = (String, String, String);

fn key(org: &str, project: &str, env: &str) -> Key {
    (org.into(), project.into(), env.into())
}

impl FakeEsc {
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

    /// The backend URL, `http://127.0.0.1:<port>` (what `PULUMI_BACKEND_URL` and the Python
    /// SDK's `host` take; the SDK appends `/api/esc`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The ESC API base, `http://127.0.0.1:<port>/api/esc` (what ESO's `apiUrl` takes).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/esc", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates (or replaces, as a new revision) an environment with this YAML definition,
    /// as a user would in the console. The definition is not checked.
    pub fn set_yaml(&self, org: &str, project: &str, env: &str, yaml: &str) {
        self.lock()
            .envs
            .entry(key(org, project, env))
            .or_insert_with(|| Env { revisions: vec![] })
            .revisions
            .push(yaml.to_string());
    }

    /// The current YAML definition.
    pub fn yaml(&self, org: &str, project: &str, env: &str) -> Option<String> {
        self.lock()
            .envs
            .get(&key(org, project, env))
            .map(|e| e.yaml().to_string())
    }

    /// The definition at a revision (1-based).
    pub fn yaml_at(&self, org: &str, project: &str, env: &str, revision: usize) -> Option<String> {
        self.lock()
            .envs
            .get(&key(org, project, env))
            .and_then(|e| e.revisions.get(revision.checked_sub(1)?).cloned())
    }

    /// The current revision number (1 for a new environment).
    pub fn revision(&self, org: &str, project: &str, env: &str) -> Option<usize> {
        self.lock().envs.get(&key(org, project, env)).map(Env::revision)
    }

    /// The current ETag.
    pub fn etag(&self, org: &str, project: &str, env: &str) -> Option<String> {
        self.lock()
            .envs
            .get(&key(org, project, env))
            .map(|e| etag_of(&key(org, project, env), e))
    }

    /// Deletes an environment; returns whether it existed.
    pub fn delete(&self, org: &str, project: &str, env: &str) -> bool {
        self.lock().envs.remove(&key(org, project, env)).is_some()
    }

    /// The environment evaluated now, as plain JSON (no metadata), or the diagnostics.
    pub fn evaluate(&self, org: &str, project: &str, env: &str) -> Result<Value, Vec<String>> {
        let s = self.lock();
        let props = evaluate(&s, &key(org, project, env))
            .map_err(|d| d.into_iter().map(|d| d.to_string()).collect::<Vec<_>>())?;
        Ok(plain(&Value::Object(props)))
    }

    /// Issues a token that may read and write every organization.
    pub fn token(&self) -> String {
        self.issue(None, true)
    }

    /// Issues a token that may read (not write) every organization.
    pub fn read_only_token(&self) -> String {
        self.issue(None, false)
    }

    /// Issues a read/write token for one organization only.
    pub fn org_token(&self, org: &str) -> String {
        self.issue(Some(org.to_string()), true)
    }

    fn issue(&self, org: Option<String>, write: bool) -> String {
        let token = format!("pul-{}", random_hex(40));
        self.lock().tokens.insert(token.clone(), Token { org, write });
        token
    }

    /// Revokes a token: later requests with it get 401.
    pub fn revoke_token(&self, token: &str) {
        self.lock().tokens.remove(token);
    }

    /// Simulates someone saving the environment in the console between a client's `GET`
    /// and its `PATCH`: `yaml` becomes a new revision right before the next `PATCH` of this
    /// environment is handled (so that `PATCH`'s precondition no longer holds).
    pub fn edit_before_next_patch(&self, org: &str, project: &str, env: &str, yaml: &str) {
        self.lock().race = Some((key(org, project, env), yaml.to_string()));
    }

    /// Ends every open session now (as if their duration had passed).
    pub fn expire_sessions(&self) {
        let now = Instant::now();
        for s in self.lock().sessions.values_mut() {
            s.expires = now;
        }
    }

    /// Open sessions that have not expired.
    pub fn live_sessions(&self) -> usize {
        let now = Instant::now();
        self.lock().sessions.values().filter(|s| s.expires > now).count()
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

    /// How many requests of one operation (see [`LoggedRequest::operation`]) were answered.
    pub fn count(&self, operation: &str) -> usize {
        self.lock().log.iter().filter(|r| r.operation() == operation).count()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }
}

fn random_hex(n: usize) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("hex digit"))
        .collect()
}

fn etag_of(k: &Key, env: &Env) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    k.hash(&mut h);
    env.revision().hash(&mut h);
    env.yaml().hash(&mut h);
    format!("\"{:016x}\"", h.finish())
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
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"code": status.as_u16(), "message": message.into()}))
}

fn diagnostics(diags: &[Diag]) -> Response<Body> {
    let list: Vec<Value> = diags
        .iter()
        .map(|d| {
            let mut v = json!({"summary": d.summary});
            if let Some(p) = &d.path {
                v["path"] = json!(p);
            }
            v
        })
        .collect();
    json_response(StatusCode::BAD_REQUEST, &json!({"diagnostics": list}))
}

fn handle(shared: &Mutex<State>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let mut query = BTreeMap::new();
    if let Some(q) = uri.query() {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query.insert(percent_decode(k), percent_decode(v));
        }
    }
    let precondition = headers
        .get(header::IF_MATCH)
        .or_else(|| headers.get(header::ETAG))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
    let response = match state.failures.pop_front() {
        Some(f) => {
            let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = error(
                status,
                if f.status == 429 {
                    "Too Many Requests"
                } else {
                    "Internal Server Error"
                },
            );
            if let Some(secs) = f.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, secs.to_string().parse().expect("header value"));
            }
            r
        }
        None => route(
            &mut state,
            &method,
            uri.path(),
            &query,
            &headers,
            &body,
            precondition.as_deref(),
        ),
    };
    let response = if method == Method::HEAD {
        // HEAD answers carry headers only.
        let (parts, _) = response.into_parts();
        Response::from_parts(parts, Body::empty())
    } else {
        response
    };
    state.log.push(LoggedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        status: response.status().as_u16(),
        precondition,
    });
    response
}

/// Checks the token; `Err` is the answer to send.
fn authorize(state: &State, headers: &HeaderMap, org: &str, write: bool) -> Result<(), Box<Response<Body>>> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = raw.strip_prefix("token ").map(str::trim).unwrap_or("");
    let Some(t) = state.tokens.get(token).filter(|_| !token.is_empty()) else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: No credentials provided or are invalid.",
        )));
    };
    if t.org.as_deref().is_some_and(|o| o != org) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            format!("Forbidden: the token has no access to organization '{org}'"),
        )));
    }
    if write && !t.write {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "Forbidden: the token may not update environments",
        )));
    }
    Ok(())
}

fn not_found_env(org: &str, project: &str, env: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!("Environment '{org}/{project}/{env}' not found"),
    )
}

fn with_env_headers(mut r: Response<Body>, k: &Key, env: &Env) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(header::ETAG, etag_of(k, env).parse().expect("etag"));
    h.insert(
        "Pulumi-ESC-Revision",
        env.revision().to_string().parse().expect("revision"),
    );
    r
}

fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    precondition: Option<&str>,
) -> Response<Body> {
    let Some(rest) = path.strip_prefix("/api/esc/environments/") else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let parts: Vec<String> = rest.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", [org]) => {
            if let Err(r) = authorize(state, headers, org, true) {
                return *r;
            }
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let (Some(project), Some(name)) = (v["project"].as_str(), v["name"].as_str()) else {
                return error(StatusCode::BAD_REQUEST, "Bad Request: project and name are required");
            };
            let k = key(org, project, name);
            if state.envs.contains_key(&k) {
                return error(
                    StatusCode::CONFLICT,
                    format!("Conflict: environment '{org}/{project}/{name}' already exists"),
                );
            }
            state.envs.insert(
                k,
                Env {
                    revisions: vec![String::new()],
                },
            );
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::empty())
                .expect("response")
        }
        (m @ ("GET" | "HEAD" | "PATCH" | "DELETE"), [org, project, env]) => {
            if let Err(r) = authorize(state, headers, org, m == "PATCH" || m == "DELETE") {
                return *r;
            }
            let k = key(org, project, env);
            if !state.envs.contains_key(&k) {
                return not_found_env(org, project, env);
            }
            match m {
                "GET" | "HEAD" => {
                    let e = &state.envs[&k];
                    let r = Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/x-yaml")
                        .body(Body::from(e.yaml().to_string()))
                        .expect("response");
                    with_env_headers(r, &k, e)
                }
                "DELETE" => {
                    state.envs.remove(&k);
                    Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(Body::empty())
                        .expect("response")
                }
                _ => patch(state, &k, body, precondition),
            }
        }
        ("POST", [org, project, env, "open"]) => {
            if let Err(r) = authorize(state, headers, org, false) {
                return *r;
            }
            let k = key(org, project, env);
            if !state.envs.contains_key(&k) {
                return not_found_env(org, project, env);
            }
            let duration = match query.get("duration").map(String::as_str) {
                None | Some("") => Duration::from_secs(3600),
                Some(d) => match parse_go_duration(d) {
                    Some(d) => d,
                    None => {
                        return error(StatusCode::BAD_REQUEST, format!("Bad Request: invalid duration '{d}'"));
                    }
                },
            };
            let properties = match evaluate(state, &k) {
                Ok(p) => p,
                Err(d) => return diagnostics(&d),
            };
            state.next_session += 1;
            let id = format!("{}{}", state.next_session, random_hex(8));
            state.sessions.insert(
                id.clone(),
                Session {
                    env: k.clone(),
                    properties,
                    expires: Instant::now() + duration,
                },
            );
            let e = &state.envs[&k];
            with_env_headers(json_response(StatusCode::OK, &json!({"id": id})), &k, e)
        }
        ("GET", [org, project, env, "open", id]) => {
            if let Err(r) = authorize(state, headers, org, false) {
                return *r;
            }
            let k = key(org, project, env);
            let session = state
                .sessions
                .get(*id)
                .filter(|s| s.env == k && s.expires > Instant::now());
            let Some(session) = session else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "Not Found: open session '{id}' of environment '{org}/{project}/{env}' not found or expired"
                    ),
                );
            };
            match query.get("property") {
                Some(p) => match lookup(&session.properties, p) {
                    Some(v) => json_response(StatusCode::OK, &v),
                    None => error(StatusCode::NOT_FOUND, format!("Not Found: property '{p}' not found")),
                },
                None => json_response(
                    StatusCode::OK,
                    &json!({
                        "exprs": {},
                        "properties": session.properties,
                        "schema": {"type": "object"},
                        "executionContext": {"properties": {}, "schema": {}},
                    }),
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn patch(state: &mut State, k: &Key, body: &Bytes, precondition: Option<&str>) -> Response<Body> {
    if state.race.as_ref().is_some_and(|(rk, _)| rk == k)
        && let Some((_, yaml)) = state.race.take()
    {
        state.envs.get_mut(k).expect("checked").revisions.push(yaml);
    }
    let current = etag_of(k, &state.envs[k]);
    if let Some(p) = precondition
        && p != "*"
        && p.trim() != current
    {
        return error(
            StatusCode::CONFLICT,
            "Conflict: the environment was modified since it was read (ETag mismatch)",
        );
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return error(StatusCode::BAD_REQUEST, "Bad Request: the definition is not UTF-8");
    };
    // Check the new definition evaluates before storing it.
    let previous = state.envs[k].revisions.clone();
    state.envs.get_mut(k).expect("checked").revisions.push(text.to_string());
    if let Err(d) = evaluate(state, k) {
        state.envs.get_mut(k).expect("checked").revisions = previous;
        return diagnostics(&d);
    }
    let e = &state.envs[k];
    with_env_headers(json_response(StatusCode::OK, &json!({})), k, e)
}

/// A Go duration: `300ms`, `1.5h`, `2h45m`.
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += number * factor;
    }
    Some(Duration::from_secs_f64(total))
}

// ------------------------------------------------------------------ evaluation

#[derive(Debug, Clone)]
struct Diag {
    summary: String,
    path: Option<String>,
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{p}: {}", self.summary),
            None => f.write_str(&self.summary),
        }
    }
}

fn diag(summary: impl Into<String>, path: Option<String>) -> Diag {
    Diag {
        summary: summary.into(),
        path,
    }
}

fn trace(env_name: &str) -> Value {
    let pos = json!({"line": 1, "column": 1, "byte": 0});
    json!({"def": {"environment": env_name, "begin": pos, "end": pos}})
}

/// Evaluates an environment: its imports, then its own values over them.
fn evaluate(state: &State, k: &Key) -> Result<Map<String, Value>, Vec<Diag>> {
    evaluate_in(state, k, &mut vec![])
}

fn evaluate_in(state: &State, k: &Key, stack: &mut Vec<Key>) -> Result<Map<String, Value>, Vec<Diag>> {
    let (org, project, name) = k;
    let env = state
        .envs
        .get(k)
        .ok_or_else(|| vec![diag(format!("unknown environment \"{project}/{name}\""), None)])?;
    if stack.contains(k) {
        return Err(vec![diag(format!("cyclic import of \"{project}/{name}\""), None)]);
    }
    stack.push(k.clone());
    let text = env.yaml();
    let doc: serde_norway::Value = if text.trim().is_empty() {
        serde_norway::Value::Null
    } else {
        serde_norway::from_str(text).map_err(|e| vec![diag(format!("invalid YAML: {e}"), None)])?
    };
    let mut out = Map::new();
    let mut diags = vec![];
    let root = match &doc {
        serde_norway::Value::Null => serde_norway::Mapping::new(),
        serde_norway::Value::Mapping(m) => m.clone(),
        _ => return Err(vec![diag("the definition must be a mapping", None)]),
    };
    for (top, _) in &root {
        if !matches!(top.as_str(), Some("imports" | "values")) {
            diags.push(diag(format!("unknown top-level key {top:?}"), None));
        }
    }
    if let Some(imports) = root.get("imports") {
        let Some(list) = imports.as_sequence() else {
            return Err(vec![diag("imports must be a list", Some("imports".into()))]);
        };
        for (i, item) in list.iter().enumerate() {
            let Some(import) = item.as_str() else {
                diags.push(diag("an import must be a string", Some(format!("imports[{i}]"))));
                continue;
            };
            let (p, e) = import.split_once('/').unwrap_or(("default", import));
            match evaluate_in(state, &key(org, p, e), stack) {
                Ok(values) => {
                    for (k2, v) in values {
                        merge_into(&mut out, k2, v);
                    }
                }
                Err(mut d) => {
                    for d in &mut d {
                        d.path.get_or_insert_with(|| format!("imports[{i}]"));
                    }
                    diags.extend(d);
                }
            }
        }
    }
    let me = format!("{project}/{name}");
    if let Some(values) = root.get("values") {
        match values {
            serde_norway::Value::Mapping(m) => {
                for (k2, v) in m {
                    let Some(k2) = yaml_key(k2) else {
                        diags.push(diag("keys must be strings", Some("values".into())));
                        continue;
                    };
                    match eval_node(v, &me, &k2) {
                        Ok(v) => merge_into(&mut out, k2, v),
                        Err(d) => diags.push(d),
                    }
                }
            }
            serde_norway::Value::Null => {}
            _ => diags.push(diag("values must be a mapping", Some("values".into()))),
        }
    }
    stack.pop();
    if diags.is_empty() { Ok(out) } else { Err(diags) }
}

fn yaml_key(k: &serde_norway::Value) -> Option<String> {
    match k {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Own values override imported ones; objects merge key by key.
fn merge_into(out: &mut Map<String, Value>, k: String, v: Value) {
    match (out.get_mut(&k), &v) {
        (Some(existing), Value::Object(new)) if existing["value"].is_object() && new["value"].is_object() => {
            let mut merged = existing["value"].as_object().cloned().unwrap_or_default();
            for (k2, v2) in new["value"].as_object().cloned().unwrap_or_default() {
                merge_into(&mut merged, k2, v2);
            }
            let mut node = v.clone();
            node["value"] = Value::Object(merged);
            out.insert(k, node);
        }
        _ => {
            out.insert(k, v);
        }
    }
}

fn leaf(value: Value, env: &str) -> Value {
    json!({"value": value, "trace": trace(env)})
}

fn eval_node(v: &serde_norway::Value, env: &str, path: &str) -> Result<Value, Diag> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => leaf(Value::Null, env),
        Y::Bool(b) => leaf(json!(b), env),
        Y::Number(n) => leaf(serde_json::to_value(n).unwrap_or(Value::Null), env),
        Y::String(s) => leaf(json!(s), env),
        Y::Sequence(items) => {
            let mut list = vec![];
            for (i, item) in items.iter().enumerate() {
                list.push(eval_node(item, env, &format!("{path}[{i}]"))?);
            }
            leaf(Value::Array(list), env)
        }
        Y::Tagged(t) => eval_node(&t.value, env, path)?,
        Y::Mapping(m) => {
            let builtin = (m.len() == 1)
                .then(|| m.iter().next())
                .flatten()
                .and_then(|(k, v)| k.as_str().filter(|k| k.starts_with("fn::")).map(|k| (k, v)));
            if let Some((name, arg)) = builtin {
                return eval_builtin(name, arg, env, path);
            }
            let mut obj = Map::new();
            for (k, v) in m {
                let Some(k) = yaml_key(k) else {
                    return Err(diag("keys must be strings", Some(path.to_string())));
                };
                let child = eval_node(v, env, &format!("{path}[\"{k}\"]"))?;
                obj.insert(k, child);
            }
            leaf(Value::Object(obj), env)
        }
    })
}

fn eval_builtin(name: &str, arg: &serde_norway::Value, env: &str, path: &str) -> Result<Value, Diag> {
    match name {
        "fn::secret" => {
            let Some(s) = arg.as_str() else {
                return Err(diag(
                    "the argument to fn::secret must be a string",
                    Some(path.to_string()),
                ));
            };
            Ok(json!({"value": s, "secret": true, "trace": trace(env)}))
        }
        "fn::toJSON" => {
            let inner = eval_node(arg, env, path)?;
            let secret = contains_secret(&inner);
            let mut v = leaf(json!(plain(&inner["value"]).to_string()), env);
            if secret {
                v["secret"] = json!(true);
            }
            Ok(v)
        }
        n if n.starts_with("fn::open::") => {
            let m = arg.as_mapping();
            let get = |k: &str| m.and_then(|m| m.get(k));
            if let Some(f) = get("fail") {
                return Err(diag(
                    format!("{n}: {}", f.as_str().unwrap_or("provider failed")),
                    Some(path.to_string()),
                ));
            }
            if get("unknown").and_then(serde_norway::Value::as_bool) == Some(true) {
                return Ok(json!({"value": null, "unknown": true, "trace": trace(env)}));
            }
            match get("value") {
                Some(v) => eval_node(v, env, path),
                None => Err(diag(
                    format!("{n}: the fake needs a value, unknown or fail input"),
                    Some(path.to_string()),
                )),
            }
        }
        other => Err(diag(
            format!("unknown builtin function {other}"),
            Some(path.to_string()),
        )),
    }
}

fn contains_secret(v: &Value) -> bool {
    v["secret"].as_bool() == Some(true)
        || match &v["value"] {
            Value::Object(m) => m.values().any(contains_secret),
            Value::Array(a) => a.iter().any(contains_secret),
            _ => false,
        }
}

/// The plain JSON of an evaluated value (no `secret`/`trace` metadata).
fn plain(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let inner = match v {
                        Value::Object(node) if node.contains_key("trace") => plain(&node["value"]),
                        other => plain(other),
                    };
                    (k.clone(), inner)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| match v {
                    Value::Object(node) if node.contains_key("trace") => plain(&node["value"]),
                    other => plain(other),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One step of a property path.
enum Step {
    Key(String),
    Index(usize),
}

/// Parses ESC property paths: `a.b`, `a["b"]`, `a[0]`, `["a.b"].c`.
fn parse_path(p: &str) -> Option<Vec<Step>> {
    let mut steps = vec![];
    let b = p.as_bytes();
    let mut i = 0;
    let mut expect_name = true;
    while i < b.len() {
        match b[i] {
            b'[' => {
                i += 1;
                if b.get(i) == Some(&b'"') {
                    i += 1;
                    let mut s = String::new();
                    loop {
                        let c = *b.get(i)?;
                        match c {
                            b'\\' => {
                                s.push(*b.get(i + 1)? as char);
                                i += 2;
                            }
                            b'"' => {
                                i += 1;
                                break;
                            }
                            _ => {
                                let ch = p[i..].chars().next()?;
                                s.push(ch);
                                i += ch.len_utf8();
                            }
                        }
                    }
                    steps.push(Step::Key(s));
                } else {
                    let end = p[i..].find(']')? + i;
                    steps.push(Step::Index(p[i..end].parse().ok()?));
                    i = end;
                }
                if b.get(i) != Some(&b']') {
                    return None;
                }
                i += 1;
                expect_name = false;
            }
            b'.' => {
                i += 1;
                expect_name = true;
            }
            _ if expect_name => {
                let end = p[i..].find(['.', '[']).map(|e| e + i).unwrap_or(p.len());
                steps.push(Step::Key(p[i..end].to_string()));
                i = end;
                expect_name = false;
            }
            _ => return None,
        }
    }
    (!steps.is_empty()).then_some(steps)
}

fn lookup(props: &Map<String, Value>, path: &str) -> Option<Value> {
    let steps = parse_path(path)?;
    let mut node: Option<&Value> = None;
    for (n, step) in steps.iter().enumerate() {
        node = match (n, step) {
            (0, Step::Key(k)) => props.get(k),
            (0, Step::Index(_)) => None,
            (_, Step::Key(k)) => node?["value"].as_object()?.get(k),
            (_, Step::Index(i)) => node?["value"].as_array()?.get(*i),
        };
        node?;
    }
    node.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("x"), None);
    }

    #[test]
    fn evaluates_imports_secrets_and_paths() {
        let mut s = State::default();
        s.envs.insert(
            key("o", "p", "base"),
            Env {
                revisions: vec![
                    "values:\n  shared: base\n  pulumiConfig:\n    a: from-base\n    b: from-base\n".into(),
                ],
            },
        );
        s.envs.insert(
            key("o", "p", "app"),
            Env {
                revisions: vec![
                    "imports:\n  - p/base\nvalues:\n  pulumiConfig:\n    b: own\n    \"postgresql:password\":\n      fn::secret: hunter2\n".into(),
                ],
            },
        );
        let props = evaluate(&s, &key("o", "p", "app")).unwrap();
        let pw = lookup(&props, "pulumiConfig[\"postgresql:password\"]").unwrap();
        assert_eq!(pw["value"], "hunter2");
        assert_eq!(pw["secret"], true);
        assert_eq!(lookup(&props, "pulumiConfig.a").unwrap()["value"], "from-base");
        assert_eq!(
            lookup(&props, "pulumiConfig.a").unwrap()["trace"]["def"]["environment"],
            "p/base"
        );
        assert_eq!(lookup(&props, "pulumiConfig.b").unwrap()["value"], "own");
        assert_eq!(lookup(&props, "shared").unwrap()["value"], "base");
        assert!(lookup(&props, "pulumiConfig.zzz").is_none());
    }

    #[test]
    fn open_providers_and_unknown_builtins() {
        let mut s = State::default();
        s.envs.insert(
            key("o", "p", "e"),
            Env {
                revisions: vec!["values:\n  a:\n    fn::open::aws-secrets:\n      unknown: true\n  b:\n    fn::open::x:\n      value: 3\n".into()],
            },
        );
        let props = evaluate(&s, &key("o", "p", "e")).unwrap();
        assert_eq!(props["a"]["unknown"], true);
        assert_eq!(props["b"]["value"], 3);
        s.envs.get_mut(&key("o", "p", "e")).unwrap().revisions[0] = "values:\n  a:\n    fn::nope: 1\n".into();
        assert!(evaluate(&s, &key("o", "p", "e")).is_err());
    }
}
