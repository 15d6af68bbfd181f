//! [`LoadError`]: why a plugin library was refused, each message naming the library and the
//! fix.

use super::abi::{ABI_VERSION, HANDSHAKE_SYMBOL};

/// Why a plugin library was refused: one line naming the library and the fix
/// (`Display`), its [`kind`](LoadError::kind), and the [`path`](LoadError::path) as given.
#[derive(Debug)]
pub struct LoadError(Box<Refusal>);

/// What kind of refusal a [`LoadError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// Nothing exists at the path.
    NotFound,
    /// The platform's loader refused the file.
    NotALibrary,
    /// A shared library without a fibcache handshake.
    NotAPlugin,
    /// A plugin built for another plugin ABI.
    Incompatible,
    /// A plugin built with `panic = "abort"`, whose panics could not be caught.
    PanicAbort,
    /// A function table smaller than this ABI version's mandatory part.
    TableTooSmall,
    /// A count or a length past its bound, or a string that cannot be read.
    Malformed,
    /// The plugin's `init` failed, or it cannot describe a backend.
    Init,
    /// The plugin exports no backend.
    NoBackends,
    /// A backend name the registry already has.
    NameTaken,
}

impl LoadError {
    /// What kind of refusal this is.
    pub fn kind(&self) -> LoadErrorKind {
        match &*self.0 {
            Refusal::NotFound { .. } => LoadErrorKind::NotFound,
            Refusal::NotALibrary { .. } => LoadErrorKind::NotALibrary,
            Refusal::NotAPlugin { .. } => LoadErrorKind::NotAPlugin,
            Refusal::Incompatible { .. } => LoadErrorKind::Incompatible,
            Refusal::PanicAbort { .. } => LoadErrorKind::PanicAbort,
            Refusal::TableTooSmall { .. } => LoadErrorKind::TableTooSmall,
            Refusal::Malformed { .. } => LoadErrorKind::Malformed,
            Refusal::Init { .. } => LoadErrorKind::Init,
            Refusal::NoBackends { .. } => LoadErrorKind::NoBackends,
            Refusal::NameTaken { .. } => LoadErrorKind::NameTaken,
        }
    }

    /// The library's path, as given.
    pub fn path(&self) -> &str {
        match &*self.0 {
            Refusal::NotFound { path, .. }
            | Refusal::NotALibrary { path, .. }
            | Refusal::NotAPlugin { path, .. }
            | Refusal::Incompatible { path, .. }
            | Refusal::PanicAbort { path, .. }
            | Refusal::TableTooSmall { path, .. }
            | Refusal::Malformed { path, .. }
            | Refusal::Init { path, .. }
            | Refusal::NoBackends { path, .. }
            | Refusal::NameTaken { path, .. } => path,
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for LoadError {}

impl From<Refusal> for LoadError {
    fn from(refusal: Refusal) -> Self {
        LoadError(Box::new(refusal))
    }
}

/// Why a plugin library was refused, as the loader finds it; callers see it as a [`LoadError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// Nothing exists at the path.
    #[error("plugin `{path}` does not exist; pass the path of a built plugin library (for example target/release/examples/libmemcache_plugin.so)")]
    NotFound {
        /// The path as given.
        path: String,
    },

    /// The platform's loader refused the file.
    #[error("plugin `{path}` is not a loadable shared library ({reason}); build the plugin as a `cdylib` for this platform")]
    NotALibrary {
        /// The path as given.
        path: String,
        /// What the loader said.
        reason: String,
    },

    /// A shared library without a fibcache handshake.
    #[error("`{path}` is a shared library but not a fibcache plugin (no valid `{symbol}`); a plugin crate ends with `fibcache_core::export_plugin!();`", symbol = HANDSHAKE_SYMBOL)]
    NotAPlugin {
        /// The path as given.
        path: String,
    },

    /// A plugin built for another plugin ABI. The `fibcache-core` versions are there to name
    /// the fix: the ABI version alone decides, so a plugin built against another
    /// `fibcache-core` of the same ABI loads.
    #[error("plugin `{path}` was built for plugin ABI {plugin_abi} (fibcache-core {plugin_core}) but this fibcache speaks ABI {host_abi} (fibcache-core {host_core}); rebuild the plugin against fibcache-core {host_core}")]
    Incompatible {
        /// The path as given.
        path: String,
        /// The plugin's ABI version.
        plugin_abi: u32,
        /// The plugin's `fibcache-core` version.
        plugin_core: String,
        /// This binary's ABI version.
        host_abi: u32,
        /// This binary's `fibcache-core` version.
        host_core: String,
    },

    /// A plugin built with `panic = "abort"`, whose panics could not be caught.
    #[error("plugin `{path}` was built with panic=abort, so a panic in it would abort the server; rebuild it with panic=unwind (the default)")]
    PanicAbort {
        /// The path as given.
        path: String,
    },

    /// A plugin whose function table is smaller than this ABI version's mandatory part.
    #[error("plugin `{path}` has a function table of {size} bytes, fewer than the {required} of plugin ABI {abi}; rebuild it with `export_plugin!` against fibcache-core {core}", abi = ABI_VERSION, core = crate::VERSION)]
    TableTooSmall {
        /// The path as given.
        path: String,
        /// The size the plugin gave its table.
        size: usize,
        /// The least size this host reads.
        required: usize,
    },

    /// The library writes a count or a length past the bounds of the host (see
    /// [`MAX_BACKENDS`](super::MAX_BACKENDS) and the other bounds).
    #[error("plugin `{path}` is malformed: {reason}; fix the plugin and rebuild it")]
    Malformed {
        /// The path as given.
        path: String,
        /// What is out of bounds.
        reason: String,
    },

    /// The plugin's `init` failed.
    #[error("plugin `{path}` failed to start: {message}; fix the plugin and rebuild it")]
    Init {
        /// The path as given.
        path: String,
        /// What went wrong.
        message: String,
    },

    /// The plugin exports no backend.
    #[error("plugin `{path}` exports no backends; call `register_backend!` in the crate that calls `export_plugin!()`")]
    NoBackends {
        /// The path as given.
        path: String,
    },

    /// A backend name the registry already has.
    #[error("plugin `{path}` registers backend `{name}`, which is already taken by {taken_by}; rename the plugin's backend or drop one of the two")]
    NameTaken {
        /// The path as given.
        path: String,
        /// The contested name.
        name: String,
        /// The origin of the backend that has the name.
        taken_by: String,
    },
}
