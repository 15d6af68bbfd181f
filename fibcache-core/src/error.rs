//! The one error type of `fibcache-core`, shared by caches and the registry.
//!
//! It lives here, not in each backend, so that the server can tell "not cached" from "the
//! backend failed" without knowing which client library a backend uses: a backend's own error
//! travels boxed in [`Error::Backend`].

/// A boxed error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a cache operation or in choosing a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key has no value.
    #[error("key not found")]
    NotFound,

    /// The key had a value whose lifetime is over; the value is gone now.
    #[error("key expired")]
    Expired,

    /// The backend itself failed (connection refused, timeout, protocol error, ...).
    #[error("backend `{backend}` failed")]
    Backend {
        /// The backend's registered name.
        backend: String,
        /// What its client library reported.
        #[source]
        source: BoxError,
    },

    /// A backend's configuration is wrong: the operator has to change a setting.
    #[error("backend `{backend}` is misconfigured: {message}")]
    Config {
        /// The backend's registered name.
        backend: String,
        /// What is wrong and which setting to change.
        message: String,
    },

    /// No backend is registered under this name.
    #[error("unknown backend `{name}`; available: {available}")]
    UnknownBackend {
        /// The name that was asked for.
        name: String,
        /// The registered names, comma-separated and sorted.
        available: String,
    },

    /// The backend exists but this binary was built without the feature that provides it.
    #[error("backend `{name}` is not compiled in; rebuild with `--features {feature}` (available: {available})")]
    NotCompiledIn {
        /// The name that was asked for.
        name: String,
        /// The Cargo feature of the `fibcache` package that compiles it in.
        feature: String,
        /// The registered names, comma-separated and sorted.
        available: String,
    },

    /// Two registrations claim the same name; neither is picked silently.
    #[error("backend `{name}` is registered twice: by {first} and by {second}")]
    DuplicateBackend {
        /// The contested name.
        name: String,
        /// Where the first registration came from.
        first: String,
        /// Where the second registration came from.
        second: String,
    },
}

impl Error {
    /// Wraps a client library's error as a failure of the backend `backend`.
    pub fn backend(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend: backend.into(),
            source: source.into(),
        }
    }

    /// Whether this error only says that there is no usable value (not found or expired).
    pub fn is_miss(&self) -> bool {
        matches!(self, Error::NotFound | Error::Expired)
    }
}
