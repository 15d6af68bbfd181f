//! The one error type of `fibcache-core`, shared by caches and the registry.
//!
//! It holds failures only: a cache miss is `Ok(None)`, not an error. It lives here, not in
//! each backend, so that the server can tell "the store is unreachable" from "the store
//! answered with a failure" without knowing which client library a backend uses: a backend's
//! own error travels boxed as the `source`.

/// A boxed error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a cache operation or in choosing a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be reached or did not answer in time (connection refused or lost,
    /// a timeout). Asking again at once is unlikely to help: callers skip the store for a
    /// moment.
    #[error("backend `{backend}` is unavailable")]
    Unavailable {
        /// The backend's registered name.
        backend: String,
        /// What its client library reported.
        #[source]
        source: BoxError,
    },

    /// The store answered, with a failure (an error reply, a value it cannot decode, ...).
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
    /// A failure of the backend `backend` whose store answered (see [`Error::Backend`]).
    pub fn backend(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend: backend.into(),
            source: source.into(),
        }
    }

    /// The backend `backend` could not reach its store (see [`Error::Unavailable`]).
    pub fn unavailable(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            backend: backend.into(),
            source: source.into(),
        }
    }

    /// A setting of the backend `backend` that the operator has to change (see
    /// [`Error::Config`]).
    pub fn config(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            backend: backend.into(),
            message: message.into(),
        }
    }
}
