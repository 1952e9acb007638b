//! Built-in sources: ESO's `fake` provider, the local `file` provider, and the in-memory
//! store behind them.

pub mod dotenv;
mod fake;
mod file;
pub mod memory;

pub use fake::{FakeData, FakeFactory, FakeProvider, FakeSource, fake_source};
pub use file::{FileFactory, FileFormat, FileProvider, FileSource};
pub use memory::MemorySource;

// The built-in providers register themselves: the registry knows no provider by name.
impl crate::registry::Registry {
    /// A registry with the built-in providers: `fake` and `file`.
    pub fn with_builtin() -> Self {
        let mut r = Self::empty();
        r.register(std::sync::Arc::new(FakeFactory));
        r.register(std::sync::Arc::new(FileFactory));
        r
    }
}

impl Default for crate::registry::Registry {
    fn default() -> Self {
        Self::with_builtin()
    }
}
