//! [`Config`]: what a backend factory receives, bounded by default.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

/// What a backend factory receives: the settings every backend may read, plus named settings
/// specific to one backend (such as `REDIS_URL`).
///
/// It holds only what backends read. Entry lifetimes are not here: each
/// [`Cache::set`](crate::Cache::set) carries its own. Neither is the key namespace: the caller
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
    /// backend that can refuses a stored value longer than `max` bytes without transferring it
    /// (a [`Backend`](crate::ErrorKind::Backend) error naming the length), so a planted huge
    /// value costs neither memory nor time. Backends that hold only what their caller wrote
    /// (`memory`, `nop`) ignore it.
    pub fn with_max_value_len(mut self, max: NonZeroUsize) -> Self {
        self.max_value_len = Some(max);
        self
    }

    /// Lifts the bound on values: a backend reads every value whole, whatever its length (a
    /// Redis backend then reads with a plain `GET`). Only for a store that nobody else can
    /// write to: a value planted there costs the reader its whole length in memory.
    pub fn without_max_value_len(mut self) -> Self {
        self.max_value_len = None;
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

    /// The settings set explicitly with [`Config::with_var`], in name order: what a backend
    /// that cannot read the process environment (a plugin, a sandboxed component) receives.
    pub fn explicit_vars(&self) -> impl Iterator<Item = (&str, &str)> {
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
