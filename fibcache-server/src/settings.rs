//! [`Settings`]: every per-request limit of the app, validated once, with the command line's
//! defaults.
//!
//! The limits live here, in the library type, rather than in the command line, so that an app
//! built by an embedder keeps every guarantee the `fibcache` binary has: `Settings::default()`
//! is exactly what the binary runs with when given no flags. A [`SettingsBuilder`] changes
//! them and refuses an impossible combination at [`build`](SettingsBuilder::build) time.
//!
//! The one cache time limit (`--cache-timeout`) is here too, and [`Settings::cache_config`]
//! hands it, with the bound on stored values, to the backends the app will use: build caches
//! from that config, and the guard and the backend's own client agree by construction.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use fibcache_core::Config;

use crate::fib;

/// The per-request settings of the app (the flags of the same names).
///
/// ```
/// use std::time::Duration;
/// use fibcache_server::Settings;
///
/// let settings = Settings::builder()
///     .max_n(40)
///     .cache_timeout(Duration::from_millis(100))
///     .build()?;
/// assert_eq!(settings.max_n(), 40);
/// // The backends get the same time limit, and the bound on values.
/// assert_eq!(settings.cache_config().op_timeout(), Duration::from_millis(100));
/// assert!(settings.cache_config().max_value_len().is_some());
///
/// // An impossible setting is an error, not a surprise at run time.
/// assert!(Settings::builder().max_n(93).build().is_err());
/// assert!(Settings::builder().compute_timeout(Duration::ZERO).build().is_err());
/// # Ok::<(), fibcache_server::SettingsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest `n` accepted (`--max-n`, at most [`fib::MAX_N`]).
    max_n: u64,
    /// Key namespace: the key of `n` is this prefix followed by `n` (`--cache-prefix`).
    prefix: String,
    /// Lifetime of a written entry (`--cache-ttl`).
    ttl: Duration,
    /// Longest one cache operation may take before it counts as failed (`--cache-timeout`).
    cache_timeout: Duration,
    /// Computations running at once (`--max-computes`).
    max_computes: NonZeroUsize,
    /// Longest a computation may run; its waiters then get 504 (`--compute-timeout`).
    compute_timeout: Duration,
    /// Longest a cold request waits for a computation slot before it gets 503
    /// (`--queue-wait`).
    queue_wait: Duration,
    /// Compute each cold `n` once across the instances sharing a store, when a tier offers
    /// claims (`--cluster-coalescing`).
    cluster_coalescing: bool,
    /// Where the app is mounted in a larger router (`/api`), or empty.
    mount_prefix: String,
}

impl Default for Settings {
    /// The defaults of the command line: `max_n` 92, prefix `fib:`, TTL 15 s, cache timeout
    /// 250 ms, one computation per CPU, compute timeout 30 s, queue wait 100 ms, cluster-wide
    /// coalescing on.
    fn default() -> Self {
        Settings {
            max_n: fib::MAX_N,
            prefix: "fib:".to_owned(),
            ttl: Duration::from_secs(15),
            cache_timeout: Duration::from_millis(250),
            max_computes: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            compute_timeout: Duration::from_secs(30),
            queue_wait: Duration::from_millis(100),
            cluster_coalescing: true,
            mount_prefix: String::new(),
        }
    }
}

impl Settings {
    /// A builder starting from the defaults.
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder {
            settings: Settings::default(),
        }
    }

    /// Largest `n` accepted (`--max-n`).
    pub fn max_n(&self) -> u64 {
        self.max_n
    }

    /// Key namespace (`--cache-prefix`): the key of `n` is this prefix followed by `n`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Lifetime of a written entry (`--cache-ttl`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Longest one cache operation may take (`--cache-timeout`).
    pub fn cache_timeout(&self) -> Duration {
        self.cache_timeout
    }

    /// Computations running at once (`--max-computes`).
    pub fn max_computes(&self) -> NonZeroUsize {
        self.max_computes
    }

    /// Longest a computation may run (`--compute-timeout`).
    pub fn compute_timeout(&self) -> Duration {
        self.compute_timeout
    }

    /// Longest a cold request waits for a computation slot (`--queue-wait`).
    pub fn queue_wait(&self) -> Duration {
        self.queue_wait
    }

    /// Whether cluster-wide coalescing is on (`--cluster-coalescing`).
    pub fn cluster_coalescing(&self) -> bool {
        self.cluster_coalescing
    }

    /// Where the app is mounted in a larger router (`/api`), or empty for the root.
    pub fn mount_prefix(&self) -> &str {
        &self.mount_prefix
    }

    /// The [`Config`] to create this app's backends from: the cache time limit as
    /// [`Config::op_timeout`], and the longest value a Fibonacci number can take as
    /// [`Config::max_value_len`], so that a huge value planted in a shared store is refused
    /// without being transferred. Add backend settings with [`Config::with_var`] and
    /// [`Config::with_capacity`].
    pub fn cache_config(&self) -> Config {
        Config::default()
            .with_op_timeout(self.cache_timeout)
            .with_max_value_len(Settings::max_value_len())
    }

    /// The longest value worth reading from a cache: the decimal form of the largest
    /// Fibonacci number served.
    pub(crate) const fn max_value_len() -> NonZeroUsize {
        const { NonZeroUsize::new(fib::MAX_VALUE_LEN).unwrap() }
    }
}

/// Builds [`Settings`], checking each value; see [`Settings::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SettingsBuilder {
    settings: Settings,
}

impl SettingsBuilder {
    /// Largest `n` accepted; at most 92 (`fib(92)` is the largest that fits an `i64`).
    pub fn max_n(mut self, max_n: u64) -> Self {
        self.settings.max_n = max_n;
        self
    }

    /// Key namespace in shared stores.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// Lifetime of a written entry; not zero.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// Longest one cache operation may take; not zero.
    pub fn cache_timeout(mut self, timeout: Duration) -> Self {
        self.settings.cache_timeout = timeout;
        self
    }

    /// Computations running at once.
    pub fn max_computes(mut self, max: NonZeroUsize) -> Self {
        self.settings.max_computes = max;
        self
    }

    /// Longest a computation may run; not zero.
    pub fn compute_timeout(mut self, timeout: Duration) -> Self {
        self.settings.compute_timeout = timeout;
        self
    }

    /// Longest a cold request waits for a computation slot; zero means "only a free slot".
    pub fn queue_wait(mut self, wait: Duration) -> Self {
        self.settings.queue_wait = wait;
        self
    }

    /// Whether to compute each cold `n` once across instances sharing a store.
    pub fn cluster_coalescing(mut self, on: bool) -> Self {
        self.settings.cluster_coalescing = on;
        self
    }

    /// Where the app is mounted when nested in a larger router (axum's
    /// `nest_service("/api", app)`): its OpenAPI document then lists the prefix as its server,
    /// and its error messages show paths as the client sent them. A request whose path still
    /// has the prefix (the app served directly) is routed without it. Empty (the default):
    /// mounted at the root. A prefix starts with `/` and does not end with one.
    pub fn mount_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.mount_prefix = prefix.into();
        self
    }

    /// The settings, once every value is checked.
    ///
    /// # Errors
    /// A [`SettingsError`] naming the first setting out of range: `max_n` above 92, a zero
    /// TTL, cache timeout or compute timeout, or a mount prefix that does not start with `/`
    /// or ends with one.
    pub fn build(self) -> Result<Settings, SettingsError> {
        let s = self.settings;
        let mount = &s.mount_prefix;
        if !mount.is_empty() && (!mount.starts_with('/') || mount.ends_with('/')) {
            return Err(SettingsError::new(
                "mount_prefix",
                format!("is {mount:?}; write it as `/api`: a leading `/` and no trailing one"),
            ));
        }
        if s.max_n > fib::MAX_N {
            return Err(SettingsError::new(
                "max_n",
                format!(
                    "is {}, above {} (fib({}) is the largest that fits an i64)",
                    s.max_n,
                    fib::MAX_N,
                    fib::MAX_N
                ),
            ));
        }
        for (name, value) in [
            ("ttl", s.ttl),
            ("cache_timeout", s.cache_timeout),
            ("compute_timeout", s.compute_timeout),
        ] {
            if value.is_zero() {
                return Err(SettingsError::new(name, "must be longer than zero".into()));
            }
        }
        Ok(s)
    }
}

/// A setting out of range, refused by [`SettingsBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    setting: &'static str,
    problem: String,
}

impl SettingsError {
    fn new(setting: &'static str, problem: String) -> Self {
        SettingsError { setting, problem }
    }

    /// The name of the setting (as the builder method is named).
    pub fn setting(&self) -> &str {
        self.setting
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting `{}` {}", self.setting, self.problem)
    }
}

impl std::error::Error for SettingsError {}
