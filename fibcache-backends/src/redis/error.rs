//! How the `redis` client's errors become fibcache's: classified by their kind, never by their
//! text, and scrubbed of the password.
//!
//! An operation's failure is [`ErrorKind::Unavailable`](fibcache_core::ErrorKind::Unavailable) when Redis could not be reached, did not
//! answer in time, or said it is not serving now, so that the server skips it for a moment;
//! any other failure is [`ErrorKind::Backend`](fibcache_core::ErrorKind::Backend). At start-up, the errors that only a change of
//! settings can fix become the message of an [`ErrorKind::Config`](fibcache_core::ErrorKind::Config).

use std::fmt;

use fibcache_core::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::RedisConfig;

/// A failed operation as this crate's [`Error`]: [`ErrorKind::Unavailable`](fibcache_core::ErrorKind::Unavailable) when Redis could not be
/// reached, did not answer in time, or said it is not serving now; [`ErrorKind::Backend`](fibcache_core::ErrorKind::Backend) for any
/// other failure. The message names the endpoint and is scrubbed of the password.
pub(super) fn operation_error(config: &RedisConfig, err: &RedisError) -> Error {
    let cause = if err.is_timeout() {
        format!("no answer within {:?}", config.op_timeout())
    } else {
        describe(err)
    };
    let failure = Failure(config.redact(&format!("{}: {cause}", config.at())));
    // Besides I/O and the "not now" replies, two that only a cluster client returns once its
    // retries are spent: `ClusterConnectionNotFound` (no connection to any node, the cluster's
    // form of "refused"), and a `MOVED`/`ASK` redirect it could not follow (the key's node is
    // down, or its slot is moving). Both say the key cannot be served now. (One server sends a
    // redirect only when `REDIS_URL` names one node of a cluster.)
    let not_serving = matches!(
        err.kind(),
        ErrorKind::Io
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            )
    );
    if not_serving {
        Error::unavailable("redis", failure)
    } else {
        Error::backend("redis", failure)
    }
}

/// The commands this backend runs, for the message to a user Redis's ACL does not allow them.
/// (`GET`, `PEXPIRE` and `DEL` are run by the claims' Lua scripts; ACLs apply there too.)
const COMMANDS: &str = "PING, GET, GETRANGE, EXISTS, SET, PTTL, EVALSHA, EVAL, PEXPIRE and DEL";

/// The message for an error of the start-up `PING` to `endpoint` (the server, or one seed of a
/// cluster) that only a change of settings can fix, scrubbed of the password; `None` for one
/// that may go away by itself (Redis down, unreachable, slow or busy).
pub(super) fn misconfiguration(
    config: &RedisConfig,
    endpoint: &str,
    err: &RedisError,
) -> Option<String> {
    let password = config.password_setting();
    let message = match err.kind() {
        // `WRONGPASS` is the reply to `HELLO ... AUTH` (a RESP3 URL), which the client does not
        // turn into `AuthenticationFailed`.
        kind if kind == ErrorKind::AuthenticationFailed || err.code() == Some("WRONGPASS") => {
            format!(
                "redis at {endpoint} refused the credentials; check the password (and user) \
                 in {password}"
            )
        }
        ErrorKind::Extension if err.code() == Some("NOAUTH") => {
            format!("redis at {endpoint} requires a password; give it in {password}")
        }
        ErrorKind::Server(ServerErrorKind::NoPerm) => format!(
            "redis at {endpoint} does not let this user run {}{COMMANDS}: {}",
            if config.is_cluster() {
                "CLUSTER SLOTS, "
            } else {
                ""
            },
            describe(err)
        ),
        // Nothing but the connection set-up answers a `PING` with a plain error: the `SELECT`
        // of the database, when there is one to select.
        ErrorKind::Server(ServerErrorKind::ResponseError) if config.db() != 0 => format!(
            "redis at {endpoint} refused to select database {} ({}); check {}",
            config.db(),
            err.detail().unwrap_or("no reason given"),
            config.db_setting()
        ),
        ErrorKind::Server(ServerErrorKind::ResponseError) => {
            format!(
                "redis at {endpoint} refused the connection: {}",
                describe(err)
            )
        }
        ErrorKind::InvalidClientConfig | ErrorKind::RESP3NotSupported => {
            format!("{} is not usable: {}", config.source(), describe(err))
        }
        // The peer is no Redis server. Not an outage to wait out: the connection manager does
        // not reconnect after an error that is not I/O.
        ErrorKind::Parse => format!(
            "{endpoint} does not answer like a Redis server; check {}",
            config.source()
        ),
        _ => return None,
    };
    Some(config.redact(&message))
}

/// The message for a seed of a cluster that answered `PING` but refused `CLUSTER SLOTS` (which
/// the cluster client asks every node it connects to), when only a change of settings can fix
/// it: a server that is not a cluster node, or a user not allowed to ask.
pub(super) fn not_a_cluster_node(
    config: &RedisConfig,
    endpoint: &str,
    err: &RedisError,
) -> Option<String> {
    let message = match err.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => {
            return misconfiguration(config, endpoint, err)
        }
        ErrorKind::Server(ServerErrorKind::ResponseError) => format!(
            "redis at {endpoint} is not a cluster node ({}); for one Redis server set REDIS_URL \
             instead of REDIS_CLUSTER_NODES",
            err.detail().unwrap_or("CLUSTER SLOTS refused")
        ),
        _ => return None,
    };
    Some(config.redact(&message))
}

/// A client error as one line: its `Display` without the ` - KindName` the `redis` crate puts
/// after its own descriptions, and with its line breaks (a parse error has some) joined, so
/// that a start-up error stays the one line the server prints.
pub(super) fn describe(err: &RedisError) -> String {
    let text = err.to_string();
    let text = text.replacen(&format!(" - {:?}", err.kind()), "", 1);
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What went wrong in the client, as a message already scrubbed of the password.
///
/// The client's own error is not kept as a `source`: its text has been checked and redacted
/// here, and a chain would bypass that.
#[derive(Debug)]
pub(super) struct Failure(pub(super) String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use std::io;

    use fibcache_core::Config;

    use super::*;

    /// The settings `vars` on top of none from the developer's environment.
    fn settings(vars: &[(&str, &str)]) -> RedisConfig {
        let clean = [
            "REDIS_CLUSTER_NODES",
            "REDIS_URL",
            "REDIS_ADDR",
            "REDIS_PASSWORD",
            "REDIS_DB",
        ]
        .into_iter()
        .fold(Config::default(), |c, name| c.with_var(name, ""));
        let config = vars.iter().fold(clean, |c, (k, v)| c.with_var(*k, *v));
        RedisConfig::from_config(&config).unwrap()
    }

    /// The client's error for the error reply `line`, as it comes off the wire.
    fn reply(line: &str) -> RedisError {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes())
            .and_then(|value| value.extract_error())
            .unwrap_err()
    }

    fn io_error(kind: io::ErrorKind) -> RedisError {
        io::Error::from(kind).into()
    }

    /// The client's error for a value that is not UTF-8, read as a `String`.
    fn not_utf8() -> RedisError {
        let value = redis::Value::BulkString(vec![0xff]);
        redis::from_redis_value::<String>(value).unwrap_err().into()
    }

    fn is_unavailable(err: &RedisError) -> bool {
        let error = operation_error(&settings(&[]), err);
        assert_eq!(error.backend_name(), "redis");
        match error.kind() {
            fibcache_core::ErrorKind::Unavailable => true,
            fibcache_core::ErrorKind::Backend => false,
            _ => panic!("an operation failed with {error:?}"),
        }
    }

    #[test]
    fn outages_and_not_serving_replies_are_unavailable() {
        use io::ErrorKind::*;
        for kind in [
            ConnectionRefused,
            ConnectionReset,
            BrokenPipe,
            UnexpectedEof,
            TimedOut,
        ] {
            assert!(is_unavailable(&io_error(kind)), "{kind:?}");
        }
        for line in [
            "LOADING Redis is loading the dataset in memory",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "MASTERDOWN Link with MASTER is down",
        ] {
            assert!(is_unavailable(&reply(line)), "{line}");
        }
    }

    #[test]
    fn other_error_replies_and_bad_values_are_backend_errors() {
        for line in [
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "ERR syntax error",
            "READONLY You can't write against a read only replica.",
            "NOAUTH Authentication required.",
            "OOM command not allowed when used memory > 'maxmemory'.",
        ] {
            assert!(!is_unavailable(&reply(line)), "{line}");
        }
        assert!(!is_unavailable(&not_utf8()));
    }

    #[test]
    fn operation_errors_name_the_endpoint_and_are_scrubbed_of_the_password() {
        let config = settings(&[("REDIS_URL", "redis://:hunter2@10.9.8.7:6400")]);
        let err = operation_error(&config, &io_error(io::ErrorKind::TimedOut));
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(source, "redis at 10.9.8.7:6400: no answer within 250ms");
        let leaky = [reply("WRONGTYPE hunter2"), reply("LOADING hunter2")];
        for err in leaky
            .into_iter()
            .chain([io::Error::other("hunter2").into()])
        {
            let err = operation_error(&config, &err);
            let source = std::error::Error::source(&err).unwrap();
            let text = format!("{err} {err:?} {source} {source:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(source.source().is_none(), "the client error is not chained");
        }
    }

    #[test]
    fn settings_the_server_refuses_are_misconfigurations_naming_the_setting() {
        let url = settings(&[("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/7")]);
        let parts = settings(&[("REDIS_PASSWORD", "hunter2"), ("REDIS_DB", "7")]);
        let check = |err: RedisError, what: &str, in_url: &str, in_parts: &str| {
            for (config, setting) in [(&url, in_url), (&parts, in_parts)] {
                let message = misconfiguration(config, config.endpoint(), &err)
                    .unwrap_or_else(|| panic!("{err}"));
                assert!(message.contains(what), "{message}");
                assert!(message.contains(setting), "{message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
        };
        let (u, pw, db) = ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB");
        let refused = "refused the credentials";
        check(
            (ErrorKind::AuthenticationFailed, "auth failed").into(),
            refused,
            u,
            pw,
        );
        check(reply("WRONGPASS bad pair"), refused, u, pw);
        check(
            reply("NOAUTH Authentication required."),
            "requires a password",
            u,
            pw,
        );
        check(
            reply("NOPERM no permissions"),
            "not let this user",
            "PING",
            "PING",
        );
        let select = (
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "Redis server refused to switch database",
            "DB index is out of range".to_owned(),
        );
        let what = "select database 7 (DB index is out of range)";
        check(select.into(), what, "the /db of REDIS_URL", db);
        let invalid = (ErrorKind::InvalidClientConfig, "Invalid database number");
        check(invalid.into(), "is not usable", u, "REDIS_ADDR");
        check(
            not_utf8(),
            "not answer like a Redis server",
            u,
            "REDIS_ADDR",
        );
    }

    #[test]
    fn cluster_failures_are_classified_alike_and_name_the_cluster() {
        let seeds = "redis://:hunter2@10.0.0.1:7000,redis://:hunter2@10.0.0.2:7000";
        let config = settings(&[("REDIS_CLUSTER_NODES", seeds)]);
        let no_node: RedisError = (ErrorKind::ClusterConnectionNotFound, "No connections").into();
        for err in [
            no_node,
            reply("MOVED 5488 10.0.0.2:7000"),
            reply("ASK 5488 10.0.0.2:7000"),
            reply("CLUSTERDOWN Hash slot not served"),
            reply("TRYAGAIN Multiple keys request during rehashing of slot"),
            io_error(io::ErrorKind::ConnectionRefused),
        ] {
            let error = operation_error(&config, &err);
            assert!(error.is_unavailable(), "{err}");
            let source = std::error::Error::source(&error).unwrap().to_string();
            let at = "redis cluster at 10.0.0.1:7000,10.0.0.2:7000: ";
            assert!(source.starts_with(at), "{source}");
        }
        let wrong = (ErrorKind::AuthenticationFailed, "auth failed").into();
        let message = misconfiguration(&config, "10.0.0.2:7000", &wrong).unwrap();
        assert!(message.contains("redis at 10.0.0.2:7000 refused the credentials"));
        assert!(message.contains("REDIS_CLUSTER_NODES"), "{message}");
        let disabled = reply("ERR This instance has cluster support disabled");
        let message = not_a_cluster_node(&config, "10.0.0.1:7000", &disabled).unwrap();
        assert!(
            message.contains("not a cluster node (This instance has cluster support disabled)"),
            "{message}"
        );
        assert!(message.contains("REDIS_URL"), "{message}");
        let noperm = reply("NOPERM this user has no permissions to run 'cluster|slots'");
        let message = not_a_cluster_node(&config, "10.0.0.1:7000", &noperm).unwrap();
        assert!(message.contains("CLUSTER SLOTS, PING"), "{message}");
        let refused = io_error(io::ErrorKind::ConnectionRefused);
        assert_eq!(not_a_cluster_node(&config, "10.0.0.1:7000", &refused), None);
    }

    #[test]
    fn descriptions_are_one_line_without_the_kind_name() {
        let parse: RedisError =
            redis::parse_redis_value(b"HTTP/1.1 400 Bad Request\r\n").unwrap_err();
        // The client's text spans several lines; the description does not.
        assert!(parse.to_string().trim().lines().count() > 1, "{parse}");
        assert_eq!(describe(&parse).lines().count(), 1, "{}", describe(&parse));
        let auth: RedisError = (
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        )
            .into();
        assert_eq!(describe(&auth), "Password authentication failed");
    }

    #[test]
    fn an_outage_at_start_up_is_no_misconfiguration() {
        use io::ErrorKind::*;
        let config = settings(&[]);
        let outages = [ConnectionRefused, TimedOut, ConnectionReset].map(io_error);
        let busy = [
            reply("LOADING loading the dataset"),
            reply("MASTERDOWN link down"),
        ];
        for err in outages.into_iter().chain(busy) {
            assert_eq!(misconfiguration(&config, "h:1", &err), None, "{err}");
        }
    }
}
