//! `rotate`: seed 000's `setup-gcp-secrets.sh` for any provider. Ensures each secret of a
//! plan (create, update from an environment variable, regenerate with `--rotate`, or leave
//! it), then force-syncs every target reading a changed key — coupled consumers in order,
//! each verified before the next — and restarts their consumers.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use secretsync_core::manifest::StoreId;
use secretsync_core::rotation::{self, Action, RotationPlan};
use secretsync_core::source::SecretWriter;

use super::{Exit, Format, SinkChoice, build_sink, build_stores, engine_over, implied_restarter, load_checked};

/// Options of `rotate`.
#[derive(Debug, Clone, Default)]
pub struct RotateOptions {
    /// The rotation plan.
    pub plan: PathBuf,
    /// Manifests with the stores and the ExternalSecrets that read the keys.
    pub manifests: Vec<PathBuf>,
    /// Regenerate generated secrets even when they have a value.
    pub rotate: bool,
    /// Print the plan, write nothing.
    pub dry_run: bool,
    /// Do not ask for confirmation.
    pub yes: bool,
    /// Where the ExternalSecrets' targets are.
    pub sink: SinkChoice,
    /// Report format.
    pub format: Format,
}

/// Runs `rotate`. `input` answers the confirmation question; `env` looks up desired values.
pub async fn run_rotate(
    opts: &RotateOptions,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let plan = match RotationPlan::load(&opts.plan) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Exit::BadInput;
        }
    };
    let manifests = match load_checked(&opts.manifests, true, err) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let (stores, failed) = match build_stores(&manifests, &opts.sink, err).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let writers: BTreeMap<StoreId, Arc<dyn SecretWriter>> = stores
        .iter()
        .filter_map(|(id, b)| b.writer.clone().map(|w| (id.clone(), w)))
        .collect();
    let key = match super::stable_key(err) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let plans = match rotation::plan(&plan, &writers, opts.rotate, env, &key).await {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Exit::SpecFailed;
        }
    };
    let writes: Vec<_> = plans.iter().filter(|p| p.writes()).collect();
    if opts.format == Format::Text {
        for p in &plans {
            let fp = p
                .new_fingerprint
                .as_deref()
                .map(|f| format!(" new={f}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<8} {} ({}): {}{fp}",
                format!("{:?}", p.action).to_lowercase(),
                p.key,
                p.store,
                p.reason
            );
        }
        let impacts: Vec<_> = writes
            .iter()
            .filter_map(|p| p.impact.as_ref().map(|i| (p.key.as_str(), i)))
            .collect();
        if !impacts.is_empty() {
            let _ = writeln!(out, "\nimpact of this change:");
            for (k, i) in impacts {
                let _ = writeln!(out, "  {k}: {i}");
            }
        }
        let missing = plans.iter().filter(|p| p.action == Action::Missing).count();
        let _ = writeln!(
            out,
            "\n{} to write, {} unchanged, {missing} missing (manual)",
            writes.len(),
            plans.len() - writes.len() - missing
        );
    }
    if opts.dry_run {
        if opts.format == Format::Json {
            let _ = writeln!(out, "{}", serde_json::json!({ "dry_run": true, "keys": plans }));
        } else {
            let _ = writeln!(out, "dry run: nothing written");
        }
        return Exit::Synced;
    }
    if !writes.is_empty() && !opts.yes {
        let _ = write!(out, "write {} secret(s)? [y/N] ", writes.len());
        let _ = out.flush();
        let mut answer = String::new();
        let _ = input.read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            let _ = writeln!(err, "aborted: nothing written");
            return Exit::SpecFailed;
        }
    }
    let results = rotation::apply(plans, &writers).await;
    let sink = match build_sink(&opts.sink).await {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Exit::BadInput;
        }
    };
    let mut engine = match engine_over(stores, failed, sink, err) {
        Ok(e) => e.with_fingerprint_key(key),
        Err(code) => return code,
    };
    if let Some(r) = implied_restarter(&opts.sink).await {
        engine = engine.with_restarter(r);
    }
    let steps = rotation::propagate(&results, &plan, &manifests, &engine).await;
    let failed_writes = results.iter().filter(|r| r.error.is_some()).count();
    let failed_steps = steps.iter().filter(|s| !s.verified).count();
    match opts.format {
        Format::Json => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({ "dry_run": false, "keys": results, "steps": steps })
            );
        }
        Format::Text => {
            for r in &results {
                if let Some(e) = &r.error {
                    let _ = writeln!(out, "FAILED   {}: {e}", r.plan.key);
                } else if r.plan.writes() {
                    let v = r
                        .version
                        .as_deref()
                        .map(|v| format!(" version {v}"))
                        .unwrap_or_default();
                    let d = if r.disabled_previous {
                        ", previous version disabled"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "wrote    {}{v}{d}", r.plan.key);
                }
            }
            for s in &steps {
                let restarted = if s.restarted.is_empty() {
                    String::new()
                } else {
                    format!("; restarted {}", s.restarted.join(", "))
                };
                let status = if s.verified { "verified" } else { "NOT VERIFIED" };
                let msg = if s.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", s.message)
                };
                let _ = writeln!(
                    out,
                    "synced   {} -> {} ({:?}, {status}){restarted}{msg}",
                    s.spec, s.target, s.outcome
                );
            }
        }
    }
    if failed_writes > 0 || failed_steps > 0 {
        Exit::SpecFailed
    } else {
        Exit::Synced
    }
}
