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
use std::pin::Pin;
use std::sync::Arc;

pub use crate::config::{Config, DEFAULT_MAX_VALUE_LEN};
#[cfg(doc)]
use crate::error::RegistryErrorKind;
use crate::{Cache, RegistryError, Result};

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
    /// Loaded at run time from a WebAssembly component (`fibcache-wasm`).
    Wasm {
        /// The component's path as given on the command line.
        path: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Static { krate } => write!(f, "static:{krate}"),
            Origin::Plugin { path } => write!(f, "plugin:{path}"),
            Origin::Wasm { path } => write!(f, "wasm:{path}"),
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
