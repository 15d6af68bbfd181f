//! Where the `redis` backend connects and how long its client waits, read from the factory's
//! [`Config`].
//!
//! Reading the settings is kept apart from connecting so that every mistake an operator can
//! make in them is reported before any socket is opened, and so that the one type that holds
//! the password is small enough to check that it never prints it.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use fibcache_core::{Config, Error, Result};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// The port Redis listens on unless told otherwise.
const DEFAULT_PORT: u16 = 6379;

/// The address used when neither `REDIS_URL` nor `REDIS_ADDR` is set (the article's default).
pub const DEFAULT_ADDR: &str = "127.0.0.1:6379";

/// The settings of the `redis` backend, parsed and checked.
///
/// Built with [`RedisConfig::from_config`] from these settings, each looked up with
/// [`Config::var`] (an explicit [`Config::with_var`] first, then the process environment):
///
/// | setting | meaning |
/// |---|---|
/// | `REDIS_URL` | `redis://[[user]:password@]host[:port][/db]`; when set, the three below are ignored |
/// | `REDIS_ADDR` | `host:port` (default `127.0.0.1:6379`) |
/// | `REDIS_PASSWORD` | password sent with `AUTH` (default: none) |
/// | `REDIS_DB` | database index (default `0`) |
///
/// The client's connection and response timeouts are [`Config::op_timeout`]
/// (`--cache-timeout` / `FIB_CACHE_TIMEOUT`). `REDIS_TIMEOUT_MS`, which once overrode it, is
/// no longer read: setting it logs a warning and changes nothing. The longest value worth
/// reading is [`Config::max_value_len`] (the server sets it to 19 bytes).
///
/// `Debug` is written by hand: it shows the endpoint, database and user, and whether a
/// password is set, never the password itself nor the URL it came in.
#[derive(Clone)]
pub struct RedisConfig {
    /// Everything the client needs to connect, the password included; handed to the client
    /// and never formatted.
    info: ConnectionInfo,
    /// `host:port` (or socket path): the rendering of the target that cannot carry a secret,
    /// so it is the only one that goes into log lines and error messages.
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

impl RedisConfig {
    /// Reads and checks the backend's settings.
    ///
    /// Nothing is connected yet: only what can be checked without a server is checked here
    /// (a wrong password or a database the server does not have is found when connecting).
    ///
    /// # Errors
    /// [`Error::Config`] for a `REDIS_URL` that is not a Redis URL, a `REDIS_ADDR` that is not
    /// `host:port`, a `REDIS_DB` that is not a database index, or an operation timeout of zero.
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
        let (info, source) = match config.var("REDIS_URL") {
            Some(url) => {
                let ignored: Vec<&str> = ["REDIS_ADDR", "REDIS_PASSWORD", "REDIS_DB"]
                    .into_iter()
                    .filter(|name| config.var(name).is_some())
                    .collect();
                if !ignored.is_empty() {
                    tracing::warn!(
                        backend = "redis",
                        ignored = %ignored.join(", "),
                        "REDIS_URL is set, so the other Redis settings are ignored"
                    );
                }
                (parse_url(&url)?, "REDIS_URL")
            }
            None => (from_parts(config)?, "REDIS_ADDR"),
        };
        let password = info.redis_settings().password().map(str::to_owned);
        let endpoint = info.addr().to_string();
        Ok(RedisConfig {
            info,
            endpoint,
            password,
            op_timeout,
            max_value_len: config.max_value_len(),
            source,
        })
    }

    /// Where the backend connects: `host:port`, or the path of a Unix socket.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The database index selected after connecting.
    pub fn db(&self) -> i64 {
        self.info.redis_settings().db()
    }

    /// How long the client waits for a connection attempt and for each reply.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// The longest value a read transfers, if bounded ([`Config::max_value_len`]).
    pub fn max_value_len(&self) -> Option<NonZeroUsize> {
        self.max_value_len
    }

    /// The setting that named the server (`REDIS_URL` or `REDIS_ADDR`), for messages.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The setting that holds the password, for messages about credentials.
    pub(crate) fn password_setting(&self) -> &'static str {
        match self.source {
            "REDIS_URL" => "REDIS_URL",
            _ => "REDIS_PASSWORD",
        }
    }

    /// The setting that holds the database index, for messages about it.
    pub(crate) fn db_setting(&self) -> &'static str {
        match self.source {
            "REDIS_URL" => "the /db of REDIS_URL",
            _ => "REDIS_DB",
        }
    }

    pub(crate) fn connection_info(&self) -> &ConnectionInfo {
        &self.info
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
        let settings = self.info.redis_settings();
        f.debug_struct("RedisConfig")
            .field("endpoint", &self.endpoint)
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
    Error::Config {
        backend: "redis".to_owned(),
        message: message.into(),
    }
}

fn parse_url(raw: &str) -> Result<ConnectionInfo> {
    // The URL may hold the password, so no message below quotes it.
    let url = redis::parse_redis_url(raw.trim()).ok_or_else(|| {
        config_error(
            "REDIS_URL is not a Redis URL; expected redis://[[user]:password@]host[:port][/db]",
        )
    })?;
    let password = url.password().map(str::to_owned);
    let info = url.into_connection_info().map_err(|err| {
        let message = format!("REDIS_URL is not usable: {}", super::error::describe(&err));
        config_error(match password.as_deref() {
            Some(p) if !p.is_empty() => message.replace(p, "***"),
            _ => message,
        })
    })?;
    if info.redis_settings().db() < 0 {
        return Err(config_error(format!(
            "the database in REDIS_URL must be 0 or more, got {}",
            info.redis_settings().db()
        )));
    }
    Ok(info)
}

fn from_parts(config: &Config) -> Result<ConnectionInfo> {
    let addr = config
        .var("REDIS_ADDR")
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let (host, port) = parse_addr(&addr)?;
    let db = match config.var("REDIS_DB") {
        None => 0,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(db) if db >= 0 => db,
            _ => {
                return Err(config_error(format!(
                    "REDIS_DB must be a database index (0, 1, 2, ...), got `{raw}`"
                )))
            }
        },
    };
    let mut settings = RedisConnectionInfo::default().set_db(db);
    if let Some(password) = config.var("REDIS_PASSWORD") {
        settings = settings.set_password(password);
    }
    let info = ConnectionAddr::Tcp(host, port)
        .into_connection_info()
        .map_err(|err| {
            config_error(format!(
                "REDIS_ADDR is not usable: {}",
                super::error::describe(&err)
            ))
        })?;
    Ok(info.set_redis_settings(settings))
}

/// Splits `host:port`, `host` (port 6379), `[v6]:port` or a bare IPv6 address.
fn parse_addr(raw: &str) -> Result<(String, u16)> {
    let raw = raw.trim();
    // Someone who puts a URL here may have put a password in it: do not quote it back.
    if raw.contains("://") || raw.contains('@') {
        return Err(config_error(
            "REDIS_ADDR must be host:port (e.g. 127.0.0.1:6379); put a redis:// URL in REDIS_URL",
        ));
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| config_error(format!("REDIS_ADDR `{raw}` has a `[` without its `]`")))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(config_error(format!(
                        "REDIS_ADDR `{raw}` must be [address]:port"
                    )))
                }
            },
        }
    } else {
        match raw.rsplit_once(':') {
            // More than one colon and no brackets: a bare IPv6 address.
            Some((host, _)) if host.contains(':') => (raw, None),
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    if host.is_empty() {
        return Err(config_error(format!(
            "REDIS_ADDR `{raw}` has no host; expected host:port (e.g. {DEFAULT_ADDR})"
        )));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => {
                return Err(config_error(format!(
                    "REDIS_ADDR `{raw}` has port `{port}`; expected a number from 1 to 65535"
                )))
            }
        },
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config that sees none of the developer's own `REDIS_*` variables: an empty explicit
    /// value counts as unset and hides the environment's.
    fn clean() -> Config {
        ["REDIS_URL", "REDIS_ADDR", "REDIS_PASSWORD", "REDIS_DB"]
            .into_iter()
            .fold(Config::default(), |c, name| c.with_var(name, ""))
    }

    fn message(err: Error) -> String {
        match err {
            Error::Config { backend, message } => {
                assert_eq!(backend, "redis");
                message
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_to_the_local_server_and_the_core_timeout() {
        let config = RedisConfig::from_config(&clean()).unwrap();
        assert_eq!(config.endpoint(), "127.0.0.1:6379");
        assert_eq!(config.db(), 0);
        assert_eq!(config.op_timeout(), Duration::from_millis(250));
        assert_eq!(config.source(), "REDIS_ADDR");
        assert!(config
            .connection_info()
            .redis_settings()
            .password()
            .is_none());
        assert_eq!(
            config.max_value_len(),
            None,
            "no bound unless the caller sets one"
        );
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
        let settings = config.connection_info().redis_settings();
        assert_eq!(settings.password(), Some("hunter2"));
    }

    #[test]
    fn separate_settings_build_the_target() {
        let config = RedisConfig::from_config(
            &clean()
                .with_var("REDIS_ADDR", "cache.internal:6380")
                .with_var("REDIS_PASSWORD", "s3cret")
                .with_var("REDIS_DB", "2"),
        )
        .unwrap();
        assert_eq!(config.endpoint(), "cache.internal:6380");
        assert_eq!(config.db(), 2);
        let settings = config.connection_info().redis_settings();
        assert_eq!(settings.password(), Some("s3cret"));
    }

    #[test]
    fn addresses_with_and_without_port_and_ipv6() {
        assert_eq!(
            parse_addr("example.org").unwrap(),
            ("example.org".into(), 6379)
        );
        assert_eq!(parse_addr(" 10.0.0.1:7 ").unwrap(), ("10.0.0.1".into(), 7));
        assert_eq!(parse_addr("[::1]:6380").unwrap(), ("::1".into(), 6380));
        assert_eq!(parse_addr("[::1]").unwrap(), ("::1".into(), 6379));
        assert_eq!(parse_addr("::1").unwrap(), ("::1".into(), 6379));
    }

    #[test]
    fn bad_addresses_are_config_errors() {
        for bad in [
            ":6379",
            "host:",
            "host:http",
            "host:0",
            "host:70000",
            "[::1",
            "[::1]x",
        ] {
            let err = parse_addr(bad).unwrap_err();
            assert!(message(err).contains("REDIS_ADDR"), "{bad}");
        }
    }

    #[test]
    fn a_url_in_redis_addr_is_refused_without_quoting_it() {
        let err = RedisConfig::from_config(
            &clean().with_var("REDIS_ADDR", "redis://:hunter2@127.0.0.1:6379"),
        )
        .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("REDIS_URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_bad_db_index_is_a_config_error() {
        for bad in ["one", "-1", "1.5"] {
            let err = RedisConfig::from_config(&clean().with_var("REDIS_DB", bad)).unwrap_err();
            assert!(message(err).contains("REDIS_DB"), "{bad}");
        }
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
