//! The two error types of `fibcache-core`: [`Error`], what one cache operation can fail with,
//! and [`RegistryError`], what choosing or creating a backend can fail with.
//!
//! They are separate because their callers are: a request path treats every [`Error`] like a
//! miss and goes on, asking only [`Error::is_unavailable`] to decide whether to skip the store
//! for a moment; start-up turns a [`RegistryError`] into a one-line message and an exit status.
//!
//! Both are structs with a `#[non_exhaustive]` kind and accessors, so that kinds and context can
//! be added without breaking a caller. A miss is `Ok(None)`, never an error. A backend's own
//! failure travels boxed as the [`source`](std::error::Error::source), so that this crate never
//! depends on a backend's client library.

use std::fmt;

/// A boxed error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store could not be reached or did not answer in time (connection refused or lost, a
    /// timeout). Asking again at once is unlikely to help: callers skip the store for a moment.
    Unavailable,
    /// The store answered, with a failure (an error reply, a value it cannot decode, ...).
    Backend,
    /// The backend's configuration is wrong: the operator has to change a setting.
    Config,
}

/// A failed cache operation (or backend creation), with the backend's name and why.
///
/// ```
/// use fibcache_core::{Error, ErrorKind};
///
/// let err = Error::unavailable("redis", "connection refused");
/// assert!(err.is_unavailable());
/// assert_eq!(err.kind(), ErrorKind::Unavailable);
/// assert_eq!(err.backend_name(), "redis");
/// assert_eq!(err.to_string(), "backend `redis` is unavailable");
/// // The cause is the source, as `anyhow`'s `{:#}` shows it.
/// let cause = std::error::Error::source(&err).unwrap();
/// assert_eq!(cause.to_string(), "connection refused");
///
/// let err = Error::config("redis", "REDIS_DB must be a number");
/// assert_eq!(err.to_string(), "backend `redis` is misconfigured: REDIS_DB must be a number");
/// ```
pub struct Error {
    kind: ErrorKind,
    /// The backend's registered name.
    backend: String,
    /// For [`ErrorKind::Config`]: what is wrong and which setting to change.
    message: Option<String>,
    /// What the backend's client library reported.
    source: Option<BoxError>,
}

impl Error {
    /// A failure of the backend `backend` whose store answered ([`ErrorKind::Backend`]).
    pub fn backend(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error {
            kind: ErrorKind::Backend,
            backend: backend.into(),
            message: None,
            source: Some(source.into()),
        }
    }

    /// The backend `backend` could not reach its store ([`ErrorKind::Unavailable`]).
    pub fn unavailable(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error {
            kind: ErrorKind::Unavailable,
            backend: backend.into(),
            message: None,
            source: Some(source.into()),
        }
    }

    /// A setting of the backend `backend` that the operator has to change
    /// ([`ErrorKind::Config`]).
    pub fn config(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Config,
            backend: backend.into(),
            message: Some(message.into()),
            source: None,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the store could not be reached or did not answer: callers skip it for a moment
    /// rather than wait on it again at once.
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    /// Whether the operator has to change a setting.
    pub fn is_config(&self) -> bool {
        self.kind == ErrorKind::Config
    }

    /// The registered name of the backend that failed.
    pub fn backend_name(&self) -> &str {
        &self.backend
    }

    /// For a configuration error, what is wrong and which setting to change.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// This error and its sources joined with `": "`, as `anyhow`'s `{:#}` writes them: the
    /// one line a log or another process gets.
    pub fn chain(&self) -> String {
        chain(self)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = &self.backend;
        match self.kind {
            ErrorKind::Unavailable => write!(f, "backend `{backend}` is unavailable"),
            ErrorKind::Backend => write!(f, "backend `{backend}` failed"),
            ErrorKind::Config => write!(
                f,
                "backend `{backend}` is misconfigured: {}",
                self.message.as_deref().unwrap_or("")
            ),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("backend", &self.backend)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// `err` and its sources, joined with `": "`.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What kind of failure a [`RegistryError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegistryErrorKind {
    /// No backend is registered under the name.
    Unknown,
    /// The backend exists, but the crate that provides it was built without its Cargo feature.
    NotCompiledIn,
    /// Two registrations claim one name; neither is picked silently.
    Duplicate,
    /// The backend's factory failed; [`RegistryError::cause`] says why.
    Create,
}

/// Choosing or creating a backend failed: an unknown or missing name, a name registered twice,
/// or a factory that failed. Its message names the fix.
///
/// ```
/// use fibcache_core::{Registry, RegistryErrorKind};
///
/// let registry = Registry::new()?;
/// let err = registry.get("memcached").unwrap_err();
/// assert_eq!(err.kind(), RegistryErrorKind::Unknown);
/// assert_eq!(err.name(), "memcached");
/// assert!(err.available().iter().any(|name| name == "nop"));
/// assert!(err.to_string().starts_with("unknown backend `memcached`; available: "));
/// # Ok::<(), fibcache_core::RegistryError>(())
/// ```
#[derive(Debug)]
pub struct RegistryError(Box<RegistryErrorInner>);

/// What a [`RegistryError`] holds, boxed: errors travel in `Result`s on the happy path's
/// stack.
#[derive(Debug)]
struct RegistryErrorInner {
    kind: RegistryErrorKind,
    /// The name asked for, or the contested one.
    name: String,
    /// The registered names, sorted (for `Unknown` and `NotCompiledIn`).
    available: Vec<String>,
    /// `NotCompiledIn`: the feature that provides the backend, as `--features` takes it.
    /// `Duplicate`: where the two registrations come from.
    detail: (String, String),
    /// `Create`: the factory's error.
    cause: Option<Error>,
}

impl RegistryError {
    pub(crate) fn unknown(name: &str, available: Vec<String>) -> Self {
        RegistryError(Box::new(RegistryErrorInner {
            kind: RegistryErrorKind::Unknown,
            name: name.to_owned(),
            available,
            detail: Default::default(),
            cause: None,
        }))
    }

    pub(crate) fn not_compiled_in(name: &str, feature: &str, available: Vec<String>) -> Self {
        RegistryError(Box::new(RegistryErrorInner {
            kind: RegistryErrorKind::NotCompiledIn,
            name: name.to_owned(),
            available,
            detail: (feature.to_owned(), String::new()),
            cause: None,
        }))
    }

    pub(crate) fn duplicate(name: &str, first: String, second: String) -> Self {
        let (first, second) = if first <= second {
            (first, second)
        } else {
            (second, first)
        };
        RegistryError(Box::new(RegistryErrorInner {
            kind: RegistryErrorKind::Duplicate,
            name: name.to_owned(),
            available: Vec::new(),
            detail: (first, second),
            cause: None,
        }))
    }

    pub(crate) fn create(name: &str, cause: Error) -> Self {
        RegistryError(Box::new(RegistryErrorInner {
            kind: RegistryErrorKind::Create,
            name: name.to_owned(),
            available: Vec::new(),
            detail: Default::default(),
            cause: Some(cause),
        }))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> RegistryErrorKind {
        self.0.kind
    }

    /// The backend name asked for (or, for a duplicate, the contested one).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The names that are registered, sorted, for an unknown or missing name; empty otherwise.
    pub fn available(&self) -> &[String] {
        &self.0.available
    }

    /// For a backend that is not compiled in: the Cargo feature that provides it, as
    /// `cargo build --features` takes it (`fibcache-backends/redis`).
    pub fn feature(&self) -> Option<&str> {
        (self.0.kind == RegistryErrorKind::NotCompiledIn).then_some(self.0.detail.0.as_str())
    }

    /// For a duplicate name: the origins of the two registrations, sorted.
    pub fn origins(&self) -> Option<(&str, &str)> {
        (self.0.kind == RegistryErrorKind::Duplicate)
            .then_some((self.0.detail.0.as_str(), self.0.detail.1.as_str()))
    }

    /// For a factory that failed: its error.
    pub fn cause(&self) -> Option<&Error> {
        self.0.cause.as_ref()
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.0.name;
        let available = self.0.available.join(", ");
        match self.0.kind {
            RegistryErrorKind::Unknown => write!(
                f,
                "unknown backend `{name}`; available: {available} (a backend registered in a \
                 library crate must be referenced by the binary: `use that_crate as _;`, or \
                 added with `Registry::with`)"
            ),
            RegistryErrorKind::NotCompiledIn => write!(
                f,
                "backend `{name}` is not compiled in; rebuild with `--features {}` (available: \
                 {available})",
                self.0.detail.0
            ),
            RegistryErrorKind::Duplicate => write!(
                f,
                "backend `{name}` is registered twice: by {} and by {}",
                self.0.detail.0, self.0.detail.1
            ),
            // The factory's error already names the backend; its sources follow with `{:#}`.
            RegistryErrorKind::Create => match &self.0.cause {
                Some(cause) => fmt::Display::fmt(cause, f),
                None => write!(f, "backend `{name}` could not be created"),
            },
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // A creation error shows as its cause (see `Display`), so what follows it is the
        // cause's own source.
        self.0
            .cause
            .as_ref()
            .and_then(|cause| std::error::Error::source(cause))
    }
}
