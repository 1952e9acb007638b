//! Built-in sources: ESO's `fake` provider, the local `file` provider, and the in-memory
//! store behind them.

pub mod dotenv;
mod fake;
mod file;
pub mod memory;

pub use fake::{FakeData, FakeFactory, FakeProvider, FakeSource, fake_source};
pub use file::{FileFactory, FileFormat, FileProvider, FileSource};
pub use memory::MemorySource;
