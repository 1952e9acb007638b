//! `run`: run a command with the specs' values as environment variables, writing nothing
//! to disk — the `secretsync run` subcommand, as a thin demo of the library.
//!
//! ```text
//! run --manifest PATH... [--watch] [--redact] [--interval SECONDS] -- CMD ARGS
//! ```

fn main() {
    secretsync::app::cli::main_with_subcommand("run")
}
