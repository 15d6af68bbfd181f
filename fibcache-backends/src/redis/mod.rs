//! The `redis` backend: one Redis store shared by every fibcache server pointed at it.
//!
//! A per-process cache is lost on restart and duplicated per instance; with Redis, a value
//! computed by one server is a hit on all the others. What makes this backend more than a
//! `GET`/`SET` wrapper is how it behaves when Redis does not:
//!
//! - **Bounded waits.** Connecting and every reply wait at most the operation timeout
//!   ([`Config::op_timeout`], i.e. `--cache-timeout`, default 250 ms; `REDIS_TIMEOUT_MS`
//!   overrides it). Past that the operation is an [`Error::Backend`], which the server treats
//!   as a miss and computes.
//! - **Failing fast.** After a connection failure or a timeout, operations fail at once for
//!   one second instead of each waiting out the timeout again; then the next operation tries
//!   Redis again.
//! - **Reconnecting by itself.** The connection is the `redis` crate's multiplexed
//!   [`ConnectionManager`], which replaces a dropped connection on its own. A Redis that is
//!   down at start-up is not an error: the cache is created, warns once, fails every operation
//!   at once, and keeps trying to connect in the background (100 ms, doubling up to 5 s),
//!   so the service uses Redis as soon as it is back, without a restart.
//! - **Misconfiguration stops start-up.** A malformed `REDIS_URL`, a wrong password, a server
//!   that wants a password and got none, or a database index it does not have is an
//!   [`Error::Config`] from the factory: the operator has to change a setting, and the server
//!   exits with a one-line message.
//! - **No secrets in output.** The password appears in no `Debug` output, log line or error
//!   message; messages from the client library are scrubbed of it before they leave this
//!   module.
//!
//! # Keys and values
//! Keys are stored exactly as given: the server already builds them as `<prefix><n>` from
//! `--cache-prefix` (default `fib:`), so this backend adds no prefix of its own. A value and its lifetime are written by one `SET key value PX <ms>`, so no
//! entry ever exists without its TTL. A TTL is rounded up to whole milliseconds, at least 1 (a
//! zero TTL would make `SET` fail) and at most 100 years.
//!
//! # Settings
//! See [`RedisConfig`]: `REDIS_URL`, or `REDIS_ADDR` / `REDIS_PASSWORD` / `REDIS_DB`, plus
//! `REDIS_TIMEOUT_MS`.
//!
//! # Guarantees and non-guarantees
//! - A value read is a value some client wrote under that key; whether it parses as a number
//!   is the caller's business (the server checks, and overwrites garbage).
//! - Expiry is Redis's: an expired key reads as `None`, like one never set.
//! - Settings are read once, at creation. If the server's password changes while fibcache
//!   runs, operations keep failing (fast) until fibcache is restarted with the new one.

mod config;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use fibcache_core::{async_trait, Cache, Config, Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, RedisError};
use tokio::time::Instant;

use self::config::config_error;
pub use self::config::{RedisConfig, DEFAULT_ADDR};

/// How long operations fail without asking Redis after it failed to answer.
const COOLDOWN: Duration = Duration::from_secs(1);

/// First and longest pause between background connection attempts while Redis has never been
/// reached.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The longest TTL sent to Redis, which refuses expiry times that overflow its clock.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A Redis-backed [`Cache`], cheap to clone (clones share one connection).
///
/// Create it through the registry (`FIB_CACHE=redis`) or with [`RedisCache::connect`].
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    client: Client,
    /// Set once Redis has been reached; from then on the manager reconnects by itself. A
    /// `OnceLock` rather than a lock: it is written once, by the start-up or the background
    /// connector, and read lock-free by every operation.
    manager: OnceLock<ConnectionManager>,
    /// Until when operations fail at once, in milliseconds since `epoch` (0: not failing).
    /// An atomic rather than a mutex: every operation reads it, and a lost race between two
    /// failures only moves the deadline by a few milliseconds.
    fail_fast_until: AtomicU64,
    /// The origin of `fail_fast_until`; tokio's clock so that tests can pause it.
    epoch: Instant,
    /// Whether the last operation reached Redis, so that losing it and getting it back are
    /// each logged once rather than on every operation.
    healthy: AtomicBool,
}

/// Why connecting failed, as far as start-up is concerned.
enum ConnectFailure {
    /// The operator has to change a setting; retrying cannot help.
    Misconfigured(String),
    /// Redis is down, unreachable or busy; retrying may help.
    Unavailable(String),
}

impl RedisCache {
    /// Connects to the Redis described by `config`.
    ///
    /// A Redis that cannot be reached is not an error: the cache is returned, its operations
    /// fail at once with [`Error::Backend`], and it connects in the background as soon as
    /// Redis answers. Must be called within a tokio runtime, which the background work and
    /// the connection use.
    ///
    /// # Errors
    /// [`Error::Config`] when Redis answers but refuses the settings: wrong password or user,
    /// a password required but not given, or a database index it does not have.
    /// [`Error::Backend`] when called outside a tokio runtime.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::backend(
                "redis",
                Failure("the redis backend needs a tokio runtime".to_owned()),
            ));
        }
        let client = Client::open(config.connection_info().clone()).map_err(|err| {
            config_error(config.redact(&format!(
                "{} is not usable: {}",
                config.source(),
                describe(&err)
            )))
        })?;
        let inner = Arc::new(Inner {
            config,
            client,
            manager: OnceLock::new(),
            fail_fast_until: AtomicU64::new(0),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
        });
        match inner.probe().await {
            Ok(()) => {
                inner.install_manager()?;
                tracing::info!(
                    backend = "redis",
                    endpoint = %inner.config.endpoint(),
                    db = inner.config.db(),
                    "connected to redis"
                );
            }
            Err(ConnectFailure::Misconfigured(message)) => return Err(config_error(message)),
            Err(ConnectFailure::Unavailable(cause)) => {
                tracing::warn!(
                    backend = "redis",
                    endpoint = %inner.config.endpoint(),
                    cause = %cause,
                    "redis is unreachable; every request computes until it is back, \
                     connecting in the background"
                );
                inner.healthy.store(false, Ordering::Relaxed);
                tokio::spawn(connect_in_background(Arc::downgrade(&inner), cause));
            }
        }
        Ok(RedisCache { inner })
    }

    /// The settings this cache was created with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether Redis has been reached at least once (the connection may be down right now).
    pub fn is_connected(&self) -> bool {
        self.inner.manager.get().is_some()
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
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.inner.query(&cmd).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl_millis(ttl));
        self.inner.query::<()>(&cmd).await
    }
}

impl Inner {
    /// Runs `cmd` within the operation timeout, or fails at once while Redis is known to be
    /// unreachable.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let Some(manager) = self.manager.get() else {
            return Err(self.failure(format!(
                "not connected to redis at {} yet; connecting in the background",
                self.config.endpoint()
            )));
        };
        if self.now_ms() < self.fail_fast_until.load(Ordering::Relaxed) {
            return Err(self.failure(format!(
                "redis at {} failed less than {COOLDOWN:?} ago; not asking it again yet",
                self.config.endpoint()
            )));
        }
        // A `ConnectionManager` clone shares the one multiplexed connection.
        let mut conn = manager.clone();
        let timeout = self.config.op_timeout();
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(value)) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        backend = "redis",
                        endpoint = %self.config.endpoint(),
                        "redis answers again"
                    );
                }
                Ok(value)
            }
            Ok(Err(err)) => {
                // Only a failure to reach Redis says anything about the next operation; an
                // error reply (a wrong type under the key, a value that is not UTF-8) does not.
                if err.is_io_error() {
                    self.fail_fast(&describe(&err));
                }
                Err(self.failure(format!(
                    "redis at {}: {}",
                    self.config.endpoint(),
                    describe(&err)
                )))
            }
            Err(_elapsed) => {
                let message = format!(
                    "redis at {} did not answer within {timeout:?}",
                    self.config.endpoint()
                );
                self.fail_fast(&message);
                Err(self.failure(message))
            }
        }
    }

    /// Makes operations fail at once for [`COOLDOWN`], logging the first failure of a series.
    fn fail_fast(&self, cause: &str) {
        let until = self.now_ms() + COOLDOWN.as_millis() as u64;
        self.fail_fast_until.fetch_max(until, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                backend = "redis",
                endpoint = %self.config.endpoint(),
                cause = %self.config.redact(cause),
                "lost redis; requests compute until it answers again"
            );
        }
    }

    fn now_ms(&self) -> u64 {
        // Starts at 1 so that the initial 0 of `fail_fast_until` is always in the past.
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// A backend error whose message has been scrubbed of the password.
    fn failure(&self, message: String) -> Error {
        Error::backend("redis", Failure(self.config.redact(&message)))
    }

    /// One connection attempt with a `PING`, to tell a wrong setting from a Redis that is
    /// down before committing to a long-lived connection.
    async fn probe(&self) -> Result<(), ConnectFailure> {
        // Start-up can afford to wait a little longer than a request, so that a slow first
        // handshake is not mistaken for an outage.
        let timeout = self.config.op_timeout().max(Duration::from_secs(1));
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let attempt = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&connection_config)
                .await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        match tokio::time::timeout(timeout * 2, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.classify(&err)),
            Err(_elapsed) => Err(ConnectFailure::Unavailable(format!(
                "no answer within {:?}",
                timeout * 2
            ))),
        }
    }

    fn classify(&self, err: &RedisError) -> ConnectFailure {
        let config = &self.config;
        let source = config.source();
        let (password_setting, db_setting) = match source {
            "REDIS_URL" => ("REDIS_URL", "REDIS_URL"),
            _ => ("REDIS_PASSWORD", "REDIS_DB"),
        };
        let message =
            if err.kind() == ErrorKind::AuthenticationFailed || err.code() == Some("WRONGPASS") {
                format!(
                    "redis at {} refused the credentials; check the password (and user) in \
                 {password_setting}",
                    config.endpoint(),
                )
            } else if err.code() == Some("NOAUTH") {
                format!(
                    "redis at {} requires a password; give it in {password_setting}",
                    config.endpoint(),
                )
            } else if err.code() == Some("NOPERM") {
                format!(
                    "redis at {} does not let this user run GET, SET and PING: {}",
                    config.endpoint(),
                    describe(err)
                )
            } else if err.to_string().contains("refused to switch database") {
                format!(
                    "redis at {} has no database {} ({}); check {db_setting}",
                    config.endpoint(),
                    config.db(),
                    err.detail().unwrap_or("refused to switch database"),
                )
            } else if err.kind() == ErrorKind::InvalidClientConfig {
                format!("{source} is not usable: {}", describe(err))
            } else {
                return ConnectFailure::Unavailable(config.redact(&describe(err)));
            };
        ConnectFailure::Misconfigured(config.redact(&message))
    }

    /// Creates the long-lived connection manager after a successful probe; it connects on
    /// first use and reconnects by itself from then on.
    fn install_manager(&self) -> Result<()> {
        let timeout = self.config.op_timeout();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnection attempts after a drop: up to 6, 100 ms apart at first, at most 1 s,
            // so that a restarted Redis is used again within about a second.
            .set_number_of_retries(6)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), manager_config)
            .map_err(|err| self.failure(describe(&err)))?;
        // Only the start-up or the one background connector gets here, never both.
        let _ = self.manager.set(manager);
        Ok(())
    }
}

/// Keeps trying to reach a Redis that was down at start-up, until it answers or the cache is
/// dropped. Holds only a weak reference, so it never keeps a dropped cache alive.
async fn connect_in_background(inner: Weak<Inner>, mut last_cause: String) {
    let mut delay = RETRY_MIN;
    loop {
        tokio::time::sleep(delay).await;
        let Some(inner) = inner.upgrade() else { return };
        let cause = match inner.probe().await {
            Ok(()) => match inner.install_manager() {
                Ok(()) => {
                    inner.healthy.store(true, Ordering::Relaxed);
                    tracing::info!(
                        backend = "redis",
                        endpoint = %inner.config.endpoint(),
                        db = inner.config.db(),
                        "connected to redis; using the cache from now on"
                    );
                    return;
                }
                Err(err) => format!("{err:#}"),
            },
            Err(ConnectFailure::Misconfigured(message)) => message,
            Err(ConnectFailure::Unavailable(cause)) => cause,
        };
        // Repeating the same cause every few seconds would drown the log; a new one is news.
        if cause != last_cause {
            tracing::warn!(
                backend = "redis",
                endpoint = %inner.config.endpoint(),
                cause = %cause,
                "still cannot use redis; retrying in the background"
            );
        } else {
            tracing::debug!(backend = "redis", cause = %cause, "redis still unreachable");
        }
        last_cause = cause;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// A client error as a sentence: its `Display` without the ` - KindName` the `redis` crate
/// puts after its own descriptions.
pub(crate) fn describe(err: &RedisError) -> String {
    err.to_string()
        .replacen(&format!(" - {:?}", err.kind()), "", 1)
}

/// A TTL in whole milliseconds as `SET ... PX` wants it: rounded up, at least 1, at most
/// [`MAX_TTL`].
fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.min(MAX_TTL).as_nanos().div_ceil(1_000_000);
    (ms as u64).max(1)
}

/// What went wrong in the client, as a message already scrubbed of the password.
///
/// The client's own error is not kept as a `source`: its text has been checked and redacted
/// here, and a chain would bypass that.
#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

async fn create(config: &Config) -> Result<RedisCache> {
    RedisCache::connect(RedisConfig::from_config(config)?).await
}

fibcache_core::register_backend! {
    name: "redis",
    summary: "shared Redis store (REDIS_URL, or REDIS_ADDR/REDIS_PASSWORD/REDIS_DB)",
    factory: create,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache aimed at a port nothing listens on, with its connection manager already
    /// installed (it connects lazily, so nothing is attempted yet).
    fn unreachable_cache() -> Inner {
        let config = Config::default()
            .with_var("REDIS_URL", "redis://127.0.0.1:1")
            .with_var("REDIS_TIMEOUT_MS", "");
        let config = RedisConfig::from_config(&config).unwrap();
        let inner = Inner {
            client: Client::open(config.connection_info().clone()).unwrap(),
            config,
            manager: OnceLock::new(),
            fail_fast_until: AtomicU64::new(0),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
        };
        inner.install_manager().unwrap();
        inner
    }

    fn message(err: Error) -> String {
        let source = std::error::Error::source(&err).expect("a backend error has a source");
        source.to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_operations_fail_without_asking_redis_for_the_cooldown() {
        let inner = unreachable_cache();
        let ping = redis::cmd("PING");
        let first = message(inner.query::<()>(&ping).await.unwrap_err());
        assert!(!first.contains("not asking it again"), "{first}");

        tokio::time::advance(COOLDOWN / 2).await;
        let during = message(inner.query::<()>(&ping).await.unwrap_err());
        assert!(during.contains("not asking it again"), "{during}");

        tokio::time::advance(COOLDOWN).await;
        let after = message(inner.query::<()>(&ping).await.unwrap_err());
        assert!(!after.contains("not asking it again"), "{after}");
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
