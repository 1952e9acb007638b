//! Built-in sources: ESO's `fake` provider, the local `file` provider, and the in-memory
//! store behind them.

pub mod dotenv;
mod fake;
mod file;
pub mod memory;

pub use fake::{FakeFactory, FakeSource};
pub use file::{FileFactory, FileFormat, FileSource};
pub use memory::MemorySource;
