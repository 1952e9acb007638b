//! [`AwsSecretsManager`]: the [`SecretSource`] and [`SecretWriter`] on AWS Secrets Manager.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, SecretListEntry, Tag};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::Blob;
use futures::StreamExt;
use secretsync_core::source::{MANAGED_BY_KEY, MANAGED_BY_VALUE};
use secretsync_core::sources::memory::merge_property;
use secretsync_core::{
    CallStats, ChangeToken, Error, Fetched, FindQuery, RemoteDescription, RemoteKey, Result, SecretSource, SecretValue,
    SecretWriter, SourceCapabilities, VersionInfo, WriteOutcome, WriteRequest,
};

use crate::error::{Failure, Kind, PROVIDER, kind_of_code};

/// Ids per `BatchGetSecretValue` call: the API's limit (moto does not enforce it).
pub const BATCH_LIMIT: usize = 20;
/// `MaxResults` of `ListSecrets` pages: the API's maximum.
pub const LIST_PAGE_SIZE: i32 = 100;
/// Values per `ListSecrets` filter: the API's limit.
const FILTER_VALUES_LIMIT: usize = 10;
/// Requests of one `get_many` / `change_tokens` sent at once.
const CONCURRENCY: usize = 8;
/// Guard against a service that never stops returning a next token.
const MAX_PAGES: usize = 10_000;

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";

/// Version id → staging labels of one secret.
type Stages = HashMap<String, Vec<String>>;

/// What [`crate::AwsSecretsManagerBuilder::build`] hands over.
pub(crate) struct Parts {
    pub(crate) client: Client,
    pub(crate) stats: Arc<CallStats>,
    pub(crate) region: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) listing_reuse: Duration,
}

/// AWS Secrets Manager as a [`SecretSource`] and [`SecretWriter`].
///
/// Built with [`crate::AwsSecretsManagerBuilder`] or, from a store manifest, with
/// [`crate::AwsFactory`]. See the crate docs for the calls each operation sends.
pub struct AwsSecretsManager {
    client: Client,
    stats: Arc<CallStats>,
    region: String,
    endpoint: Option<String>,
    prefix: Option<String>,
    listing_reuse: Duration,
    /// Staging labels seen by the last `find` listings, by full name, for one `change_tokens`.
    listing: Mutex<HashMap<String, (Instant, Stages)>>,
    /// `BatchGetSecretValue` was denied: read one by one from now on.
    batch_denied: AtomicBool,
    /// `ListSecrets` was denied: change tokens are unknown unless one DescribeSecret does.
    list_denied: AtomicBool,
}

impl fmt::Debug for AwsSecretsManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecretsManager")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl AwsSecretsManager {
    pub(crate) fn new(p: Parts) -> Self {
        Self {
            client: p.client,
            stats: p.stats,
            region: p.region,
            endpoint: p.endpoint,
            prefix: p.prefix,
            listing_reuse: p.listing_reuse,
            listing: Mutex::new(HashMap::new()),
            batch_denied: AtomicBool::new(false),
            list_denied: AtomicBool::new(false),
        }
    }

    /// Where requests go, for errors about reaching the service.
    fn endpoint_label(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://secretsmanager.{}.amazonaws.com", self.region),
        }
    }

    /// The SDK client, for operations this crate does not wrap. Its requests are counted
    /// in [`SecretSource::call_stats`] too.
    pub fn sdk_client(&self) -> &Client {
        &self.client
    }

    /// The region requests go to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The remote name of a key: the store's prefix, then the key.
    fn full(&self, key: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}{key}"),
            None => key.to_string(),
        }
    }

    /// The key of a remote name, if it is under the prefix.
    fn strip<'a>(&self, name: &'a str) -> Option<&'a str> {
        match &self.prefix {
            Some(p) => name.strip_prefix(p.as_str()),
            None => Some(name),
        }
    }

    fn forget_listing(&self, name: &str) {
        self.listing.lock().expect("lock").remove(name);
    }

    /// Every page of `ListSecrets` with `filters`.
    async fn list_all(&self, filters: Vec<Filter>, what: &str) -> Result<Vec<SecretListEntry>, Failure> {
        let mut entries = vec![];
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let resp = self
                .client
                .list_secrets()
                .max_results(LIST_PAGE_SIZE)
                .set_filters(Some(filters.clone()).filter(|f| !f.is_empty()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| Failure::from_sdk("ListSecrets", what, &e).at(&self.endpoint_label()))?;
            entries.extend(resp.secret_list.unwrap_or_default());
            token = resp.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(entries);
            }
        }
        Err(Failure::local(
            "ListSecrets",
            what,
            Kind::Other,
            "more than 10000 pages",
        ))
    }

    /// Staging labels of the named secrets (full names, no ARNs) through `ListSecrets`
    /// filtered by at most ten name prefixes that cover them.
    async fn stages_by_listing(&self, names: &[String]) -> Result<HashMap<String, Stages>, Failure> {
        let prefixes = cover_prefixes(names, FILTER_VALUES_LIMIT);
        let filters = if prefixes.iter().any(|p| p.is_empty() || p.starts_with('!')) {
            vec![]
        } else {
            vec![
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .set_values(Some(prefixes))
                    .build(),
            ]
        };
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let what = format!("{} secrets", names.len());
        Ok(self
            .list_all(filters, &what)
            .await?
            .into_iter()
            .filter(|e| e.deleted_date.is_none())
            .filter_map(|e| {
                let name = e.name?;
                wanted
                    .contains(name.as_str())
                    .then(|| (name, e.secret_versions_to_stages.unwrap_or_default()))
            })
            .collect())
    }

    async fn describe_raw(
        &self,
        name: &str,
    ) -> Result<aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput, Failure> {
        let out = self
            .client
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| Failure::from_sdk("DescribeSecret", name, &e).at(&self.endpoint_label()))?;
        Ok(out)
    }

    async fn stages_by_describe(&self, name: &str) -> Result<Stages, Failure> {
        let out = self.describe_raw(name).await?;
        if out.deleted_date.is_some() {
            return Err(Failure::local(
                "DescribeSecret",
                name,
                Kind::NotFound,
                "the secret is marked for deletion",
            ));
        }
        Ok(out.version_ids_to_stages.unwrap_or_default())
    }

    /// One `BatchGetSecretValue` (all its pages) for at most [`BATCH_LIMIT`] full names.
    async fn batch_chunk(&self, ids: &[String]) -> Result<HashMap<String, Result<Fetched, Failure>>, Failure> {
        debug_assert!(ids.len() <= BATCH_LIMIT);
        let what = format!(
            "{} secrets from `{}`",
            ids.len(),
            ids.first().map(String::as_str).unwrap_or("")
        );
        let mut found = HashMap::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let resp = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.to_vec()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| Failure::from_sdk("BatchGetSecretValue", &what, &e).at(&self.endpoint_label()))?;
            for entry in resp.secret_values.unwrap_or_default() {
                let Some(id) = ids
                    .iter()
                    .find(|id| Some(id.as_str()) == entry.name.as_deref() || Some(id.as_str()) == entry.arn.as_deref())
                else {
                    continue;
                };
                let fetched =
                    value_of(entry.secret_string, entry.secret_binary, "BatchGetSecretValue", id).map(|value| {
                        Fetched {
                            value,
                            version: entry.version_id,
                        }
                    });
                found.insert(id.clone(), fetched);
            }
            for err in resp.errors.unwrap_or_default() {
                if let Some(id) = err.secret_id {
                    let code = err.error_code.as_deref().unwrap_or("UnknownError");
                    let f = Failure::from_code("BatchGetSecretValue", &id, code, err.message.as_deref());
                    found.insert(id, Err(f));
                }
            }
            token = resp.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(found);
            }
        }
        Err(Failure::local(
            "BatchGetSecretValue",
            &what,
            Kind::Other,
            "more than 10000 pages",
        ))
    }
}

/// A value from `SecretString` or `SecretBinary`, moved (not copied) into a [`SecretValue`].
fn value_of(
    string: Option<String>,
    binary: Option<Blob>,
    op: &'static str,
    name: &str,
) -> Result<SecretValue, Failure> {
    if let Some(s) = string {
        return Ok(SecretValue::from_string(s));
    }
    if let Some(b) = binary {
        return Ok(SecretValue::new(b.into_inner()));
    }
    Err(Failure::local(
        op,
        name,
        Kind::NotFound,
        "the version has neither SecretString nor SecretBinary",
    ))
}

/// The version id a `version` names: `uuid/<id>` (ESO's form), or a bare UUID, which is
/// what `describe` and `put` report and what AWS generates; anything else is a stage.
fn version_id_of(version: &str) -> Option<&str> {
    if let Some(id) = version.strip_prefix("uuid/") {
        return Some(id);
    }
    let b = version.as_bytes();
    let uuid_shaped = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    uuid_shaped.then_some(version)
}

fn is_current(k: &RemoteKey) -> bool {
    matches!(k.version.as_deref(), None | Some(CURRENT))
}

/// The version id that carries `stage`.
fn version_with_stage(stages: &Stages, stage: &str) -> Option<String> {
    stages
        .iter()
        .find(|(_, labels)| labels.iter().any(|l| l == stage))
        .map(|(id, _)| id.clone())
}

fn tags_map(tags: Option<Vec<Tag>>) -> BTreeMap<String, String> {
    tags.unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
        .collect()
}

fn is_managed(tags: &BTreeMap<String, String>) -> bool {
    tags.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// Days AWS keeps a secret deleted by a PushSecret before removing it for good
/// (`RestoreSecret` undoes the delete meanwhile); AWS's own default.
pub const DELETE_RECOVERY_WINDOW_DAYS: i64 = 30;

/// At most `max` prefixes such that every name starts with one of them, as long as
/// possible: names are sorted and cut where neighbours share the shortest prefix.
pub(crate) fn cover_prefixes(names: &[String], max: usize) -> Vec<String> {
    let sorted: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if sorted.is_empty() {
        return vec![];
    }
    let lcp = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    // Cut after index i where lcp(sorted[i], sorted[i+1]) is among the smallest.
    let mut links: Vec<(usize, usize)> = sorted
        .windows(2)
        .enumerate()
        .map(|(i, w)| (lcp(w[0], w[1]), i))
        .collect();
    links.sort();
    let mut cuts: Vec<usize> = links.iter().take(max.saturating_sub(1)).map(|&(_, i)| i).collect();
    cuts.sort_unstable();
    let mut out = vec![];
    let mut start = 0;
    for end in cuts.into_iter().chain([sorted.len() - 1]) {
        let (first, last) = (sorted[start], sorted[end]);
        let n = lcp(first, last);
        // Names are ASCII in AWS; stay on a char boundary anyway.
        let mut n = n.min(first.len());
        while !first.is_char_boundary(n) {
            n -= 1;
        }
        out.push(first[..n].to_string());
        start = end + 1;
    }
    out
}

/// The literal text every match of an anchored regular expression starts with
/// (`^crawbl/dev/` → `crawbl/dev/`), used to narrow `ListSecrets` by name.
pub(crate) fn literal_prefix(re: &str) -> String {
    // An alternation outside groups may bypass the anchored text.
    let Some(rest) = re.strip_prefix('^').filter(|_| !has_top_level_alternation(re)) else {
        return String::new();
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        let lit = if c == '\\' {
            match chars.peek() {
                Some(&n) if "./-_+=@".contains(n) => {
                    chars.next();
                    n
                }
                _ => break,
            }
        } else if c.is_ascii_alphanumeric() || "/-_=@".contains(c) {
            c
        } else {
            break;
        };
        // A quantifier after this character makes it optional or repeated.
        if matches!(chars.peek(), Some('?' | '*' | '{')) {
            break;
        }
        out.push(lit);
    }
    out
}

fn has_top_level_alternation(re: &str) -> bool {
    let (mut depth, mut escaped, mut class) = (0i32, false, false);
    for c in re.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' => class = true,
            ']' => class = false,
            _ if class => {}
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' if depth <= 0 => return true,
            _ => {}
        }
    }
    false
}

#[async_trait]
impl SecretSource for AwsSecretsManager {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> SourceCapabilities {
        let mut c = SourceCapabilities::none();
        c.batch_read = true;
        c.find_by_name = true;
        c.find_by_path = true;
        c.find_by_tags = true;
        c.change_tokens = true;
        c.metadata = true;
        c.versions = true;
        c.binary = true;
        c
    }

    async fn get(&self, key: &RemoteKey) -> Result<Fetched> {
        let name = self.full(&key.key);
        let what = match &key.version {
            Some(v) => format!("{name}@{v}"),
            None => name.clone(),
        };
        let mut req = self.client.get_secret_value().secret_id(&name);
        let mut by_id = None;
        match key.version.as_deref() {
            None => {}
            Some(v) => match version_id_of(v) {
                Some(id) => {
                    req = req.version_id(id);
                    by_id = Some(id);
                }
                None => req = req.version_stage(v),
            },
        }
        let out = req.send().await.map_err(|e| {
            Failure::from_sdk("GetSecretValue", &what, &e)
                .at(&self.endpoint_label())
                .into_error()
        })?;
        // A version without staging labels is deprecated in AWS terms; `disable_version`
        // makes versions so, and the writer contract says they are then unreadable.
        if let Some(id) = by_id
            && out.version_stages.as_deref().is_none_or(|s| s.is_empty())
        {
            return Err(Error::not_found(format!(
                "version {id} of secret `{name}` in AWS Secrets Manager is disabled (it has no staging label)"
            )));
        }
        let version = out.version_id;
        let value =
            value_of(out.secret_string, out.secret_binary, "GetSecretValue", &what).map_err(Failure::into_error)?;
        Ok(Fetched { value, version })
    }

    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        let mut out: Vec<Option<Result<Fetched>>> = keys.iter().map(|_| None).collect();
        // Current versions go through BatchGetSecretValue, deduplicated; other versions
        // (stages, ids) through GetSecretValue.
        let mut ids: Vec<String> = vec![];
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        let mut singles: Vec<usize> = vec![];
        let batch = !self.batch_denied.load(Ordering::Relaxed);
        for (i, k) in keys.iter().enumerate() {
            if batch && is_current(k) {
                let name = self.full(&k.key);
                index
                    .entry(name.clone())
                    .or_insert_with(|| {
                        ids.push(name);
                        vec![]
                    })
                    .push(i);
            } else {
                singles.push(i);
            }
        }

        let chunks: Vec<Vec<String>> = ids.chunks(BATCH_LIMIT).map(<[String]>::to_vec).collect();
        let calls: Vec<_> = chunks
            .into_iter()
            .map(|chunk| async move {
                let r = self.batch_chunk(&chunk).await;
                (chunk, r)
            })
            .collect();
        let done: Vec<_> = futures::stream::iter(calls)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (chunk, result) in done {
            match result {
                Ok(mut found) => {
                    for name in chunk {
                        let r = found.remove(&name).unwrap_or_else(|| {
                            Err(Failure::local(
                                "BatchGetSecretValue",
                                &name,
                                Kind::NotFound,
                                "the answer had neither a value nor an error for it",
                            ))
                        });
                        for &i in &index[&name] {
                            out[i] = Some(r.clone().map_err(Failure::into_error));
                        }
                    }
                }
                Err(f) if f.kind == Kind::Denied => {
                    // Policies written for GetSecretValue only (seed 000's reader user) do
                    // not allow the batch action: read those one by one from now on.
                    if !self.batch_denied.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            provider = PROVIDER,
                            "secretsmanager:BatchGetSecretValue is denied; reading secrets one by one with GetSecretValue"
                        );
                    }
                    singles.extend(chunk.iter().flat_map(|n| index[n].iter().copied()));
                }
                Err(f) => {
                    for name in chunk {
                        for &i in &index[&name] {
                            out[i] = Some(Err(Failure {
                                resource: name.clone(),
                                ..f.clone()
                            }
                            .into_error()));
                        }
                    }
                }
            }
        }

        let reads: Vec<_> = singles
            .into_iter()
            .map(|i| async move { (i, self.get(&keys[i]).await) })
            .collect();
        let done: Vec<_> = futures::stream::iter(reads)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (i, r) in done {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::provider(PROVIDER, "internal error: a key got no result", false))))
            .collect()
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        let re = match &query.name_regexp {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| Error::invalid(format!("find.name.regexp: {e}")))?),
            None => None,
        };
        // Narrow the listing server-side by the longest known name prefix and one tag;
        // everything is checked exactly below (AWS filters are case-insensitive prefixes).
        let path = query.path.clone().unwrap_or_default();
        let lit = query.name_regexp.as_deref().map(literal_prefix).unwrap_or_default();
        let name_prefix = self.full(if lit.starts_with(&path) { &lit } else { &path });
        let mut filters = vec![];
        if !name_prefix.is_empty() && !name_prefix.starts_with('!') {
            filters.push(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(name_prefix)
                    .build(),
            );
        }
        if let Some((k, v)) = query.tags.iter().next()
            && !k.starts_with('!')
            && !v.starts_with('!')
        {
            filters.push(
                Filter::builder()
                    .key(FilterNameStringType::TagKey)
                    .values(k.clone())
                    .build(),
            );
            if !v.is_empty() {
                filters.push(
                    Filter::builder()
                        .key(FilterNameStringType::TagValue)
                        .values(v.clone())
                        .build(),
                );
            }
        }
        let entries = self
            .list_all(filters, "dataFrom.find")
            .await
            .map_err(Failure::into_error)?;

        let now = Instant::now();
        let mut names = BTreeSet::new();
        let mut seen = vec![];
        for e in entries {
            let Some(full) = e.name.clone() else { continue };
            let Some(key) = self.strip(&full) else { continue };
            let stages = e.secret_versions_to_stages.clone().unwrap_or_default();
            let tags = tags_map(e.tags.clone());
            let matches = e.deleted_date.is_none()
                && re.as_ref().is_none_or(|re| re.is_match(key))
                && key.starts_with(path.as_str())
                && query.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
                && version_with_stage(&stages, CURRENT).is_some();
            if matches {
                names.insert(key.to_string());
                seen.push((full, stages));
            }
        }
        if !self.listing_reuse.is_zero() {
            let mut l = self.listing.lock().expect("lock");
            for (full, stages) in seen {
                l.insert(full, (now, stages));
            }
        }
        Ok(names.into_iter().collect())
    }

    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        let mut out: Vec<Option<Result<Option<ChangeToken>>>> = keys.iter().map(|_| None).collect();
        // (index, full name, stage)
        let mut need: Vec<(usize, String, &str)> = vec![];
        for (i, k) in keys.iter().enumerate() {
            match k.version.as_deref() {
                // A version id names immutable content: it is its own token.
                Some(v) if version_id_of(v).is_some() => out[i] = Some(Ok(version_id_of(v).map(str::to_string))),
                Some(stage) => need.push((i, self.full(&k.key), stage)),
                None => need.push((i, self.full(&k.key), CURRENT)),
            }
        }
        if need.is_empty() {
            return out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect();
        }

        // Labels from a listing `find` just did, used once; then one lookup for the rest.
        let mut known: HashMap<String, Result<Stages, Failure>> = HashMap::new();
        {
            let mut l = self.listing.lock().expect("lock");
            let reuse = self.listing_reuse;
            for (_, name, _) in &need {
                if let Some((at, stages)) = l.remove(name)
                    && at.elapsed() <= reuse
                {
                    known.insert(name.clone(), Ok(stages));
                }
            }
            l.retain(|_, (at, _)| at.elapsed() <= reuse);
        }
        let missing: Vec<String> = need
            .iter()
            .map(|(_, n, _)| n.clone())
            .filter(|n| !known.contains_key(n))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (arns, plain): (Vec<String>, Vec<String>) = missing.into_iter().partition(|n| n.starts_with("arn:"));
        let mut describe: Vec<String> = arns;
        let list_denied = self.list_denied.load(Ordering::Relaxed);
        if plain.len() == 1 {
            describe.extend(plain);
        } else if !plain.is_empty() && !list_denied {
            match self.stages_by_listing(&plain).await {
                // Names absent from the listing stay unknown (ListSecrets is eventually
                // consistent): the engine reads them, and the read says what is wrong.
                Ok(found) => known.extend(found.into_iter().map(|(n, s)| (n, Ok(s)))),
                Err(f) if f.kind == Kind::Denied => {
                    if !self.list_denied.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            provider = PROVIDER,
                            "secretsmanager:ListSecrets is denied; change tokens are unknown, values are read every cycle"
                        );
                    }
                }
                Err(f) => {
                    for n in plain {
                        known.insert(
                            n.clone(),
                            Err(Failure {
                                resource: n,
                                ..f.clone()
                            }),
                        );
                    }
                }
            }
        }
        let lookups: Vec<_> = describe
            .into_iter()
            .map(|n| async move {
                let r = self.stages_by_describe(&n).await;
                (n, r)
            })
            .collect();
        let done: Vec<_> = futures::stream::iter(lookups)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        known.extend(done);

        for (i, name, stage) in need {
            out[i] = Some(match known.get(&name) {
                Some(Ok(stages)) => Ok(version_with_stage(stages, stage)),
                Some(Err(f)) => Err(f.clone().into_error()),
                None => Ok(None),
            });
        }
        out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect()
    }

    async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
        let name = self.full(key);
        let out = self.describe_raw(&name).await.map_err(Failure::into_error)?;
        Ok(tags_map(out.tags))
    }

    fn call_stats(&self) -> Option<&CallStats> {
        Some(&self.stats)
    }
}

fn put_payload(value: &SecretValue) -> (Option<String>, Option<Blob>) {
    match value.expose_str() {
        Some(s) => (Some(s.to_string()), None),
        None => (None, Some(Blob::new(value.expose().to_vec()))),
    }
}

#[async_trait]
impl SecretWriter for AwsSecretsManager {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        let name = self.full(key);
        let out = match self.describe_raw(&name).await {
            Ok(o) => o,
            Err(f) if f.kind == Kind::NotFound => return Ok(None),
            Err(f) => return Err(f.into_error()),
        };
        let stages = out.version_ids_to_stages.unwrap_or_default();
        let current = version_with_stage(&stages, CURRENT);
        let previous = version_with_stage(&stages, PREVIOUS);
        // DescribeSecret lists only versions with labels (readable ones); newest first as
        // far as labels tell: current, previous, then the rest.
        let mut versions: Vec<VersionInfo> = vec![];
        for id in current.iter().chain(previous.iter()) {
            versions.push(VersionInfo {
                id: id.clone(),
                enabled: true,
            });
        }
        let mut rest: Vec<&String> = stages
            .keys()
            .filter(|id| Some(*id) != current.as_ref() && Some(*id) != previous.as_ref())
            .collect();
        rest.sort();
        versions.extend(rest.into_iter().map(|id| VersionInfo {
            id: id.clone(),
            enabled: true,
        }));
        Ok(Some(RemoteDescription {
            current_version: current,
            managed: is_managed(&tags_map(out.tags)),
            versions,
        }))
    }

    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        let name = self.full(&request.key);
        self.forget_listing(&name);
        let existing = match self.describe_raw(&name).await {
            Ok(o) => Some(o),
            Err(f) if f.kind == Kind::NotFound => None,
            Err(f) => return Err(f.into_error()),
        };

        let Some(existing) = existing else {
            let value = match &request.property {
                None => request.value.clone(),
                Some(p) => merge_property(None, p, &request.value, &request.key)?,
            };
            let (s, b) = put_payload(&value);
            let tag = Tag::builder().key(MANAGED_BY_KEY).value(MANAGED_BY_VALUE).build();
            let out = self
                .client
                .create_secret()
                .name(&name)
                .set_secret_string(s)
                .set_secret_binary(b)
                .tags(tag)
                .send()
                .await
                .map_err(|e| {
                    Failure::from_sdk("CreateSecret", &name, &e)
                        .at(&self.endpoint_label())
                        .into_error()
                })?;
            return Ok(WriteOutcome::Created {
                version: out.version_id,
            });
        };

        if existing.deleted_date.is_some() {
            return Err(Error::Conflict {
                what: format!("secret `{name}` is marked for deletion; restore it (RestoreSecret) before writing"),
            });
        }
        if !request.force && !is_managed(&tags_map(existing.tags.clone())) {
            return Err(Error::PermissionDenied {
                what: format!(
                    "write to `{name}` in AWS Secrets Manager: not managed by secretsync (no tag {MANAGED_BY_KEY}={MANAGED_BY_VALUE}); force to override"
                ),
            });
        }
        let stages = existing.version_ids_to_stages.unwrap_or_default();
        let previous = version_with_stage(&stages, CURRENT);
        let value = match &request.property {
            None => request.value.clone(),
            Some(p) => {
                let current = match &previous {
                    None => None,
                    Some(_) => Some(self.get(&RemoteKey::new(request.key.clone())).await?.value),
                };
                merge_property(current.as_ref(), p, &request.value, &request.key)?
            }
        };
        let (s, b) = put_payload(&value);
        let out = self
            .client
            .put_secret_value()
            .secret_id(&name)
            .set_secret_string(s)
            .set_secret_binary(b)
            .send()
            .await
            .map_err(|e| {
                Failure::from_sdk("PutSecretValue", &name, &e)
                    .at(&self.endpoint_label())
                    .into_error()
            })?;
        let mut disabled = false;
        if request.disable_previous
            && let Some(prev) = &previous
        {
            // The old current version now carries AWSPREVIOUS: taking the label away is
            // AWS's nearest to disabling it.
            self.client
                .update_secret_version_stage()
                .secret_id(&name)
                .version_stage(PREVIOUS)
                .remove_from_version_id(prev)
                .send()
                .await
                .map_err(|e| {
                    Failure::from_sdk("UpdateSecretVersionStage", &name, &e)
                        .at(&self.endpoint_label())
                        .into_error()
                })?;
            disabled = true;
        }
        Ok(WriteOutcome::Updated {
            version: out.version_id,
            previous,
            disabled_previous: disabled,
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let name = self.full(key);
        self.forget_listing(&name);
        let existing = match self.describe_raw(&name).await {
            Ok(o) => o,
            Err(f) if f.kind == Kind::NotFound => return Ok(()),
            Err(f) => return Err(f.into_error()),
        };
        if existing.deleted_date.is_some() {
            return Ok(());
        }
        let tags = tags_map(existing.tags);
        let mark = tags.get(MANAGED_BY_KEY).map(String::as_str);
        if mark != Some(MANAGED_BY_VALUE) && mark != Some(secretsync_core::source::ESO_MANAGED_BY_VALUE) {
            return Err(Error::PermissionDenied {
                what: format!(
                    "delete `{name}` in AWS Secrets Manager: not managed by secretsync or external-secrets (no tag {MANAGED_BY_KEY}); left alone"
                ),
            });
        }
        self.client
            .delete_secret()
            .secret_id(&name)
            .recovery_window_in_days(DELETE_RECOVERY_WINDOW_DAYS)
            .send()
            .await
            .map_err(|e| {
                Failure::from_sdk("DeleteSecret", &name, &e)
                    .at(&self.endpoint_label())
                    .into_error()
            })?;
        Ok(())
    }

    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        let name = self.full(key);
        self.forget_listing(&name);
        let id = version_id_of(version).unwrap_or(version);
        let mut labels: Option<Vec<String>> = None;
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .list_secret_version_ids()
                .secret_id(&name)
                .include_deprecated(true)
                .max_results(LIST_PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    Failure::from_sdk("ListSecretVersionIds", &name, &e)
                        .at(&self.endpoint_label())
                        .into_error()
                })?;
            if let Some(v) = out
                .versions
                .unwrap_or_default()
                .into_iter()
                .find(|v| v.version_id.as_deref() == Some(id))
            {
                labels = Some(v.version_stages.unwrap_or_default());
                break;
            }
            token = out.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        let labels = labels
            .ok_or_else(|| Error::not_found(format!("version {id} of secret `{name}` in AWS Secrets Manager")))?;
        if labels.iter().any(|l| l == CURRENT) {
            return Err(Error::invalid(format!(
                "cannot disable version {id} of `{name}`: it is the current version (AWSCURRENT); put a new value first"
            )));
        }
        for label in labels {
            self.client
                .update_secret_version_stage()
                .secret_id(&name)
                .version_stage(&label)
                .remove_from_version_id(id)
                .send()
                .await
                .map_err(|e| {
                    Failure::from_sdk("UpdateSecretVersionStage", &name, &e)
                        .at(&self.endpoint_label())
                        .into_error()
                })?;
        }
        Ok(())
    }
}

/// Counts every attempt of every request in [`CallStats`]: operation name as in the AWS
/// API, status from the HTTP answer (`ok`, `not_found`, `throttled`, `denied`, `error`).
/// An interceptor sees SDK retries too, so the counts match what the server received.
#[derive(Debug)]
pub(crate) struct CallCounter {
    stats: Arc<CallStats>,
}

impl CallCounter {
    pub(crate) fn new(stats: Arc<CallStats>) -> Self {
        Self { stats }
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "secretsync-call-counter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "Unknown".into());
        let status = match context.response() {
            None => "error",
            Some(r) if r.status().is_success() => "ok",
            Some(r) => {
                // Error bodies only: a success body may hold a value and is never parsed here.
                let header = r.headers().get("x-amzn-errortype").map(str::to_string);
                let body: Option<serde_json::Value> = r.body().bytes().and_then(|b| serde_json::from_slice(b).ok());
                let code = header.or_else(|| {
                    body.as_ref()
                        .and_then(|b| b.get("__type"))
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                });
                let message = body
                    .as_ref()
                    .and_then(|b| b.get("message").or_else(|| b.get("Message")))
                    .and_then(|m| m.as_str());
                match code {
                    Some(c) => kind_of_code(&c, message).status(),
                    None if r.status().as_u16() == 429 => "throttled",
                    None if r.status().as_u16() == 403 => "denied",
                    None => "error",
                }
            }
        };
        self.stats.record(&op, status);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefixes_cover_every_name() {
        let names: Vec<String> = (0..45).map(|i| format!("t-abc/secret-{i:02}")).collect();
        let p = cover_prefixes(&names, 10);
        assert!(p.len() <= 10, "{p:?}");
        assert!(names.iter().all(|n| p.iter().any(|x| n.starts_with(x.as_str()))));
        assert!(p.iter().all(|x| x.starts_with("t-abc/secret-")), "{p:?}");

        let p = cover_prefixes(&s(&["a/x", "a/y", "b/z"]), 10);
        assert_eq!(p, s(&["a/x", "a/y", "b/z"]));
        let p = cover_prefixes(&s(&["a/x", "a/y", "b/z"]), 2);
        assert_eq!(p, s(&["a/", "b/z"]));
        let p = cover_prefixes(&s(&["a", "b", "c"]), 1);
        assert_eq!(p, s(&[""]));
        assert!(cover_prefixes(&[], 10).is_empty());
    }

    #[test]
    fn version_ids_and_stages() {
        assert_eq!(version_id_of("uuid/abc"), Some("abc"));
        assert_eq!(
            version_id_of("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
            Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
        );
        assert_eq!(version_id_of("AWSPREVIOUS"), None);
        assert_eq!(version_id_of("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9fz"), None);
    }

    #[test]
    fn literal_prefix_of_regexps() {
        assert_eq!(literal_prefix("^crawbl/dev/.*"), "crawbl/dev/");
        assert_eq!(literal_prefix("^crawbl\\.dev"), "crawbl.dev");
        assert_eq!(literal_prefix("^abc?"), "ab");
        assert_eq!(literal_prefix("^ab(c|d)"), "ab");
        assert_eq!(literal_prefix("abc"), "");
        assert_eq!(literal_prefix("^a\\d"), "a");
        assert_eq!(literal_prefix("^abc|^xyz"), "");
        assert_eq!(literal_prefix("^a[|]b"), "a");
    }
}
