//! The backend registry: backends register by name at link time, the server picks one at run
//! time.
//!
//! A backend crate writes one [`register_backend!`](crate::register_backend) line; the macro
//! submits the backend's [`Descriptor`] to [`inventory`], which collects every registration
//! linked into the binary before `main` runs. [`Registry::new`] reads them into a map, refusing
//! duplicate names, and accepts further backends at run time with [`Registry::add`] (this is
//! how the server's `dynamic` feature adds backends loaded from shared libraries to the same
//! registry).
//!
//! # The explicit path
//! A crate that nothing references may be dropped by the linker together with its
//! registrations, silently. So a backend can also be named: `register_backend!` with
//! `descriptor: pub NAME` makes its [`Descriptor`] a public static, and
//! [`Registry::with`]`(&that_crate::NAME)` adds it. The reference keeps the crate linked, and
//! adding a descriptor that `inventory` already found is not a duplicate (it is the same
//! static), so both paths may be used at once.
//!
//! # Guarantees and non-guarantees
//! - Listing is sorted by name; the order in which the linker visited registrations is
//!   unspecified and never decides anything.
//! - Two registrations of one name are an error ([`RegistryErrorKind::Duplicate`]), never
//!   resolved by whichever came first.
//! - A crate that nothing references may be dropped by the linker together with its
//!   registrations: a binary must reference every backend crate it wants (for example
//!   `use fibcache_backends as _;`), or add its descriptor with [`Registry::with`]. Asking for
//!   a name that is not registered says so ([`RegistryErrorKind::Unknown`]).
//! - Platforms without life-before-main support (see `inventory`) find only what is added with
//!   [`Registry::with`] and [`Registry::add`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

#[cfg(doc)]
use crate::error::RegistryErrorKind;
use crate::{Cache, RegistryError, Result};

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
/// // Bounded by default: a huge value planted in a shared store is never read whole.
/// assert_eq!(Config::default().max_value_len(), NonZeroUsize::new(1 << 20));
/// assert_eq!(config.var("REDIS_URL").as_deref(), Some("redis://127.0.0.1:6379"));
/// ```
#[derive(Clone)]
pub struct Config {
    /// Most entries an in-process backend keeps (`--cache-capacity`).
    capacity: NonZeroUsize,
    /// Longest one operation may take before the caller counts it as failed
    /// (`--cache-timeout`).
    op_timeout: Duration,
    /// Longest stored value worth reading ([`DEFAULT_MAX_VALUE_LEN`] unless set); `None`: no
    /// bound. Only a backend that can refuse a value without transferring it reads this, so
    /// that a huge value planted in a shared store costs the reader neither memory nor time.
    max_value_len: Option<NonZeroUsize>,
    /// Backend-specific settings set explicitly; looked up before the process environment.
    vars: BTreeMap<String, String>,
}

/// The longest value a [`Config::default`] lets a backend read: 1 MiB. A caller that knows its
/// values are shorter sets its own bound (the fibcache server: 20 bytes).
pub const DEFAULT_MAX_VALUE_LEN: NonZeroUsize = NonZeroUsize::new(1 << 20).unwrap();

impl Default for Config {
    /// Capacity 10 000, operation timeout 250 ms, values of at most
    /// [`DEFAULT_MAX_VALUE_LEN`], no explicit settings: bounded in time and memory without
    /// being told.
    fn default() -> Self {
        Config {
            capacity: NonZeroUsize::new(10_000).expect("non-zero"),
            op_timeout: Duration::from_millis(250),
            max_value_len: Some(DEFAULT_MAX_VALUE_LEN),
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

    /// Bounds the length of the values worth reading (by default [`DEFAULT_MAX_VALUE_LEN`]): a
    /// backend that can refuses a stored value longer than `max` bytes without transferring it (a [`Backend`](crate::ErrorKind::Backend) error naming the
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
    /// [`Config::with_max_value_len`]; [`DEFAULT_MAX_VALUE_LEN`] unless set).
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

/// A backend compiled into the binary: its name, summary, crate and factory, as
/// [`register_backend!`](crate::register_backend) writes it.
///
/// With `descriptor: pub NAME` the macro makes it a public static that a binary can add with
/// [`Registry::with`], which the linker cannot drop (see the [module docs](self)).
#[derive(Debug)]
pub struct Descriptor {
    name: &'static str,
    summary: &'static str,
    /// The crate (`CARGO_PKG_NAME`) whose `register_backend!` line made it; a plugin exports
    /// only the descriptors of the crate that invokes `export_plugin!`.
    krate: &'static str,
    factory: FactoryFn,
}

impl Descriptor {
    /// A descriptor; `const` so that it can be a static. Written by `register_backend!`.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        summary: &'static str,
        krate: &'static str,
        factory: FactoryFn,
    ) -> Self {
        Descriptor {
            name,
            summary,
            krate,
            factory,
        }
    }

    /// The name the backend is selected by.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its one-line summary.
    pub fn summary(&self) -> &'static str {
        self.summary
    }

    /// The crate that registered it.
    pub fn krate(&self) -> &'static str {
        self.krate
    }

    #[cfg_attr(not(feature = "plugin"), allow(dead_code))]
    pub(crate) fn factory(&self) -> FactoryFn {
        self.factory
    }
}

/// One descriptor as submitted to `inventory` by [`register_backend!`](crate::register_backend).
#[doc(hidden)]
pub struct Registration(&'static Descriptor);

impl Registration {
    /// The registration of `descriptor`; `const` so that it can be a static `inventory` entry.
    #[doc(hidden)]
    pub const fn of(descriptor: &'static Descriptor) -> Self {
        Registration(descriptor)
    }

    /// Every descriptor linked into this binary (or, inside a plugin, into that library), in
    /// unspecified order.
    pub(crate) fn all() -> impl Iterator<Item = &'static Descriptor> {
        inventory::iter::<Registration>
            .into_iter()
            .map(|registration| registration.0)
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
    /// The static it was made from, if any: adding the same one twice is not a duplicate.
    descriptor: Option<&'static Descriptor>,
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
            descriptor: None,
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
    /// Whatever the factory reports, typically a [`Config`](crate::ErrorKind::Config) error.
    pub async fn create(&self, config: &Config) -> Result<Arc<dyn Cache>> {
        (self.factory)(config).await
    }
}

impl From<&'static Descriptor> for Backend {
    fn from(descriptor: &'static Descriptor) -> Self {
        let factory = descriptor.factory;
        Backend {
            name: descriptor.name.to_owned(),
            summary: descriptor.summary.to_owned(),
            origin: Origin::Static {
                krate: descriptor.krate,
            },
            factory: Arc::new(move |config| factory(config)),
            descriptor: Some(descriptor),
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
///
/// ```
/// use fibcache_core::{Config, Registry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Every backend linked into this binary (here only `nop`, which this crate always has),
/// // plus any added by name.
/// let registry = Registry::new()?.with(&fibcache_core::nop::NOP)?;
/// assert_eq!(registry.names(), ["nop"]);
/// let cache = registry.create("nop", &Config::default()).await?;
/// assert_eq!(cache.get("fib:10").await?, None);
/// # Ok(())
/// # }
/// ```
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
    /// [`RegistryErrorKind::Duplicate`] when two registrations share a name.
    pub fn new() -> Result<Self, RegistryError> {
        let mut registry = Registry::default();
        for descriptor in Registration::all() {
            registry.add(Backend::from(descriptor))?;
        }
        Ok(registry)
    }

    /// Adds the backend `descriptor` describes: the explicit path, which the linker cannot
    /// drop (see the [module docs](self)). Adding a descriptor that is already here (found by
    /// [`Registry::new`], or added before) changes nothing.
    ///
    /// # Errors
    /// [`RegistryErrorKind::Duplicate`] when another backend has its name.
    pub fn with(mut self, descriptor: &'static Descriptor) -> Result<Self, RegistryError> {
        self.add(Backend::from(descriptor))?;
        Ok(self)
    }

    /// Adds a backend, for example one loaded from a plugin.
    ///
    /// # Errors
    /// [`RegistryErrorKind::Duplicate`] when the name is taken by another backend; the
    /// registry is unchanged.
    pub fn add(&mut self, backend: Backend) -> Result<(), RegistryError> {
        if let Some(existing) = self.backends.get(&backend.name) {
            if let (Some(a), Some(b)) = (existing.descriptor, backend.descriptor) {
                if std::ptr::eq(a, b) {
                    return Ok(());
                }
            }
            return Err(RegistryError::duplicate(
                &backend.name,
                existing.origin.to_string(),
                backend.origin.to_string(),
            ));
        }
        self.backends.insert(backend.name.clone(), backend);
        Ok(())
    }

    /// Records that a backend `name` exists behind the Cargo feature `feature`, written as
    /// `cargo build --features` takes it from the package being built (`redis` for a feature
    /// of that package, `some-dependency/redis` for one of a dependency); used only to word
    /// the error when it is asked for but not compiled in. Noting a name again replaces the
    /// feature, so each crate that forwards the feature can name its own.
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
    /// [`RegistryErrorKind::NotCompiledIn`] for a known backend whose feature is off,
    /// [`RegistryErrorKind::Unknown`] for any other unregistered name.
    pub fn get(&self, name: &str) -> Result<&Backend, RegistryError> {
        if let Some(backend) = self.backends.get(name) {
            return Ok(backend);
        }
        let available = self.backends.keys().cloned().collect();
        Err(match self.optional.get(name) {
            Some(feature) => RegistryError::not_compiled_in(name, feature, available),
            None => RegistryError::unknown(name, available),
        })
    }

    /// Creates the backend `name` from `config`.
    ///
    /// # Errors
    /// Those of [`Registry::get`], then [`RegistryErrorKind::Create`] with the factory's error.
    pub async fn create(
        &self,
        name: &str,
        config: &Config,
    ) -> Result<Arc<dyn Cache>, RegistryError> {
        self.get(name)?
            .create(config)
            .await
            .map_err(|err| RegistryError::create(name, err))
    }
}

/// Registers a backend so that it can be selected by name.
///
/// `factory` is a path to an `async fn(&Config) -> Result<T>` where `T: Cache`. The macro may be
/// used in any crate that depends on `fibcache-core`; the registration exists as soon as that
/// crate is linked into the binary.
///
/// An optional last line `descriptor: pub NAME` also makes the backend's [`Descriptor`] a
/// static named `NAME` (with that visibility), for [`Registry::with`]: the explicit path that
/// a binary can use for a backend of a library crate it would otherwise not reference.
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
    (name: $name:expr, summary: $summary:expr, factory: $factory:path,
     descriptor: $vis:vis $descriptor:ident $(,)?) => {
        #[doc = ::std::concat!(
            "The backend `", $name, "`, for [`Registry::with`](", ::std::stringify!($crate),
            "::Registry::with).",
        )]
        $vis static $descriptor: $crate::registry::Descriptor = {
            fn __fibcache_factory(config: &$crate::Config) -> $crate::registry::FactoryFuture<'_> {
                ::std::boxed::Box::pin(async move {
                    let cache = $factory(config).await?;
                    let cache: ::std::sync::Arc<dyn $crate::Cache> = ::std::sync::Arc::new(cache);
                    ::std::result::Result::Ok(cache)
                })
            }
            $crate::registry::Descriptor::new(
                $name,
                $summary,
                ::std::env!("CARGO_PKG_NAME"),
                __fibcache_factory,
            )
        };
        $crate::__private::inventory::submit! {
            $crate::registry::Registration::of(&$descriptor)
        }
    };
    (name: $name:expr, summary: $summary:expr, factory: $factory:path $(,)?) => {
        const _: () = {
            $crate::register_backend! {
                name: $name,
                summary: $summary,
                factory: $factory,
                descriptor: __FIBCACHE_DESCRIPTOR,
            }
        };
    };
}
