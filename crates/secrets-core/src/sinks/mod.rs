//! Built-in sinks: a folder of Kubernetes manifests, dotenv files, stdout, memory.

mod dotenv;
mod folder;
mod manifest;
mod memory;
mod stdout;

pub use dotenv::DotenvSink;
pub use folder::{FolderSink, merged_state};
pub use manifest::{parse_manifest, render_manifest};
pub use memory::MemorySink;
pub use stdout::StdoutSink;

// Atomic file writes live in `crate::files` (sources write files too); re-exported here.
pub(crate) use crate::files::remove_file;
pub use crate::files::{STALE_TEMP_AGE, TEMP_PREFIX, atomic_write};

use crate::error::{Error, Result};

/// The creation-policy and immutability rules every sink applies before writing:
/// `Ok(Some(Unchanged))` for creationPolicy None, NotFound for Merge into a missing target,
/// Conflict for an immutable target, `Ok(None)` to go on and write.
pub fn precheck(
    desired: &crate::sink::DesiredTarget,
    current: Option<&crate::sink::TargetState>,
) -> Result<Option<crate::sink::ApplyOutcome>> {
    use crate::sink::{ApplyOutcome, CreationPolicy};
    match (desired.creation_policy, current) {
        (CreationPolicy::None, _) => Ok(Some(ApplyOutcome::Unchanged)),
        (CreationPolicy::Merge, None) => Err(Error::not_found(format!(
            "{} (creationPolicy Merge only updates an existing target)",
            desired.target
        ))),
        (_, Some(cur)) if cur.immutable => Err(Error::Conflict {
            what: format!("{} is immutable; delete it to change its data", desired.target),
        }),
        _ => Ok(None),
    }
}
