//! [`SettingsArgs`]: the command line's per-request flags and their environment variables, as
//! a clap `Args` that a binary of your own flattens into its command line.

use std::num::NonZeroUsize;
use std::time::Duration;

use fibcache_core::Config;

use crate::{fib, Settings, SettingsBuilder, SettingsError};

/// The flags (and environment variables) of [`Settings`] and of the backends' [`Config`], with
/// the `fibcache` command line's names, defaults and help: `--cache`, `--cache-ttl`,
/// `--cache-capacity`, `--cache-prefix`, `--cache-timeout`, `--max-n`, `--max-computes`,
/// `--compute-timeout`, `--queue-wait`, `--cluster-coalescing`.
///
/// Flatten it into a command line of your own to read the same settings the same way:
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct MyArgs {
///     #[command(flatten)]
///     fibcache: fibcache_server::cli::SettingsArgs,
///     /// A flag of my own.
///     #[arg(long, default_value = "hello")]
///     greeting: String,
/// }
///
/// let args = MyArgs::parse_from(["me", "--max-n", "40", "--cache", "memory"]);
/// let settings = args.fibcache.settings()?;
/// assert_eq!(settings.max_n(), 40);
/// assert_eq!(args.fibcache.cache(), Some("memory"));
/// assert_eq!(args.fibcache.cache_config().op_timeout(), settings.cache_timeout());
/// # Ok::<(), fibcache_server::SettingsError>(())
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct SettingsArgs {
    /// Cache backend, by name, or tiers nearest first joined by `+` (memory+redis)
    /// [default: memory if compiled in, else nop].
    #[arg(long, env = "FIB_CACHE")]
    pub(super) cache: Option<String>,

    /// Lifetime of a cached entry (e.g. 500ms, 15s, 1h).
    #[arg(long, env = "FIB_CACHE_TTL", default_value = "15s", value_parser = duration)]
    cache_ttl: Duration,

    /// Most entries the memory backend keeps (least recently used goes first).
    #[arg(long, env = "FIB_CACHE_CAPACITY", default_value = "10000")]
    cache_capacity: NonZeroUsize,

    /// Key namespace in shared stores: the key of n is this prefix followed by n (fib:30).
    #[arg(long, env = "FIB_CACHE_PREFIX", default_value = "fib:")]
    cache_prefix: String,

    /// Longest one cache operation may take; past it the request computes instead.
    #[arg(long, env = "FIB_CACHE_TIMEOUT", default_value = "250ms", value_parser = duration)]
    cache_timeout: Duration,

    /// Largest n accepted (at most 92: fib(92) is the largest that fits an i64).
    #[arg(long, env = "FIB_MAX_N", default_value_t = fib::MAX_N,
          value_parser = clap::value_parser!(u64).range(0..=fib::MAX_N))]
    max_n: u64,

    /// Computations running at once [default: number of CPUs].
    #[arg(long, env = "FIB_MAX_COMPUTES")]
    max_computes: Option<NonZeroUsize>,

    /// A computation running longer is cancelled; its waiters get 504.
    #[arg(long, env = "FIB_COMPUTE_TIMEOUT", default_value = "30s", value_parser = duration)]
    compute_timeout: Duration,

    /// Longest a cold request waits for a free computation slot before it gets 503.
    #[arg(long, env = "FIB_QUEUE_WAIT", default_value = "100ms", value_parser = duration)]
    queue_wait: Duration,

    /// Compute each cold n once across the instances sharing a store, where a cache tier
    /// offers claims (Redis).
    #[arg(long, env = "FIB_CLUSTER_COALESCING", value_enum, default_value_t = Switch::On)]
    cluster_coalescing: Switch,
}

impl SettingsArgs {
    /// The backend or tiers named by `--cache` (`FIB_CACHE`), if given.
    pub fn cache(&self) -> Option<&str> {
        self.cache.as_deref()
    }

    /// The [`Settings`] these flags describe.
    ///
    /// # Errors
    /// Those of [`SettingsBuilder::build`].
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        self.builder().build()
    }

    /// A [`SettingsBuilder`] with these flags set, for the settings that have none (such as
    /// [`SettingsBuilder::mount_prefix`]).
    pub fn builder(&self) -> SettingsBuilder {
        let max_computes = self
            .max_computes
            .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN));
        Settings::builder()
            .max_n(self.max_n)
            .prefix(self.cache_prefix.clone())
            .ttl(self.cache_ttl)
            .cache_timeout(self.cache_timeout)
            .max_computes(max_computes)
            .compute_timeout(self.compute_timeout)
            .queue_wait(self.queue_wait)
            .cluster_coalescing(self.cluster_coalescing == Switch::On)
    }

    /// The [`Config`] to create the backends from: [`Settings::cache_config`] (the cache
    /// timeout and the value bound) with `--cache-capacity`.
    pub fn cache_config(&self) -> Config {
        Config::default()
            .with_op_timeout(self.cache_timeout)
            .with_max_value_len(Settings::max_value_len())
            .with_capacity(self.cache_capacity)
    }
}

/// A setting that is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

/// A humane duration (`500ms`, `15s`, `1h`).
pub(super) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (use e.g. 500ms, 15s, 1h)"))
}
