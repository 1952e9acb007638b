//! `rotate`: ensure and rotate the secrets of a plan, then sync and verify their targets —
//! the `secretsync rotate` subcommand, as a thin demo of the library.
//!
//! ```text
//! rotate --plan PLAN [--manifest PATH]... [--rotate] [--dry-run] [--yes]
//!        [--output DIR | --env-file PATH] [--format text|json]
//! ```

fn main() {
    secretsync::app::cli::main_with_subcommand("rotate")
}
