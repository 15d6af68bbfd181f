//! Reloading plugin files: what a reload did with each file, and the content hash that tells a
//! changed file from an unchanged one. Shared by native plugins (`plugin::Plugins`, feature
//! `plugin`) and WebAssembly components (`fibcache_wasm::Plugins`), so that a server handles
//! both alike.
//!
//! ```
//! use fibcache_core::reload::{ContentHash, ReloadOutcome};
//!
//! let hash = ContentHash::of(b"abc");
//! assert_eq!(
//!     hash.to_string(),
//!     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
//! );
//! assert_eq!(ReloadOutcome::Unchanged.label(), "unchanged");
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What a reload did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// The content is what was loaded last: nothing done.
    Unchanged,
    /// The new version was loaded, checked and swapped in.
    Reloaded,
    /// The new version was refused (the reason, one line); the old one still serves.
    Failed(String),
}

impl ReloadOutcome {
    /// `unchanged`, `reloaded` or `failed`: the `outcome` label of a reload counter.
    pub fn label(&self) -> &'static str {
        match self {
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Reloaded => "reloaded",
            ReloadOutcome::Failed(_) => "failed",
        }
    }
}

/// One file's reload.
#[derive(Debug, Clone)]
pub struct Reload {
    /// The file as given when it was loaded.
    pub path: PathBuf,
    /// What happened.
    pub outcome: ReloadOutcome,
}

/// The SHA-256 of a plugin file's content, as loaded; shown as 64 lowercase hex digits (what
/// `sha256sum` prints for the file).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// A plugin file as it is loaded now: for an info series naming each plugin and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedFile {
    path: PathBuf,
    kind: &'static str,
    hash: ContentHash,
}

impl LoadedFile {
    /// The file at `path` (as given), of `kind` (`native` or `wasm`), whose loaded content
    /// hashes to `hash`.
    pub fn new(path: impl Into<PathBuf>, kind: &'static str, hash: ContentHash) -> Self {
        LoadedFile {
            path: path.into(),
            kind,
            hash,
        }
    }

    /// The file as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `native` (a shared library) or `wasm` (a WebAssembly component).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The hash of the content loaded.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }
}
