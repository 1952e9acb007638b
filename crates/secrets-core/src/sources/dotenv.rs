//! Dotenv files, as the `file` provider reads and writes them. The codec lives in
//! [`crate::format::dotenv`]; these are its entry points under their earlier names.

use crate::error::Result;
use crate::format::dotenv::{self as codec, Keys};
use crate::value::SecretMap;

pub use crate::format::dotenv::parse;

/// Writes a map as dotenv text (keys: letters, digits, `_`, `.`, `-`), quoted so that `sh`
/// and python-dotenv read back the same bytes. See [`crate::format::dotenv`].
pub fn render(map: &SecretMap) -> Result<zeroize::Zeroizing<String>> {
    codec::render_with(map, "", Keys::Relaxed)
}
