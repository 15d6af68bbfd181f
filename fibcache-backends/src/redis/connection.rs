//! The one connection every operation goes through: to one Redis server, or to a Redis Cluster.
//!
//! Both are the `redis` crate's own, each with its reconnect policy and with the caller's
//! per-operation limit as its connection and response timeouts:
//! - one server: a [`ConnectionManager`], a multiplexed connection that replaces itself when it
//!   drops, trying again a few times each time a connection attempt fails;
//! - a cluster: the crate's cluster connection, which learns the nodes and their slots from the
//!   seeds, keeps a multiplexed connection to each node, follows `MOVED`/`ASK` redirects,
//!   reconnects to a node that dropped in the background, and gives every request a few
//!   retries within the same time limit.
//!
//! [`Connection`] is either, and implements the client's own `ConnectionLike` by handing each
//! command or pipeline to the one it holds, so that every operation of the backend is written
//! once and runs the same in both modes.

use std::time::Duration;

use fibcache_core::Result;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, Pipeline, RedisFuture, RedisResult, Value,
};

use super::config::{config_error, RedisConfig, Target};
use super::error::{describe, misconfiguration, not_a_cluster_node};

// Reconnecting is the client's job, with these settings. After a failed connection attempt
// the connection manager tries again up to 3 times, pausing 100, 200, then 250 ms (doubling
// from `RETRY_MIN_DELAY`, capped at `RETRY_MAX_DELAY`; the client adds up to as much again as
// jitter): a reconnect cycle lasts 0.55 to 1.1 s and tries at least every 0.5 s.
// - Short, because a call made during a cycle waits for its outcome: at most about a second
//   for a `RedisCache` used on its own (the server stops waiting at `--cache-timeout`).
// - Not shorter, because a failed cycle restarts only with the next call, which the server
//   makes after skipping the cache for a second. A cycle about that long is running most of
//   the time during an outage, so a restarted Redis is used again within about a second of
//   coming back (1.5 s at worst, when it comes back between cycles), while most calls find
//   the last cycle over and fail at once.
// The client's defaults (6 retries, pauses of up to 60 s) would make a cycle last 6 to 13 s.
//
// The cluster client retries a request (after a redirect, a lost node, `TRYAGAIN`) up to the
// same 3 times, pausing 100 ms where it pauses, so that a key whose node is down fails with its
// cause within a few hundred milliseconds rather than at the time limit; its defaults (16
// retries, pauses from 1.28 s) would always end at the limit. It reconnects to a lost node in the
// background by itself (every 50 ms to 1 s), and to the seeds when it knows no node at all.
const RETRIES: usize = 3;
const RETRY_MIN_DELAY: Duration = Duration::from_millis(100);
const RETRY_MAX_DELAY: Duration = Duration::from_millis(250);

/// The connection to one server or to a cluster, cheap to clone (clones share it).
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// The connection for `config`, created without waiting for Redis: it connects in the
    /// background (a cluster) or on the first command (one server), and again whenever it
    /// has to. Must be called within a tokio runtime.
    pub(super) fn open(config: &RedisConfig) -> RedisResult<Connection> {
        match config.target() {
            Target::Single(info) => {
                let client = Client::open(info.clone())?;
                ConnectionManager::new_lazy_with_config(client, manager_config(config))
                    .map(Connection::Single)
            }
            Target::Cluster(nodes) => {
                let client = cluster_client(config, nodes)?;
                let connection = client
                    .get_pending_async_connection_with_config(cluster_config(config.op_timeout()));
                Ok(Connection::Cluster(connection))
            }
        }
    }

    /// The start-up check: one `PING` to the server, or to each seed of a cluster in turn
    /// (followed by the `CLUSTER SLOTS` the cluster client asks every node) until one answers.
    /// `Ok(None)`: it answered. `Ok(Some(cause))`: it could not be reached, for a reason that
    /// may go away by itself (down, slow, busy); `cause` is scrubbed of the password.
    ///
    /// A cluster's seeds are asked over connections of their own because the cluster client
    /// reports a failure to reach every seed as one I/O error, whatever the seeds answered: a
    /// wrong password would read as an outage.
    ///
    /// # Errors
    /// [`fibcache_core::Error::Config`] when Redis answered but refused the settings.
    pub(super) async fn check(&self, config: &RedisConfig) -> Result<Option<String>> {
        let nodes = match config.target() {
            Target::Cluster(nodes) => nodes,
            Target::Single(_) => {
                let ping = redis::cmd("PING")
                    .query_async::<()>(&mut self.clone())
                    .await;
                return match ping {
                    Ok(()) => Ok(None),
                    Err(err) => match misconfiguration(config, config.endpoint(), &err) {
                        Some(message) => Err(config_error(message)),
                        None => Ok(Some(config.redact(&describe(&err)))),
                    },
                };
            }
        };
        let mut causes = Vec::new();
        for node in nodes {
            let endpoint = node.addr().to_string();
            // What the seed said, and the message if only a change of settings can fix it.
            let (refusal, err) = match ping(node, config.op_timeout()).await {
                Ok(mut seed) => {
                    let mut slots = redis::cmd("CLUSTER");
                    slots.arg("SLOTS");
                    match slots.query_async::<Value>(&mut seed).await {
                        Ok(_) => return Ok(None),
                        Err(err) => (not_a_cluster_node(config, &endpoint, &err), err),
                    }
                }
                Err(err) => (misconfiguration(config, &endpoint, &err), err),
            };
            if let Some(message) = refusal {
                return Err(config_error(message));
            }
            causes.push(format!("{endpoint}: {}", describe(&err)));
        }
        Ok(Some(config.redact(&causes.join("; "))))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(manager) => manager.req_packed_command(cmd),
            Connection::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(manager) => manager.get_db(),
            Connection::Cluster(cluster) => cluster.get_db(),
        }
    }
}

/// A connection of its own to the seed `node`, which answered a `PING`.
async fn ping(node: &ConnectionInfo, timeout: Duration) -> RedisResult<impl ConnectionLike> {
    let settings = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let client = Client::open(node.clone())?;
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&settings)
        .await?;
    redis::cmd("PING")
        .query_async::<()>(&mut connection)
        .await?;
    Ok(connection)
}

/// The connection manager's settings: both timeouts are the caller's per-operation limit, and
/// reconnecting is quick and short (see `RETRIES`).
fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.op_timeout()))
        .set_response_timeout(Some(config.op_timeout()))
        .set_number_of_retries(RETRIES)
        .set_min_delay(RETRY_MIN_DELAY)
        .set_max_delay(RETRY_MAX_DELAY)
}

/// The cluster client for the seeds `nodes`: every connection and reply, and each request
/// with all its retries and redirects, waits at most the caller's per-operation limit, and a
/// request is retried quickly and briefly (see `RETRIES`).
fn cluster_client(config: &RedisConfig, nodes: &[ConnectionInfo]) -> RedisResult<ClusterClient> {
    let ms = |delay: Duration| delay.as_millis() as u64;
    // The limit of a whole request follows the response timeout set here.
    ClusterClientBuilder::new(nodes.iter().cloned())
        .connection_timeout(config.op_timeout())
        .response_timeout(config.op_timeout())
        .retries(RETRIES as u32)
        .min_retry_wait(ms(RETRY_MIN_DELAY))
        .max_retry_wait(ms(RETRY_MAX_DELAY))
        .build()
}

/// The timeouts a cluster connection is opened with, which replace the client's: both must be
/// given again, or the response timeout would be none.
fn cluster_config(timeout: Duration) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
}

#[cfg(test)]
mod tests {
    use fibcache_core::Config;

    use super::*;

    fn settings(var: &str, value: &str) -> RedisConfig {
        let config = Config::default()
            .with_var("REDIS_CLUSTER_NODES", "")
            .with_var("REDIS_URL", "")
            .with_var(var, value)
            .with_op_timeout(Duration::from_millis(700));
        RedisConfig::from_config(&config).unwrap()
    }

    #[test]
    fn the_client_waits_at_most_the_operation_timeout() {
        let config = settings("REDIS_URL", "redis://127.0.0.1:6379");
        let manager = manager_config(&config);
        let limit = Some(Duration::from_millis(700));
        assert_eq!(manager.connection_timeout(), limit);
        assert_eq!(manager.response_timeout(), limit);
    }

    #[test]
    fn the_cluster_client_waits_at_most_the_operation_timeout_for_a_whole_request() {
        let config = settings("REDIS_CLUSTER_NODES", "redis://:pw-7@127.0.0.1:7000");
        let Target::Cluster(nodes) = config.target() else {
            panic!("cluster mode expected")
        };
        // The client exposes its settings only through `Debug` (which redacts the password).
        let client = format!("{:?}", cluster_client(&config, nodes).unwrap());
        for field in [
            "connection_timeout: 700ms",
            "response_timeout: Some(700ms)",
            "overall_response_timeout: Some(700ms)",
            "number_of_retries: 3",
        ] {
            assert!(client.contains(field), "{field} in {client}");
        }
        assert!(!client.contains("pw-7"), "{client}");
        let opened = format!("{:?}", cluster_config(config.op_timeout()));
        assert!(
            opened.contains("connection_timeout: Some(700ms)"),
            "{opened}"
        );
        assert!(opened.contains("response_timeout: Some(700ms)"), "{opened}");
    }
}
