//! The backend registry: backends register by name at link time, the server picks one at run
//! time.
//!
//! A backend crate writes one [`register_backend!`](crate::register_backend) line; the macro
//! submits a [`Registration`] to [`inventory`], which collects every registration linked into
//! the binary before `main` runs. [`Registry::new`] reads them into a map, refusing duplicate
//! names, and accepts further backends at run time with [`Registry::add`] (this is how the
//! server's `dynamic` feature adds backends loaded from shared libraries to the same registry).
//!
//! # Guarantees and non-guarantees
//! - Listing is sorted by name; the order in which the linker visited registrations is
//!   unspecified and never decides anything.
//! - Two registrations of one name are an error ([`Error::DuplicateBackend`]), never resolved
//!   by whichever came first.
//! - A crate that nothing references may be dropped by the linker together with its
//!   registrations: a binary must reference every backend crate it wants (for example
//!   `use fibcache_backends as _;`).
//! - Platforms without life-before-main support (see `inventory`) find only what is added with
//!   [`Registry::add`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Cache, Error, Result};

/// What a backend factory receives: the settings every backend may read, plus named settings
/// specific to one backend (such as `REDIS_URL`).
///
/// It holds only what backends read. Entry lifetimes are not here: each
/// [`Cache::set`] carries its own. Neither is the key namespace: the caller
/// builds complete keys, so a backend stores keys exactly as given.
///
/// ```
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use fibcache_core::Config;
///
/// let config = Config::default()
///     .with_capacity(NonZeroUsize::new(500).unwrap())
///     .with_op_timeout(Duration::from_millis(100))
///     .with_max_value_len(NonZeroUsize::new(19).unwrap())
///     .with_var("REDIS_URL", "redis://127.0.0.1:6379");
/// assert_eq!(config.capacity().get(), 500);
/// assert_eq!(config.max_value_len().map(NonZeroUsize::get), Some(19));
/// assert_eq!(Config::default().max_value_len(), None);
/// assert_eq!(config.var("REDIS_URL").as_deref(), Some("redis://127.0.0.1:6379"));
/// ```
#[derive(Clone)]
pub struct Config {
    /// Most entries an in-process backend keeps (`--cache-capacity`).
    capacity: NonZeroUsize,
    /// Longest one operation may take before the caller counts it as failed
    /// (`--cache-timeout`).
    op_timeout: Duration,
    /// Longest stored value worth reading; `None`: no bound. Only a backend that can refuse a
    /// value without transferring it reads this, so that a huge value planted in a shared
    /// store costs the reader neither memory nor time.
    max_value_len: Option<NonZeroUsize>,
    /// Backend-specific settings set explicitly; looked up before the process environment.
    vars: BTreeMap<String, String>,
}

impl Default for Config {
    /// Capacity 10 000, operation timeout 250 ms, no bound on value sizes, no explicit
    /// settings.
    fn default() -> Self {
        Config {
            capacity: NonZeroUsize::new(10_000).expect("non-zero"),
            op_timeout: Duration::from_millis(250),
            max_value_len: None,
            vars: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Sets the most entries an in-process backend keeps.
    pub fn with_capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the longest one operation may take.
    pub fn with_op_timeout(mut self, op_timeout: Duration) -> Self {
        self.op_timeout = op_timeout;
        self
    }

    /// Bounds the length of the values worth reading: a backend that can refuses a stored value
    /// longer than `max` bytes without transferring it (an [`Error::Backend`] naming the
    /// length), so a planted huge value costs neither memory nor time. Backends that hold only
    /// what their caller wrote (`memory`, `nop`) ignore it.
    pub fn with_max_value_len(mut self, max: NonZeroUsize) -> Self {
        self.max_value_len = Some(max);
        self
    }

    /// Sets a backend-specific setting, taking precedence over the environment variable of the
    /// same name. An empty value hides the environment variable.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Most entries an in-process backend keeps (`--cache-capacity`).
    pub fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }

    /// Longest one operation may take before the caller counts it as failed
    /// (`--cache-timeout`). A backend with client timeouts of its own sets them to this.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// The longest stored value a backend should read, if bounded (see
    /// [`Config::with_max_value_len`]); `None`, the default, means no bound.
    pub fn max_value_len(&self) -> Option<NonZeroUsize> {
        self.max_value_len
    }

    /// Returns a backend-specific setting: the value set with [`Config::with_var`], else the
    /// process environment variable `name`, else `None` (an empty value counts as unset).
    pub fn var(&self, name: &str) -> Option<String> {
        match self.vars.get(name) {
            Some(value) => Some(value.clone()),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
    }

    /// The settings set explicitly with [`Config::with_var`], in name order.
    #[cfg_attr(not(feature = "plugin"), allow(dead_code))]
    pub(crate) fn explicit_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for Config {
    // Backend settings may hold passwords (`REDIS_URL`), so only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("capacity", &self.capacity)
            .field("op_timeout", &self.op_timeout)
            .field("max_value_len", &self.max_value_len)
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The future a factory returns: a ready cache, or why it could not be built.
#[doc(hidden)]
pub type FactoryFuture<'a> = Pin<Box<dyn Future<Output = Result<Arc<dyn Cache>>> + Send + 'a>>;

/// A factory function as stored in a static [`Registration`].
#[doc(hidden)]
pub type FactoryFn = for<'a> fn(&'a Config) -> FactoryFuture<'a>;

/// A factory added at run time, which may carry state (such as a loaded library).
pub type DynFactory = Arc<dyn for<'a> Fn(&'a Config) -> FactoryFuture<'a> + Send + Sync>;

/// Where a backend comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Compiled into the binary by the named crate.
    Static {
        /// The crate (`CARGO_PKG_NAME`) that registered it.
        krate: &'static str,
    },
    /// Loaded at run time from a shared library.
    Plugin {
        /// The library's path as given on the command line.
        path: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Static { krate } => write!(f, "static:{krate}"),
            Origin::Plugin { path } => write!(f, "plugin:{path}"),
        }
    }
}

/// One backend as submitted to `inventory` by [`register_backend!`](crate::register_backend).
///
/// Build it with the macro rather than by hand.
#[doc(hidden)]
pub struct Registration {
    pub(crate) name: &'static str,
    pub(crate) summary: &'static str,
    /// The crate (`CARGO_PKG_NAME`) whose `register_backend!` line made this registration; a
    /// plugin exports only the registrations of the crate that invokes `export_plugin!`.
    pub(crate) krate: &'static str,
    pub(crate) factory: FactoryFn,
}

impl Registration {
    /// A registration; `const` so that it can be a static `inventory` entry.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        summary: &'static str,
        krate: &'static str,
        factory: FactoryFn,
    ) -> Self {
        Registration {
            name,
            summary,
            krate,
            factory,
        }
    }

    /// Every registration linked into this binary (or, inside a plugin, into that library), in
    /// unspecified order.
    pub(crate) fn all() -> impl Iterator<Item = &'static Registration> {
        inventory::iter::<Registration>.into_iter()
    }
}

inventory::collect!(Registration);

/// A backend the registry can create.
#[derive(Clone)]
pub struct Backend {
    name: String,
    summary: String,
    origin: Origin,
    factory: DynFactory,
}

impl Backend {
    /// A backend added at run time.
    pub fn new(
        name: impl Into<String>,
        summary: impl Into<String>,
        origin: Origin,
        factory: DynFactory,
    ) -> Self {
        Backend {
            name: name.into(),
            summary: summary.into(),
            origin,
            factory,
        }
    }

    /// The name the backend is selected by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its one-line summary.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// Where it comes from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Builds a ready cache from `config`.
    ///
    /// # Errors
    /// Whatever the factory reports, typically [`Error::Config`] or [`Error::Backend`].
    pub async fn create(&self, config: &Config) -> Result<Arc<dyn Cache>> {
        (self.factory)(config).await
    }
}

impl From<&'static Registration> for Backend {
    fn from(reg: &'static Registration) -> Self {
        let factory = reg.factory;
        Backend {
            name: reg.name.to_owned(),
            summary: reg.summary.to_owned(),
            origin: Origin::Static { krate: reg.krate },
            factory: Arc::new(move |config| factory(config)),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("summary", &self.summary)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The backends this process can create, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    backends: BTreeMap<String, Backend>,
    /// Names of backends that exist but are not compiled in, with the feature that adds them,
    /// so that asking for one says how to get it instead of "unknown".
    optional: BTreeMap<String, String>,
}

impl Registry {
    /// Collects every backend registered with [`register_backend!`](crate::register_backend)
    /// in this binary.
    ///
    /// # Errors
    /// [`Error::DuplicateBackend`] when two registrations share a name.
    pub fn new() -> Result<Self> {
        let mut registry = Registry::default();
        for reg in Registration::all() {
            registry.add(Backend::from(reg))?;
        }
        Ok(registry)
    }

    /// Adds a backend, for example one loaded from a plugin.
    ///
    /// # Errors
    /// [`Error::DuplicateBackend`] when the name is taken; the registry is unchanged.
    pub fn add(&mut self, backend: Backend) -> Result<()> {
        if let Some(existing) = self.backends.get(&backend.name) {
            let (first, second) = ordered(existing.origin.to_string(), backend.origin.to_string());
            return Err(Error::DuplicateBackend {
                name: backend.name,
                first,
                second,
            });
        }
        self.backends.insert(backend.name.clone(), backend);
        Ok(())
    }

    /// Records that a backend `name` exists behind the Cargo feature `feature`; used only to
    /// word the error when it is asked for but not compiled in.
    pub fn note_optional(&mut self, name: &str, feature: &str) {
        self.optional.insert(name.to_owned(), feature.to_owned());
    }

    /// The backends, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Backend> {
        self.backends.values()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.backends.keys().map(String::as_str).collect()
    }

    /// Whether a backend of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.backends.contains_key(name)
    }

    /// Looks a backend up by name.
    ///
    /// # Errors
    /// [`Error::NotCompiledIn`] for a known backend whose feature is off,
    /// [`Error::UnknownBackend`] for any other unregistered name.
    pub fn get(&self, name: &str) -> Result<&Backend> {
        if let Some(backend) = self.backends.get(name) {
            return Ok(backend);
        }
        let available = self.names().join(", ");
        Err(match self.optional.get(name) {
            Some(feature) => Error::NotCompiledIn {
                name: name.to_owned(),
                feature: feature.clone(),
                available,
            },
            None => Error::UnknownBackend {
                name: name.to_owned(),
                available,
            },
        })
    }

    /// Creates the backend `name` from `config`.
    ///
    /// # Errors
    /// Those of [`Registry::get`], then whatever the backend's factory reports.
    pub async fn create(&self, name: &str, config: &Config) -> Result<Arc<dyn Cache>> {
        self.get(name)?.create(config).await
    }
}

fn ordered(a: String, b: String) -> (String, String) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Registers a backend so that it can be selected by name.
///
/// `factory` is a path to an `async fn(&Config) -> Result<T>` where `T: Cache`. The macro may be
/// used in any crate that depends on `fibcache-core`; the registration exists as soon as that
/// crate is linked into the binary.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use fibcache_core::{async_trait, register_backend, Cache, Config, Result};
///
/// struct Forgetful;
///
/// #[async_trait]
/// impl Cache for Forgetful {
///     async fn get(&self, _key: &str) -> Result<Option<String>> {
///         Ok(None)
///     }
///     async fn set(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// async fn create(_config: &Config) -> Result<Forgetful> {
///     Ok(Forgetful)
/// }
///
/// register_backend! {
///     name: "forgetful",
///     summary: "forgets everything",
///     factory: create,
/// }
///
/// let registry = fibcache_core::Registry::new().unwrap();
/// assert!(registry.names().contains(&"forgetful"));
/// ```
#[macro_export]
macro_rules! register_backend {
    (name: $name:expr, summary: $summary:expr, factory: $factory:path $(,)?) => {
        const _: () = {
            fn __fibcache_factory(config: &$crate::Config) -> $crate::registry::FactoryFuture<'_> {
                ::std::boxed::Box::pin(async move {
                    let cache = $factory(config).await?;
                    let cache: ::std::sync::Arc<dyn $crate::Cache> = ::std::sync::Arc::new(cache);
                    ::std::result::Result::Ok(cache)
                })
            }
            $crate::__private::inventory::submit! {
                $crate::registry::Registration::new(
                    $name,
                    $summary,
                    ::std::env!("CARGO_PKG_NAME"),
                    __fibcache_factory,
                )
            }
        };
    };
}
