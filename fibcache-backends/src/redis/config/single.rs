//! One Redis server named by its parts: `REDIS_ADDR`, `REDIS_PASSWORD` and `REDIS_DB`, the
//! article's settings (`REDIS_URL` is read by the parent module, which cluster nodes share).

use fibcache_core::{Config, Result};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use super::{config_error, DEFAULT_ADDR};
use crate::redis::error::describe;

/// The port Redis listens on unless told otherwise.
const DEFAULT_PORT: u16 = 6379;

/// The server named by `REDIS_ADDR` (default [`DEFAULT_ADDR`]), with `REDIS_PASSWORD` and
/// `REDIS_DB`.
pub(super) fn from_parts(config: &Config) -> Result<ConnectionInfo> {
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
        .map_err(|err| config_error(format!("REDIS_ADDR is not usable: {}", describe(&err))))?;
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
    use super::super::tests::{clean, message};
    use super::super::RedisConfig;
    use super::*;

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
        let settings = config.first().redis_settings();
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
    }
}
