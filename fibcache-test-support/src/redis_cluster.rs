//! A Redis Cluster of the test's own: three `redis-server` masters on free loopback ports,
//! joined by `redis-cli --cluster create`, no replicas and no persistence.
//!
//! The nodes run with `cluster-require-full-coverage no`, so that a node the test kills takes
//! only its own slots down, whenever the others notice: what a test sees does not depend on
//! how long it takes after the kill.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::redis_server::{free_port, RedisServer};

/// How many masters a cluster has: the fewest `redis-cli --cluster create` accepts.
const NODES: usize = 3;

/// A running three-node cluster; every node is killed (by PID) when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Each node's directory (its `nodes.conf`), removed when dropped.
    dir: PathBuf,
    password: Option<String>,
}

impl RedisCluster {
    /// Starts a cluster without a password.
    pub fn start() -> RedisCluster {
        Self::start_with(None)
    }

    /// Starts a cluster whose nodes require `password`.
    pub fn with_password(password: &str) -> RedisCluster {
        Self::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> RedisCluster {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fibcache-cluster-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
            password,
        };
        for i in 0..NODES {
            let dir = cluster.dir.join(i.to_string());
            std::fs::create_dir_all(&dir).expect("create a cluster node's directory");
            let dir = dir
                .to_str()
                .expect("a UTF-8 temporary directory")
                .to_owned();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("{dir}/nodes.conf"),
                "--dir",
                &dir,
                // The bus port is the port + 10000 unless given, which may not exist.
                "--cluster-port",
                &free_port().to_string(),
                "--cluster-require-full-coverage",
                "no",
            ];
            let args = args.iter().map(|a| a.to_string()).collect();
            let node = RedisServer::start_with(cluster.password.clone(), args);
            cluster.nodes.push(node);
        }
        cluster.create();
        cluster.wait_until_ok();
        cluster
    }

    /// `redis-cli --cluster create` over every node, bounded to 60 s.
    fn create(&self) {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--cluster", "create"])
            .args(self.nodes.iter().map(|node| node.addr()))
            .args(["--cluster-replicas", "0", "--cluster-yes"]);
        if let Some(password) = &self.password {
            cmd.env("REDISCLI_AUTH", password);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}); it comes with Debian's redis-server package")
            });
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-cli --cluster create did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits (at most 30 s) until every node says `cluster_state:ok`.
    fn wait_until_ok(&self) {
        crate::eventually(
            "cluster_state:ok on every node",
            Duration::from_secs(30),
            || {
                self.nodes
                    .iter()
                    .all(|node| {
                        node.command(&["CLUSTER", "INFO"])
                            .contains("cluster_state:ok")
                    })
                    .then_some(())
            },
        );
    }

    /// The seed URLs for `REDIS_CLUSTER_NODES`: every node, comma-separated.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        urls.join(",")
    }

    /// The index of the node that serves `key` (the one that does not redirect it).
    pub fn node_of(&self, key: &str) -> usize {
        let owners: Vec<usize> = (0..NODES)
            .filter(|&i| self.nodes[i].command(&["EXISTS", key]).starts_with(':'))
            .collect();
        assert_eq!(owners.len(), 1, "{key} is served by nodes {owners:?}");
        owners[0]
    }

    /// How many keys each node holds.
    pub fn keys_per_node(&self) -> Vec<u64> {
        let count = |node: &RedisServer| {
            let reply = node.command(&["DBSIZE"]);
            reply[1..]
                .parse()
                .unwrap_or_else(|_| panic!("DBSIZE: {reply}"))
        };
        self.nodes.iter().map(count).collect()
    }

    /// Kills node `i` (by PID); it stays down.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Kills every node (by PID); [`RedisCluster::restart_all`] brings the same cluster back.
    pub fn kill_all(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::stop);
    }

    /// Starts every node again from its `nodes.conf` (same ports, same slots, no data), and
    /// waits until the cluster is whole.
    pub fn restart_all(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::restart);
        self.wait_until_ok();
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
