//! `secretsync`: sync, check, rotate, run, operator, completions. See `secretsync --help`
//! and the README; the code is [`secretsync::app::cli`].

fn main() {
    secretsync::app::cli::main()
}
