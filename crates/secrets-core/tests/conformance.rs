//! The conformance suites against every built-in source and sink, directly and through
//! `Box<dyn>` and `Arc<dyn>`.

use std::sync::Arc;

use secretsync_core::sinks::{DotenvSink, FolderSink};
use secretsync_core::sources::{FileFormat, FileSource, MemorySource};
use secretsync_core::testkit::conformance::{run_sink_suite, run_source_suite};
use secretsync_core::testkit::{MemorySink, unique_prefix};
use secretsync_core::{SecretSink, SecretWriter};

#[tokio::test]
async fn memory_and_fake_source_pass_every_behaviour() {
    let s = MemorySource::new("fake");
    assert_eq!(
        run_source_suite(&s, &unique_prefix("mem")).await,
        12,
        "every behaviour applies to the in-memory store"
    );
    let boxed: Box<dyn SecretWriter> = Box::new(MemorySource::new("fake"));
    assert_eq!(run_source_suite(boxed.as_ref(), &unique_prefix("box")).await, 12);
    let arc: Arc<dyn SecretWriter> = Arc::new(MemorySource::new("fake"));
    assert_eq!(
        run_source_suite(&arc, &unique_prefix("arc")).await,
        12,
        "Arc<dyn SecretWriter> is itself a SecretWriter"
    );
}

#[tokio::test]
async fn file_source_passes_for_each_format() {
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [
        ("s.yaml", FileFormat::Yaml),
        ("s.json", FileFormat::Json),
        (".env", FileFormat::Dotenv),
    ] {
        let s = FileSource::new(dir.path().join(name), format);
        // No versions, tokens or tags: get, missing, many, large, find x2, put, property, canary.
        assert_eq!(run_source_suite(&s, &unique_prefix("file")).await, 9, "{name}");
        let boxed: Box<dyn SecretWriter> = Box::new(FileSource::new(dir.path().join(format!("b-{name}")), format));
        assert_eq!(run_source_suite(boxed.as_ref(), &unique_prefix("file")).await, 9);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} is written owner-only");
        }
    }
}

#[tokio::test]
async fn folder_and_memory_sinks_pass_every_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let folder = FolderSink::new(dir.path());
    assert_eq!(run_sink_suite(&folder, "ns", &unique_prefix("f")).await, 9);
    let boxed: Box<dyn SecretSink> = Box::new(FolderSink::new(dir.path().join("boxed")));
    assert_eq!(run_sink_suite(boxed.as_ref(), "ns", &unique_prefix("b")).await, 9);
    let arc: Arc<dyn SecretSink> = Arc::new(MemorySink::new());
    assert_eq!(run_sink_suite(&arc, "ns", &unique_prefix("m")).await, 9);
}

#[tokio::test]
async fn dotenv_sink_passes_what_applies() {
    let dir = tempfile::tempdir().unwrap();
    let sink = DotenvSink::new(format!("{}/{{namespace}}/{{name}}.env", dir.path().display()));
    // No merge, no metadata, no binary: read-missing, create, replace, none, delete, canary,
    // compare.
    assert_eq!(run_sink_suite(&sink, "ns", &unique_prefix("d")).await, 7);
    let arc: Arc<dyn SecretSink> = Arc::new(sink);
    assert_eq!(run_sink_suite(&arc, "ns2", &unique_prefix("d")).await, 7);
}
