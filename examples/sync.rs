//! `sync`: keep targets in sync with ESO manifests — the `secretsync sync` subcommand,
//! as a thin demo of the library (`secretsync::app`).
//!
//! ```text
//! sync --manifest PATH [--manifest PATH]... [--once] [--dry-run] [--check]
//!      [--output DIR | --env-file PATH | --stdout] [--format text|json] [--quiet] [--verbose]
//! ```
//! Exit codes: 0 all synced, 1 some spec failed, 2 bad arguments or manifests.

fn main() {
    secretsync::app::cli::main_with_subcommand("sync")
}
