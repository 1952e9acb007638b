//! The engine alone, for 10,000 ExternalSecrets over the in-memory source and sink: the
//! cost secretsync adds on top of provider and sink calls.
//!
//! - `manifest/load`: parse and validate the manifests (done once per reload, not per cycle);
//! - `engine/first_cycle`: plan, fetch (every value), render, fingerprint, diff, write;
//! - `engine/unchanged_cycle`: plan, change tokens (all known), render, fingerprint, diff,
//!   no write — the per-refresh overhead, the "engine overhead" target (< 50 ms / 10,000);
//! - `engine/plan`: the same as a dry run;
//! - `fingerprint`: the keyed HMAC of every target's data;
//! - `diff`: comparing every desired target with what the sink holds;
//! - `engine/unchanged_cycle_templated`: the unchanged cycle where every spec also renders a
//!   20-line Go template (config file, DSN, docker config with `range`, `if`, sprig
//!   functions) — to stay within 2× of `engine/unchanged_cycle`;
//! - `template/render_20_lines`: ONE render of that template, cycling through 1,000 data
//!   maps (no memo, no parse cache in the way): what a render that must happen costs.
//!
//! `cargo bench --bench engine`. Under `cargo test --all-targets` (no `--bench`) or with
//! `SECRETSYNC_BENCH_SMOKE=1` criterion runs each bench once at a small N, and the
//! setup's count checks still fail the run when they do not hold.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use secretsync_core::engine::{CycleOptions, Engine, target_matches};
use secretsync_core::manifest::{Manifests, load_str};
use secretsync_core::registry::BuiltStore;
use secretsync_core::sinks::MemorySink;
use secretsync_core::sources::MemorySource;
use secretsync_core::template::{Template, TemplateContext};
use secretsync_core::{
    CreationPolicy, DeletionPolicy, DesiredTarget, FingerprintKey, SecretMap, SecretSink, SecretValue, TargetState,
};

/// Specs (and secrets) of a full run; a smoke run uses [`SMOKE_N`].
const N: usize = 10_000;
const SMOKE_N: usize = 200;

fn n() -> usize {
    let smoke =
        std::env::var("SECRETSYNC_BENCH_SMOKE").is_ok_and(|v| v != "0") || !std::env::args().any(|a| a == "--bench");
    if smoke { SMOKE_N } else { N }
}

/// A fake store and `n` ExternalSecrets in 10 namespaces, each reading one key as two
/// entries (the whole value and a JSON property), as ESO users write them.
fn manifests_yaml(n: usize) -> String {
    let mut y = String::from(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata:\n  name: mem\nspec:\n  provider:\n    fake:\n      data: []\n",
    );
    for i in 0..n {
        let _ = write!(
            y,
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: es-{i:05}\n  namespace: ns-{}\nspec:\n  refreshInterval: 1h\n  secretStoreRef:\n    kind: ClusterSecretStore\n    name: mem\n  target:\n    name: es-{i:05}\n  data:\n    - secretKey: json\n      remoteRef:\n        key: app/s-{i:05}\n    - secretKey: password\n      remoteRef:\n        key: app/s-{i:05}\n        property: password\n",
            i % 10
        );
    }
    y
}

/// A 20-line template as ESO users write them: a config file, a DSN, a docker config built
/// with `range`, conditionals and sprig functions.
const TEMPLATE_20_LINES: &str = r#"|
          [database]
          user = {{ .json | fromJson | dig "user" "none" }}
          password = {{ .password | quote }}
          dsn = postgres://{{ (fromJson .json).user }}:{{ .password | urlquery }}@db:5432/app
          {{- if hasPrefix "p-" .password }}
          sslmode = require
          {{- else }}
          sslmode = disable
          {{- end }}
          [cache]
          key = {{ .password | sha256sum | trunc 16 }}
          {{- range $i, $r := list "a.example.com" "b.example.com" }}
          registry{{ $i }} = {{ $r }}
          {{- end }}
          auth = {{ printf "%s:%s" (fromJson .json).user .password | b64enc }}
          upper = {{ .password | upper }}
          {{- with .password }}
          len = {{ len . }}
          {{- end }}
          # end"#;

/// The manifests of [`manifests_yaml`] with a 20-line template on every spec.
fn templated_yaml(n: usize) -> String {
    manifests_yaml(n).replace(
        "  target:\n    name: ",
        &format!("  target:\n    template:\n      mergePolicy: Merge\n      data:\n        app.ini: {TEMPLATE_20_LINES}\n    name: "),
    )
}

/// The template text of [`TEMPLATE_20_LINES`] as the YAML block scalar gives it.
fn template_20_lines_text() -> String {
    let mut t = String::new();
    for line in TEMPLATE_20_LINES.lines().skip(1) {
        t.push_str(line.strip_prefix("          ").expect("indented as the YAML block"));
        t.push('\n');
    }
    t
}

/// The data of spec `i`, as the engine hands it to the template.
fn template_data(i: usize) -> TemplateContext {
    let json = format!(r#"{{"user":"u{i}","password":"p-{i:05}-0123456789abcdef0123456789abcdef"}}"#);
    let password = format!("p-{i:05}-0123456789abcdef0123456789abcdef");
    TemplateContext::from([
        ("json".to_string(), SecretValue::from(json)),
        ("password".to_string(), SecretValue::from(password)),
    ])
}

/// One render of the 20-line template over 1,000 different data maps, one per iteration.
fn render_bench(c: &mut Criterion) {
    let tpl = Template::parse(&template_20_lines_text()).expect("the template parses");
    let data: Vec<TemplateContext> = (0..1_000).map(template_data).collect();
    for (i, d) in data.iter().enumerate().step_by(97) {
        let out = tpl.render_at(d, 1_709_618_828, 0).expect("renders");
        let text = out.expose_str().expect("UTF-8");
        assert!(
            text.starts_with(&format!("[database]\nuser = u{i}\npassword = \"p-{i:05}-"))
                && text.contains("sslmode = require\n")
                && text.contains("registry1 = b.example.com\n")
                && text.ends_with("len = 40\n# end\n"),
            "the template renders as written"
        );
    }
    let mut g = c.benchmark_group("template");
    let mut i = 0;
    g.bench_function("render_20_lines", |b| {
        b.iter(|| {
            i = (i + 1) % data.len();
            tpl.render_at(black_box(&data[i]), 1_709_618_828, 0).expect("renders")
        })
    });
    g.finish();
}

struct Setup {
    manifests: Manifests,
    source: Arc<MemorySource>,
}

fn setup(n: usize) -> Setup {
    let manifests = load_str(&manifests_yaml(n), "bench.yaml")
        .into_result()
        .expect("bench manifests load");
    assert_eq!(manifests.external_secrets.len(), n);
    let source = Arc::new(MemorySource::new("memory"));
    for i in 0..n {
        source.set(
            &format!("app/s-{i:05}"),
            SecretValue::from(format!(
                r#"{{"user":"u{i}","password":"p-{i:05}-0123456789abcdef0123456789abcdef"}}"#
            )),
        );
    }
    Setup { manifests, source }
}

fn engine(s: &Setup, sink: Arc<MemorySink>) -> Engine {
    let mut stores = BTreeMap::new();
    let src: Arc<MemorySource> = s.source.clone();
    stores.insert(
        s.manifests.stores[0].id.clone(),
        BuiltStore {
            source: src,
            writer: None,
        },
    );
    Engine::new(stores, sink).with_fingerprint_key(FingerprintKey::from_bytes(vec![7; 32]).expect("32-byte key"))
}

fn benches(c: &mut Criterion) {
    let n = n();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let yaml = manifests_yaml(n);
    let s = setup(n);
    let opts = CycleOptions::default();

    // A synced engine: the checks here are what the bench relies on.
    let sink = Arc::new(MemorySink::new());
    let warm = engine(&s, sink.clone());
    let first = rt.block_on(warm.run(&s.manifests, &opts));
    assert!(first.all_synced(), "first cycle: {:?}", first.failed().next());
    assert_eq!(first.writes as usize, n, "first cycle writes every target");
    assert_eq!(first.values_read as usize, n, "first cycle reads each key once");
    let second = rt.block_on(warm.run(&s.manifests, &opts));
    assert_eq!(second.writes, 0, "unchanged cycle writes nothing");
    assert_eq!(second.values_read, 0, "unchanged cycle reads no value");

    let mut g = c.benchmark_group(format!("{n}_specs"));
    g.sample_size(10);

    g.bench_function("manifest/load", |b| {
        b.iter(|| load_str(black_box(&yaml), "bench.yaml").into_result().expect("loads"))
    });

    g.bench_function("engine/first_cycle", |b| {
        b.to_async(&rt).iter_batched(
            || engine(&s, Arc::new(MemorySink::new())),
            |e| {
                let m = &s.manifests;
                let o = &opts;
                async move {
                    let r = e.run(m, o).await;
                    debug_assert_eq!(r.writes as usize, n);
                    r
                }
            },
            BatchSize::PerIteration,
        )
    });

    g.bench_function("engine/unchanged_cycle", |b| {
        b.to_async(&rt).iter(|| async {
            let r = warm.run(&s.manifests, &opts).await;
            debug_assert_eq!(r.writes, 0);
            r
        })
    });

    let dry = CycleOptions {
        dry_run: true,
        ..Default::default()
    };
    g.bench_function("engine/plan", |b| b.to_async(&rt).iter(|| warm.run(&s.manifests, &dry)));

    // The same unchanged cycle with a 20-line template rendered for every spec.
    let templated = load_str(&templated_yaml(n), "bench.yaml")
        .into_result()
        .expect("templated manifests load");
    assert_eq!(templated.external_secrets.len(), n);
    let tsink = Arc::new(MemorySink::new());
    let twarm = engine(&s, tsink.clone());
    let first = rt.block_on(twarm.run(&templated, &opts));
    assert!(first.all_synced(), "templated first cycle: {:?}", first.failed().next());
    let rendered = tsink.get(&tsink.targets()[0]).expect("a target");
    let ini = rendered.data.get("app.ini").expect("the template rendered");
    let text = ini.expose_str().expect("UTF-8");
    assert!(
        text.starts_with("[database]\nuser = u") && text.contains("sslmode = require\n") && text.ends_with("# end\n"),
        "the template rendered as written"
    );
    assert_eq!(
        rt.block_on(twarm.run(&templated, &opts)).writes,
        0,
        "unchanged templated cycle writes nothing"
    );
    g.bench_function("engine/unchanged_cycle_templated", |b| {
        b.to_async(&rt).iter(|| async {
            let r = twarm.run(&templated, &opts).await;
            debug_assert_eq!(r.writes, 0);
            r
        })
    });

    // What the sink holds, and the desired state rebuilt from it, for fingerprint and diff.
    let key = FingerprintKey::from_bytes(vec![7; 32]).expect("32-byte key");
    let held: Vec<(DesiredTarget, TargetState)> = sink
        .targets()
        .into_iter()
        .map(|t| {
            let cur = sink.get(&t).expect("target held");
            let d = DesiredTarget {
                target: t,
                data: cur.data.clone(),
                secret_type: cur.secret_type.clone(),
                labels: cur.labels.clone(),
                annotations: cur.annotations.clone(),
                creation_policy: CreationPolicy::Owner,
                deletion_policy: DeletionPolicy::Retain,
                immutable: false,
                owner: None,
                fingerprint: key.fingerprint(&cur.data, &[]),
            };
            (d, cur)
        })
        .collect();
    assert_eq!(held.len(), n);
    let maps: Vec<&SecretMap> = held.iter().map(|(d, _)| &d.data).collect();
    g.bench_function("fingerprint", |b| {
        b.iter(|| {
            maps.iter()
                .map(|m| key.fingerprint(black_box(m), &[("type", "Opaque")]))
                .collect::<Vec<_>>()
        })
    });
    let caps = sink.capabilities();
    assert!(held.iter().all(|(d, cur)| target_matches(d, cur, &caps)));
    g.bench_function("diff", |b| {
        b.iter(|| {
            held.iter()
                .filter(|(d, cur)| target_matches(black_box(d), black_box(cur), &caps))
                .count()
        })
    });
    g.finish();
}

criterion_group!(engine_benches, render_bench, benches);
criterion_main!(engine_benches);
