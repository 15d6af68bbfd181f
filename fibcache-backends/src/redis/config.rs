//! Where the `redis` backend connects and how long its client waits, read from the factory's
//! [`Config`].
//!
//! Reading the settings is kept apart from connecting so that every mistake an operator can
//! make in them is reported before any socket is opened, and so that the one type that holds
//! the password is small enough to check that it never prints it. One server's settings are
//! read in `single.rs`, a cluster's in `cluster.rs`; what both share is here.

mod cluster;
mod single;

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use fibcache_core::{Config, Error, Result};
use redis::{ConnectionInfo, IntoConnectionInfo};

/// The address used when neither `REDIS_URL` nor `REDIS_ADDR` is set (the article's default).
pub const DEFAULT_ADDR: &str = "127.0.0.1:6379";

/// The settings of one Redis server; a cluster's are read from `REDIS_CLUSTER_NODES` alone.
const SINGLE_SETTINGS: [&str; 4] = ["REDIS_URL", "REDIS_ADDR", "REDIS_PASSWORD", "REDIS_DB"];

/// The settings of the `redis` backend, parsed and checked.
///
/// Built with [`RedisConfig::from_config`] from these settings, each looked up with
/// [`Config::var`] (an explicit [`Config::with_var`] first, then the process environment):
///
/// | setting | meaning |
/// |---|---|
/// | `REDIS_CLUSTER_NODES` | `redis://[[user]:password@]host[:port],redis://...`: seed nodes of a Redis Cluster (cluster mode); none of the four below may be set with it |
/// | `REDIS_URL` | `redis://[[user]:password@]host[:port][/db]`; when set, the three below are ignored |
/// | `REDIS_ADDR` | `host:port` (default `127.0.0.1:6379`) |
/// | `REDIS_PASSWORD` | password sent with `AUTH` (default: none) |
/// | `REDIS_DB` | database index (default `0`) |
///
/// In cluster mode the client learns every node of the cluster from the seeds it reaches, so
/// the seeds need not be all of them. Every seed URL carries the same user, password and
/// database: a cluster has one set of credentials.
///
/// The client's connection and response timeouts are [`Config::op_timeout`]
/// (`--cache-timeout` / `FIB_CACHE_TIMEOUT`). `REDIS_TIMEOUT_MS`, which once overrode it, is
/// no longer read: setting it logs a warning and changes nothing. The longest value worth
/// reading is [`Config::max_value_len`] (the server sets it to 19 bytes).
///
/// `Debug` is written by hand: it shows the endpoint, database and user, and whether a
/// password is set, never the password itself nor the URLs it came in.
#[derive(Clone)]
pub struct RedisConfig {
    /// Everything the client needs to connect, the password included; handed to the client
    /// and never formatted.
    target: Target,
    /// `host:port` (or socket path), comma-separated seeds for a cluster: the rendering of the
    /// target that cannot carry a secret, so it is the only one that goes into log lines and
    /// error messages.
    endpoint: String,
    /// The password once more, so that any message built from a client error can be scrubbed
    /// of it before it leaves this backend.
    password: Option<String>,
    /// How long the client waits for a connection attempt and for each reply: the caller's
    /// per-operation limit.
    op_timeout: Duration,
    /// The longest value a read transfers: a longer one is refused by its length, inside
    /// Redis, so that a huge value planted under a key costs neither memory nor time. `None`:
    /// no bound, a plain `GET`.
    max_value_len: Option<NonZeroUsize>,
    /// Which setting the target came from, for messages that tell the operator what to fix.
    source: &'static str,
}

/// What the backend connects to.
#[derive(Clone)]
pub(crate) enum Target {
    /// One Redis server.
    Single(ConnectionInfo),
    /// The seed nodes of a Redis Cluster, at least one, all with the same credentials.
    Cluster(Vec<ConnectionInfo>),
}

impl RedisConfig {
    /// Reads and checks the backend's settings.
    ///
    /// Nothing is connected yet: only what can be checked without a server is checked here
    /// (a wrong password or a database the server does not have is found when connecting).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](fibcache_core::ErrorKind::Config) for a `REDIS_URL` that is not a Redis URL, a `REDIS_ADDR` that is not
    /// `host:port`, a `REDIS_DB` that is not a database index, a `REDIS_CLUSTER_NODES` that is
    /// not a list of Redis URLs with the same credentials, `REDIS_CLUSTER_NODES` together with
    /// any setting of one server, or an operation timeout of zero.
    pub fn from_config(config: &Config) -> Result<Self> {
        if config.var("REDIS_TIMEOUT_MS").is_some() {
            tracing::warn!(
                backend = "redis",
                "REDIS_TIMEOUT_MS is no longer read; the limit of every Redis operation is \
                 --cache-timeout (FIB_CACHE_TIMEOUT)"
            );
        }
        let op_timeout = config.op_timeout();
        if op_timeout.is_zero() {
            return Err(config_error(
                "the operation timeout must be longer than 0 ms (--cache-timeout)",
            ));
        }
        let single_settings = || {
            SINGLE_SETTINGS
                .into_iter()
                .filter(|name| config.var(name).is_some())
                .collect::<Vec<&str>>()
        };
        let (target, source) = if let Some(nodes) = config.var("REDIS_CLUSTER_NODES") {
            let mixed = single_settings();
            if !mixed.is_empty() {
                return Err(config_error(format!(
                    "REDIS_CLUSTER_NODES (a Redis Cluster) and {} (one Redis server) are both \
                     set; unset one of them (a cluster's password goes in its node URLs)",
                    mixed.join(", ")
                )));
            }
            let nodes = cluster::parse_nodes(&nodes)?;
            (Target::Cluster(nodes), "REDIS_CLUSTER_NODES")
        } else if let Some(url) = config.var("REDIS_URL") {
            let mut ignored = single_settings();
            ignored.retain(|name| *name != "REDIS_URL");
            if !ignored.is_empty() {
                tracing::warn!(
                    backend = "redis",
                    ignored = %ignored.join(", "),
                    "REDIS_URL is set, so the other Redis settings are ignored"
                );
            }
            let info = parse_url(&url, "REDIS_URL")?;
            (Target::Single(info), "REDIS_URL")
        } else {
            (Target::Single(single::from_parts(config)?), "REDIS_ADDR")
        };
        let (endpoint, first) = match &target {
            Target::Single(info) => (info.addr().to_string(), info),
            Target::Cluster(nodes) => {
                let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
                (addrs.join(","), &nodes[0])
            }
        };
        let password = first.redis_settings().password().map(str::to_owned);
        Ok(RedisConfig {
            target,
            endpoint,
            password,
            op_timeout,
            max_value_len: config.max_value_len(),
            source,
        })
    }

    /// Where the backend connects: `host:port`, or the path of a Unix socket; in cluster mode
    /// the seed nodes' `host:port`, comma-separated.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether this is a Redis Cluster (`REDIS_CLUSTER_NODES`) rather than one server.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The database index selected after connecting.
    pub fn db(&self) -> i64 {
        self.first().redis_settings().db()
    }

    /// How long the client waits for a connection attempt and for each reply.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// The longest value a read transfers, if bounded ([`Config::max_value_len`]).
    pub fn max_value_len(&self) -> Option<NonZeroUsize> {
        self.max_value_len
    }

    /// The setting that named the server (`REDIS_URL`, `REDIS_ADDR` or
    /// `REDIS_CLUSTER_NODES`), for messages.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The setting that holds the password, for messages about credentials.
    pub(crate) fn password_setting(&self) -> &'static str {
        match self.source {
            "REDIS_ADDR" => "REDIS_PASSWORD",
            url_or_nodes => url_or_nodes,
        }
    }

    /// The setting that holds the database index, for messages about it.
    pub(crate) fn db_setting(&self) -> &'static str {
        match self.source {
            "REDIS_URL" => "the /db of REDIS_URL",
            "REDIS_CLUSTER_NODES" => "the /db of REDIS_CLUSTER_NODES",
            _ => "REDIS_DB",
        }
    }

    /// `redis at <endpoint>`, or `redis cluster at <seeds>`: how messages name the target.
    pub(crate) fn at(&self) -> String {
        match self.target {
            Target::Single(_) => format!("redis at {}", self.endpoint),
            Target::Cluster(_) => format!("redis cluster at {}", self.endpoint),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The one server, or the first seed: whose settings (user, database) stand for all.
    fn first(&self) -> &ConnectionInfo {
        match &self.target {
            Target::Single(info) => info,
            Target::Cluster(nodes) => &nodes[0],
        }
    }

    /// `message` with every occurrence of the password replaced by `***`.
    ///
    /// Redis does not echo passwords and the client redacts them, but a message that reaches a
    /// log is checked here anyway: one wrong assumption about a dependency's error text must
    /// not become a leaked secret.
    pub(crate) fn redact(&self, message: &str) -> String {
        match self.password.as_deref() {
            Some(password) if !password.is_empty() => message.replace(password, "***"),
            _ => message.to_owned(),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = self.first().redis_settings();
        f.debug_struct("RedisConfig")
            .field("endpoint", &self.endpoint)
            .field("cluster", &self.is_cluster())
            .field("db", &settings.db())
            .field("username", &settings.username())
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("op_timeout", &self.op_timeout)
            .field("max_value_len", &self.max_value_len)
            .field("source", &self.source)
            .finish()
    }
}

/// The error for a setting the operator has to change.
pub(crate) fn config_error(message: impl Into<String>) -> Error {
    Error::config("redis", message)
}

/// Parses the Redis URL `raw`, which `setting` names in messages (`REDIS_URL`, or one node of
/// `REDIS_CLUSTER_NODES`). The URL may hold the password, so no message quotes it.
fn parse_url(raw: &str, setting: &str) -> Result<ConnectionInfo> {
    let url = redis::parse_redis_url(raw.trim()).ok_or_else(|| {
        config_error(format!(
            "{setting} is not a Redis URL; expected redis://[[user]:password@]host[:port][/db]"
        ))
    })?;
    let password = url.password().map(str::to_owned);
    let info = url.into_connection_info().map_err(|err| {
        let message = format!("{setting} is not usable: {}", super::error::describe(&err));
        config_error(match password.as_deref() {
            Some(p) if !p.is_empty() => message.replace(p, "***"),
            _ => message,
        })
    })?;
    if info.redis_settings().db() < 0 {
        return Err(config_error(format!(
            "the database in {setting} must be 0 or more, got {}",
            info.redis_settings().db()
        )));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config that sees none of the developer's own `REDIS_*` variables: an empty explicit
    /// value counts as unset and hides the environment's.
    pub(super) fn clean() -> Config {
        ["REDIS_CLUSTER_NODES"]
            .into_iter()
            .chain(SINGLE_SETTINGS)
            .fold(Config::default(), |c, name| c.with_var(name, ""))
    }

    pub(super) fn message(err: Error) -> String {
        assert!(err.is_config(), "expected a config error, got {err:?}");
        assert_eq!(err.backend_name(), "redis");
        err.message().unwrap().to_owned()
    }

    #[test]
    fn defaults_to_the_local_server_and_the_core_timeout() {
        let config = RedisConfig::from_config(&clean()).unwrap();
        assert_eq!(config.endpoint(), "127.0.0.1:6379");
        assert!(!config.is_cluster());
        assert_eq!(config.db(), 0);
        assert_eq!(config.op_timeout(), Duration::from_millis(250));
        assert_eq!(config.source(), "REDIS_ADDR");
        assert!(config.first().redis_settings().password().is_none());
        assert_eq!(
            config.max_value_len(),
            Some(fibcache_core::DEFAULT_MAX_VALUE_LEN),
            "the default bound unless the caller sets one"
        );
        let unbounded = RedisConfig::from_config(&clean().without_max_value_len()).unwrap();
        assert_eq!(unbounded.max_value_len(), None);
        let bounded = clean().with_max_value_len(NonZeroUsize::new(19).unwrap());
        let config = RedisConfig::from_config(&bounded).unwrap();
        assert_eq!(config.max_value_len(), NonZeroUsize::new(19));
    }

    #[test]
    fn the_url_wins_over_the_separate_settings() {
        let config = RedisConfig::from_config(
            &clean()
                .with_var("REDIS_URL", "redis://:hunter2@10.1.2.3:7000/4")
                .with_var("REDIS_ADDR", "192.0.2.1:1")
                .with_var("REDIS_DB", "9"),
        )
        .unwrap();
        assert_eq!(config.endpoint(), "10.1.2.3:7000");
        assert_eq!(config.db(), 4);
        assert_eq!(config.source(), "REDIS_URL");
        assert_eq!(config.at(), "redis at 10.1.2.3:7000");
        let settings = config.first().redis_settings();
        assert_eq!(settings.password(), Some("hunter2"));
    }

    #[test]
    fn a_bad_db_in_the_url_is_a_config_error() {
        let err =
            RedisConfig::from_config(&clean().with_var("REDIS_URL", "redis://h/x")).unwrap_err();
        assert!(message(err).contains("REDIS_URL"));
    }

    #[test]
    fn a_malformed_url_is_a_config_error_that_does_not_quote_it() {
        for bad in [
            "hunter2",
            "http://:hunter2@127.0.0.1:6379",
            "redis://:hunter2@127.0.0.1:port",
            "redis://:hunter2@/0",
        ] {
            let err = RedisConfig::from_config(&clean().with_var("REDIS_URL", bad)).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{bad}: {text}");
            assert!(message(err).contains("REDIS_URL"), "{bad}");
        }
    }

    #[test]
    fn the_operation_timeout_is_the_callers_and_redis_timeout_ms_changes_nothing() {
        let limit = Duration::from_millis(700);
        for value in ["", "1500", "1", "fast", "0"] {
            let config = clean()
                .with_op_timeout(limit)
                .with_var("REDIS_TIMEOUT_MS", value);
            let config = RedisConfig::from_config(&config).unwrap();
            assert_eq!(config.op_timeout(), limit, "REDIS_TIMEOUT_MS={value}");
        }
        let zero = clean().with_op_timeout(Duration::ZERO);
        assert!(message(RedisConfig::from_config(&zero).unwrap_err()).contains("--cache-timeout"));
    }

    #[test]
    fn debug_never_shows_the_password() {
        for config in [
            clean().with_var("REDIS_URL", "redis://user:hunter2@127.0.0.1:6379/1"),
            clean().with_var("REDIS_PASSWORD", "hunter2"),
            clean().with_var(
                "REDIS_CLUSTER_NODES",
                "redis://user:hunter2@127.0.0.1:7000,redis://user:hunter2@127.0.0.1:7001",
            ),
        ] {
            let config = RedisConfig::from_config(&config).unwrap();
            let debug = format!("{config:?} {config:#?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
        }
    }

    #[test]
    fn redact_scrubs_the_password_from_any_message() {
        let config =
            RedisConfig::from_config(&clean().with_var("REDIS_PASSWORD", "hunter2")).unwrap();
        assert_eq!(config.redact("AUTH hunter2 failed"), "AUTH *** failed");
        let open = RedisConfig::from_config(&clean()).unwrap();
        assert_eq!(open.redact("nothing to hide"), "nothing to hide");
    }
}
