//! A Redis Cluster named by its seed nodes: `REDIS_CLUSTER_NODES`.

use fibcache_core::Result;
use redis::{ConnectionAddr, ConnectionInfo};

use super::{config_error, parse_url};

/// The seed nodes in `raw`: comma-separated Redis URLs, at least one, all with the same user,
/// password, database and protocol (a cluster has one set of credentials; the client uses the
/// first node's for every node it discovers).
///
/// # Errors
/// [`fibcache_core::Error::Config`] for an empty list or entry, an entry that is not a Redis
/// URL over TCP, or nodes that disagree on credentials. No message quotes a URL, which may
/// hold the password.
pub(super) fn parse_nodes(raw: &str) -> Result<Vec<ConnectionInfo>> {
    if raw.trim().is_empty() {
        return Err(config_error(
            "REDIS_CLUSTER_NODES lists no node; expected redis://host:port,redis://host:port,...",
        ));
    }
    let mut nodes = Vec::new();
    for (i, entry) in raw.split(',').enumerate() {
        let setting = format!("node {} of REDIS_CLUSTER_NODES", i + 1);
        if entry.trim().is_empty() {
            return Err(config_error(format!(
                "{setting} is empty; expected redis://host:port,redis://host:port,..."
            )));
        }
        let info = parse_url(entry, &setting)?;
        if !matches!(info.addr(), ConnectionAddr::Tcp(..)) {
            return Err(config_error(format!(
                "{setting} is not a redis://host:port URL; a Redis Cluster is reached over TCP"
            )));
        }
        nodes.push(info);
    }
    let settings = |info: &ConnectionInfo| {
        let s = info.redis_settings();
        (
            s.username().map(str::to_owned),
            s.password().map(str::to_owned),
            s.db(),
            s.protocol(),
        )
    };
    let first = settings(&nodes[0]);
    if nodes.iter().any(|node| settings(node) != first) {
        return Err(config_error(
            "the nodes of REDIS_CLUSTER_NODES must all have the same user, password, database \
             and protocol: a cluster has one set of credentials",
        ));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{clean, message};
    use super::super::RedisConfig;

    fn nodes(raw: &str) -> fibcache_core::Result<RedisConfig> {
        RedisConfig::from_config(&clean().with_var("REDIS_CLUSTER_NODES", raw))
    }

    #[test]
    fn cluster_nodes_put_the_backend_in_cluster_mode() {
        let config = nodes(
            "redis://:hunter2@10.0.0.1:7000, redis://:hunter2@10.0.0.2:7001,\
             redis://:hunter2@cache.internal",
        )
        .unwrap();
        assert!(config.is_cluster());
        assert_eq!(
            config.endpoint(),
            "10.0.0.1:7000,10.0.0.2:7001,cache.internal:6379"
        );
        assert_eq!(config.source(), "REDIS_CLUSTER_NODES");
        assert_eq!(config.password_setting(), "REDIS_CLUSTER_NODES");
        assert_eq!(
            config.at(),
            "redis cluster at 10.0.0.1:7000,10.0.0.2:7001,cache.internal:6379"
        );
        assert_eq!(config.redact("AUTH hunter2"), "AUTH ***");
        let one = nodes("redis://127.0.0.1:7000").unwrap();
        assert!(one.is_cluster(), "one seed is enough");
    }

    #[test]
    fn cluster_nodes_with_any_setting_of_one_server_name_both() {
        let seeds = "redis://127.0.0.1:7000";
        for (setting, value) in [
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_ADDR", "127.0.0.1:6379"),
            ("REDIS_PASSWORD", "hunter2"),
            ("REDIS_DB", "1"),
        ] {
            let config = clean()
                .with_var("REDIS_CLUSTER_NODES", seeds)
                .with_var(setting, value);
            let text = message(RedisConfig::from_config(&config).unwrap_err());
            assert!(text.contains("REDIS_CLUSTER_NODES"), "{text}");
            assert!(text.contains(setting), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn a_malformed_or_empty_node_list_is_a_config_error_that_quotes_no_url() {
        for (bad, what) in [
            (" ", "lists no node"),
            (",", "node 1 of REDIS_CLUSTER_NODES is empty"),
            (
                "redis://:hunter2@h:7000,",
                "node 2 of REDIS_CLUSTER_NODES is empty",
            ),
            (
                "redis://:hunter2@h:7000,h:7001",
                "node 2 of REDIS_CLUSTER_NODES",
            ),
            ("redis://:hunter2@h:port", "node 1 of REDIS_CLUSTER_NODES"),
            ("redis+unix:///tmp/hunter2.sock", "over TCP"),
            (
                "redis://:hunter2@h:7000,redis://:other@h:7001",
                "the same user, password",
            ),
            (
                "redis://h:7000/0,redis://h:7001/1",
                "the same user, password",
            ),
        ] {
            let text = message(nodes(bad).unwrap_err());
            assert!(text.contains(what), "{bad}: {text}");
            assert!(!text.contains("hunter2"), "{bad}: {text}");
        }
    }
}
