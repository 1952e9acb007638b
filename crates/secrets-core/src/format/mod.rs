//! Text formats secretsync reads and writes, each in one place so every reader and writer
//! agrees: [`dotenv`] (the dotenv sink and the `file` provider's dotenv files).

pub mod dotenv;
