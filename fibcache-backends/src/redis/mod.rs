//! The `redis` backend: one Redis store, or one Redis Cluster, shared by every fibcache server
//! pointed at it.
//!
//! A per-process cache is lost on restart and duplicated per instance; with Redis, a value
//! computed by one server is a hit on all the others. What makes this backend more than a
//! `GET`/`SET` wrapper is how it behaves when Redis does not:
//!
//! - **One connection, the client's reconnect policy.** Every operation goes through one
//!   connection of the `redis` crate: to one server, a [`ConnectionManager`] that replaces
//!   itself when it drops, trying again 3 times within about a second each time a connection
//!   attempt fails; to a cluster (`REDIS_CLUSTER_NODES`), the crate's cluster connection, which
//!   finds every node from the seeds, routes each key to its node, follows redirects, and
//!   reconnects to a lost node in the background. This backend adds no retry, no cooldown and
//!   no background task of its own; both modes run the same commands (see `connection.rs`).
//! - **The client's timeouts are the only ones.** Each connection attempt and each reply (in a
//!   cluster, each request with its retries and redirects) waits at most
//!   [`Config::op_timeout`] (`--cache-timeout` / `FIB_CACHE_TIMEOUT`, default 250 ms). The
//!   server bounds every cache call by that same limit and, after a timeout or an
//!   [`ErrorKind::Unavailable`](fibcache_core::ErrorKind::Unavailable), skips the cache for a moment; the client's own timeouts are still
//!   needed, so that the work the server abandons ends too (it runs on a plugin's runtime when
//!   the backend is loaded as one) and so that a [`RedisCache`] used on its own never hangs.
//! - **Failures say what they are.** A client error is classified by its kind, never by its
//!   text: I/O errors (refused, dropped, timed out), a cluster node that cannot be reached or a
//!   redirect to it, and the replies that mean "not serving now" (`LOADING`, `TRYAGAIN`,
//!   `CLUSTERDOWN`, `MASTERDOWN`) are [`ErrorKind::Unavailable`](fibcache_core::ErrorKind::Unavailable); any other error reply (`WRONGTYPE`, a value that
//!   is not UTF-8, ...) and a value longer than the bound (below) are [`ErrorKind::Backend`](fibcache_core::ErrorKind::Backend). The
//!   server treats both as a miss and computes. In a cluster, a key whose node is down fails
//!   as [`ErrorKind::Unavailable`](fibcache_core::ErrorKind::Unavailable) while the keys of the other nodes keep working.
//! - **A huge value is refused inside Redis.** With a bound on value sizes
//!   ([`Config::max_value_len`]; the server sets 19 bytes, the longest valid value), a read
//!   transfers at most that many bytes whatever is stored under the key (see "Keys and
//!   values"), so a value planted by anyone with write access costs neither memory nor time.
//! - **Misconfiguration stops start-up; an outage does not.** Creating the cache sends one
//!   `PING` (in a cluster, to each seed in turn until one answers, with a `CLUSTER SLOTS`). A
//!   malformed setting, a wrong password, a server that wants a password and got none, a user
//!   without permission, a database index the server does not have, a peer that is not a
//!   Redis server, or a seed that is not a cluster node is an [`ErrorKind::Config`](fibcache_core::ErrorKind::Config) from the
//!   factory: the operator has to change a setting, and the server exits with a one-line
//!   message. A Redis that is down or does not answer is a warning: the cache is created
//!   anyway, and its connection connects once Redis answers, without a restart.
//! - **No secrets in output.** The password appears in no `Debug` output, log line or error
//!   message; messages from the client library are scrubbed of it before they leave this
//!   module, and no client error travels as a `source`.
//!
//! # Keys and values
//! Keys are stored exactly as given: the server already builds them as `<prefix><n>` from
//! `--cache-prefix` (default `fib:`), so this backend adds no prefix of its own (in a cluster,
//! keys hash to slots as Redis defines; no hash tag is added). A value and its lifetime are
//! written by one `SET key value PX <ms>`, so no entry ever exists without its TTL. A TTL is
//! rounded up to whole milliseconds, at least 1 (a zero TTL would make `SET` fail) and at most
//! 100 years.
//!
//! Without a bound on value sizes, a read is a plain `GET`. With one, it is `GETRANGE key 0
//! <bound>` and `EXISTS key` in one round trip (both on the key's node in a cluster): at most
//! one byte more than the bound crosses the network, and a longer value is an
//! [`ErrorKind::Backend`](fibcache_core::ErrorKind::Backend) saying it is longer than the bound, never its content (the two plain
//! commands cost Redis about 1.6 times a `GET`; a Lua script that measured the value exactly
//! cost it about 3.5 times). A key of another type still fails with Redis's `WRONGTYPE` reply.
//!
//! # Capabilities
//! [`Expiry`] is `PTTL`, and [`Cache::get_with_remaining`] reads the value (bounded as above)
//! and its `PTTL` in one pipeline, so that a copy made from it never outlives it. [`Claims`]
//! are `SET key token NX PX <ms>` and two Lua scripts (see `capabilities.rs`). A Redis ACL user needs `PING`, `GET`, `GETRANGE`, `EXISTS`, `SET`,
//! `PTTL`, `EVALSHA`, `EVAL`, `PEXPIRE` and `DEL` (the last three run inside the scripts), and
//! `CLUSTER SLOTS` in cluster mode.
//!
//! # Settings
//! See [`RedisConfig`]: `REDIS_URL`, or `REDIS_ADDR` / `REDIS_PASSWORD` / `REDIS_DB`, or
//! `REDIS_CLUSTER_NODES` (which cannot be combined with any of the others). The timeouts come
//! from [`Config::op_timeout`]; `REDIS_TIMEOUT_MS` is no longer read (setting it logs a
//! warning).
//!
//! # Guarantees and non-guarantees
//! - A value read is a value some client wrote under that key, and no longer than the bound
//!   when there is one; whether it parses as a number is the caller's business (the server
//!   checks, and overwrites garbage).
//! - Expiry is Redis's: an expired key reads as `None`, like one never set.
//! - A claim is as safe as Redis makes it: with a cluster node lost and its slots moved to a
//!   replica that had not received a claim yet, two servers may both hold one. Claims save
//!   work; they never decide an answer.
//! - Losing Redis and getting it back are logged at debug level only, once each, when an
//!   operation sees it: the caller reports outages (the fibcache server logs each once, for
//!   every backend alike), so an outage is not logged twice. An operation the caller abandons
//!   before the client gives up logs nothing.
//! - Settings are read once, at creation. If the server's password changes while fibcache
//!   runs, reconnecting fails and operations fail until fibcache is restarted with the new
//!   one.
//!
//! [`ConnectionManager`]: redis::aio::ConnectionManager

mod capabilities;
mod config;
mod connection;
mod error;

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fibcache_core::{async_trait, Cache, Claims, Config, Error, Expiry, Result};
use redis::{Cmd, FromRedisValue, RedisError, RedisResult};

use self::config::config_error;
pub use self::config::{RedisConfig, DEFAULT_ADDR};
use self::connection::Connection;
use self::error::{describe, operation_error, Failure};

/// The longest TTL sent to Redis, which refuses expiry times that overflow its clock.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A Redis-backed [`Cache`], to one server or a Redis Cluster, cheap to clone (clones share
/// one connection). It offers both optional capabilities, [`Expiry`] and [`Claims`].
///
/// Create it through the registry (`FIB_CACHE=redis`) or with [`RedisCache::connect`]:
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> fibcache_core::Result<()> {
/// use std::time::Duration;
/// use fibcache_backends::redis::{RedisCache, RedisConfig};
/// use fibcache_core::{Cache, Config};
///
/// // Settings as the registry reads them: explicit ones first, then the environment.
/// let config = Config::default().with_var("REDIS_URL", "redis://127.0.0.1:6379/0");
/// let cache = RedisCache::connect(RedisConfig::from_config(&config)?).await?;
/// cache.set("fib:10", "55", Duration::from_secs(15)).await?;
/// assert_eq!(cache.get("fib:10").await?.as_deref(), Some("55"));
/// // It offers both capabilities.
/// assert!(cache.expiry().is_some() && cache.claims().is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// The settings: the endpoint and timeout for messages, the password to scrub from them.
    config: RedisConfig,
    /// The one connection, to the server or the cluster. Cloning it is cheap and shares it; it
    /// reconnects by itself (see `connection.rs`).
    connection: Connection,
    /// Whether the last operation reached Redis, so that losing it and getting it back are
    /// each logged once rather than on every operation.
    healthy: AtomicBool,
}

impl RedisCache {
    /// Creates the cache for the Redis server or cluster described by `config` and checks the
    /// settings: one `PING` to the server, which waits at most as long as the connection
    /// manager's timeouts and one reconnect cycle allow; or a `PING` and a `CLUSTER SLOTS` to
    /// each seed of a cluster in turn, each waiting at most [`RedisConfig::op_timeout`], until
    /// one answers.
    ///
    /// A Redis that cannot be reached is not an error: the cache is returned with a warning,
    /// its operations fail with [`ErrorKind::Unavailable`](fibcache_core::ErrorKind::Unavailable) until Redis answers, and then it uses
    /// Redis without being re-created. Must be called within a tokio runtime, which the
    /// connection uses.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](fibcache_core::ErrorKind::Config) when Redis answers but refuses the settings: wrong password or user,
    /// a password required but not given, a user not allowed to run the commands, a database
    /// index it does not have, a peer that does not speak the Redis protocol, or (cluster mode)
    /// a seed that is not a cluster node. [`ErrorKind::Backend`](fibcache_core::ErrorKind::Backend) when called outside a tokio
    /// runtime.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::backend(
                "redis",
                Failure("the redis backend needs a tokio runtime".to_owned()),
            ));
        }
        let connection = Connection::open(&config).map_err(|err: RedisError| {
            config_error(config.redact(&format!(
                "{} is not usable: {}",
                config.source(),
                describe(&err)
            )))
        })?;
        let endpoint = config.endpoint().to_owned();
        let unreachable = connection.check(&config).await?;
        let mode = if config.is_cluster() {
            "redis cluster"
        } else {
            "redis"
        };
        match &unreachable {
            None => tracing::info!(
                backend = "redis",
                endpoint,
                db = config.db(),
                "connected to {mode}"
            ),
            Some(cause) => tracing::warn!(
                backend = "redis",
                endpoint,
                cause,
                "{mode} is unreachable; every request computes until it is back"
            ),
        }
        Ok(RedisCache {
            inner: Arc::new(Inner {
                config,
                connection,
                healthy: AtomicBool::new(unreachable.is_none()),
            }),
        })
    }

    /// The settings this cache was created with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether the last operation (or, before any, the start-up check) reached Redis. It says
    /// nothing about the next one.
    pub fn is_connected(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("config", &self.inner.config)
            .field("connected", &self.is_connected())
            .finish()
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let Some(max) = self.inner.config.max_value_len() else {
            let mut cmd = redis::cmd("GET");
            cmd.arg(key);
            return self.inner.query(&cmd).await;
        };
        // One round trip, two plain commands: at most `max + 1` bytes of the value (enough
        // to tell one that is too long), and whether the key exists at all (an empty value
        // and no value read alike). A key of another type fails with `WRONGTYPE`. Lua would
        // answer with the exact length, but costs Redis three times a `GET` per read; these
        // two cost it about 1.6 times.
        let mut read = redis::pipe();
        read.cmd("GETRANGE").arg(key).arg(0).arg(max.get());
        read.cmd("EXISTS").arg(key);
        let answer = read.query_async(&mut self.inner.connection.clone()).await;
        let (head, exists): (Vec<u8>, bool) = self.inner.observe(answer)?;
        bounded(&self.inner.config, key, head, exists, max)
    }

    async fn get_with_remaining(&self, key: &str) -> Result<Option<(String, Option<Duration>)>> {
        // One round trip: the value (bounded as in `get`) then its lifetime. `PTTL` runs after
        // the read, so the lifetime it reports never overstates the value's; a key that
        // expired in between answers -2 and reads as no value.
        let mut read = redis::pipe();
        match self.inner.config.max_value_len() {
            Some(max) => read.cmd("GETRANGE").arg(key).arg(0).arg(max.get()),
            None => read.cmd("GET").arg(key),
        };
        read.cmd("PTTL").arg(key);
        let answer = read.query_async(&mut self.inner.connection.clone()).await;
        let (head, ms): (Option<Vec<u8>>, i64) = self.inner.observe(answer)?;
        // -2: no such key; -1: a key without a lifetime; 0: one that is expiring now.
        let left = match ms {
            -2 => return Ok(None),
            ms if ms > 0 => Some(Duration::from_millis(ms as u64)),
            -1 => None,
            _ => return Ok(None),
        };
        let max = self
            .inner
            .config
            .max_value_len()
            .unwrap_or(NonZeroUsize::MAX);
        let value = bounded(&self.inner.config, key, head.unwrap_or_default(), true, max)?;
        Ok(value.map(|value| (value, left)))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl_millis(ttl));
        self.inner.query::<()>(&cmd).await
    }

    fn expiry(&self) -> Option<&dyn Expiry> {
        Some(self)
    }

    fn claims(&self) -> Option<&dyn Claims> {
        Some(self)
    }
}

impl Inner {
    /// Runs `cmd` on the shared connection, as the client reports it.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        cmd.query_async(&mut self.connection.clone()).await
    }

    /// Runs `cmd`, as [`Inner::observe`] reports it.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.observe(self.run(cmd).await)
    }

    /// The outcome of an operation, with a client error turned into this crate's [`Error`];
    /// logs the moments Redis is lost and found again.
    fn observe<T>(&self, outcome: RedisResult<T>) -> Result<T> {
        match outcome {
            Ok(value) => {
                // A load first: the flag is shared by every worker, and a write on every
                // operation would make them contend for its cache line.
                if !self.healthy.load(Ordering::Relaxed)
                    && !self.healthy.swap(true, Ordering::Relaxed)
                {
                    tracing::debug!(
                        backend = "redis",
                        endpoint = self.config.endpoint(),
                        "redis answers again"
                    );
                }
                Ok(value)
            }
            Err(err) => {
                let error = operation_error(&self.config, &err);
                if error.is_unavailable() && self.healthy.swap(false, Ordering::Relaxed) {
                    let cause = std::error::Error::source(&error)
                        .map_or_else(|| error.to_string(), ToString::to_string);
                    tracing::debug!(
                        backend = "redis",
                        endpoint = self.config.endpoint(),
                        cause = %cause,
                        "lost redis"
                    );
                }
                Err(error)
            }
        }
    }
}

/// The value a bounded read found: `head` is at most `max + 1` bytes of it, `exists` whether
/// the key was there at all.
///
/// # Errors
/// [`ErrorKind::Backend`](fibcache_core::ErrorKind::Backend) for a value longer than `max` (which was not read further) or one that
/// is not UTF-8.
fn bounded(
    config: &RedisConfig,
    key: &str,
    head: Vec<u8>,
    exists: bool,
    max: NonZeroUsize,
) -> Result<Option<String>> {
    if !exists {
        return Ok(None);
    }
    let message = if head.len() > max.get() {
        format!("the value under {key:?} is longer than the {max} bytes a value may have; it was not read")
    } else {
        match String::from_utf8(head) {
            Ok(value) => return Ok(Some(value)),
            Err(_) => format!("the value under {key:?} is not UTF-8"),
        }
    };
    let message = format!("{}: {message}", config.at());
    Err(Error::backend("redis", Failure(config.redact(&message))))
}

/// A TTL in whole milliseconds as `SET ... PX` wants it: rounded up, at least 1, at most
/// [`MAX_TTL`].
fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.min(MAX_TTL).as_nanos().div_ceil(1_000_000);
    (ms as u64).max(1)
}

async fn create(config: &Config) -> Result<RedisCache> {
    RedisCache::connect(RedisConfig::from_config(config)?).await
}

fibcache_core::register_backend! {
    name: "redis",
    summary: "shared Redis store or cluster (REDIS_URL, REDIS_ADDR/..., or REDIS_CLUSTER_NODES)",
    factory: create,
    descriptor: pub REDIS,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_read_tells_a_value_from_a_longer_one_and_from_no_value() {
        let config = Config::default().with_var("REDIS_URL", "redis://:hunter2@127.0.0.1:6379");
        let config = RedisConfig::from_config(&config).unwrap();
        let max = NonZeroUsize::new(19).unwrap();
        let read = |head: &[u8], exists| bounded(&config, "fib:38", head.to_vec(), exists, max);
        assert_eq!(read(b"", false).unwrap(), None);
        assert_eq!(read(b"", true).unwrap().as_deref(), Some(""));
        let longest = b"7540113804746346429";
        assert_eq!(
            read(longest, true).unwrap().as_deref(),
            Some("7540113804746346429")
        );
        let err = read(b"planted-content-0020", true).unwrap_err();
        assert_eq!(err.kind(), fibcache_core::ErrorKind::Backend);
        assert_eq!(err.backend_name(), "redis");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(
            source,
            "redis at 127.0.0.1:6379: the value under \"fib:38\" is longer than the 19 bytes \
             a value may have; it was not read"
        );
        assert!(read(&[0xff], true).is_err(), "not UTF-8");
    }

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(999)), 1);
        assert_eq!(ttl_millis(Duration::from_millis(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1_001)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(15)), 15_000);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL.as_millis() as u64);
    }
}
