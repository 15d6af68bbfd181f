//! The `redis` backend in cluster mode (`REDIS_CLUSTER_NODES`), against a real three-node
//! Redis Cluster that each test starts for itself: the `Cache` contract with both capabilities,
//! keys spread over the nodes, start-up checks, the `fibcache` binary sharing a cluster and
//! losing a node, and the `rediscache` plugin.

use std::time::Duration;

use fibcache_backends::redis::{RedisCache, RedisConfig};
use fibcache_core::Config;

use crate::fleet;
use crate::server::{fib, stored};
use crate::support::redis_cluster::RedisCluster;
use crate::support::redis_server::{free_port, RedisServer};
use crate::support::{self, Spawn};
use crate::{bounded, config_message, create, create_err, eventually, is_unavailable};

/// A config that reaches the cluster whose seeds are `urls`, and nothing from the developer's
/// environment; operations may take 5 s, as `config_for`'s.
fn cluster_config(urls: &str) -> Config {
    crate::config_for("").with_var("REDIS_CLUSTER_NODES", urls)
}

/// A server on the cluster whose seeds are `urls`. Cache operations may take 2 s, as
/// `server_on`'s, and entries live an hour, so that none expires while a test on a busy
/// machine still counts on it.
fn server_on_cluster(urls: &str) -> support::Server {
    Spawn::new()
        .env("FIB_CACHE", "redis")
        .env("REDIS_CLUSTER_NODES", urls)
        .args(["--cache-timeout", "2s", "--cache-ttl", "1h"])
        .start()
}

#[tokio::test]
async fn a_cluster_passes_the_conformance_suite_with_keys_spread_over_its_nodes() {
    let cluster = RedisCluster::with_password("cluster-pw-4417");
    let cache = create(&cluster_config(&cluster.urls())).await.unwrap();
    assert!(
        cache.expiry().is_some(),
        "redis offers Expiry in cluster mode"
    );
    assert!(
        cache.claims().is_some(),
        "redis offers Claims in cluster mode"
    );

    // Keys as the server writes them, each on the node its slot belongs to.
    for n in 0..30 {
        let key = format!("fib:{n}");
        cache
            .set(&key, &n.to_string(), Duration::from_secs(60))
            .await
            .unwrap();
        let node = &cluster.nodes[cluster.node_of(&key)];
        assert_eq!(node.command(&["GET", &key]), n.to_string(), "{key}");
    }
    let per_node = cluster.keys_per_node();
    assert_eq!(per_node.iter().sum::<u64>(), 30, "{per_node:?}");
    let holding = per_node.iter().filter(|&&keys| keys > 0).count();
    assert!(holding > 1, "every key on one node: {per_node:?}");

    support::conformance::run(cache, "conformance:").await;
}

#[tokio::test]
async fn start_up_refuses_wrong_credentials_and_servers_out_of_cluster_mode() {
    let cluster = RedisCluster::with_password("right-cluster-pw");
    let wrong = cluster
        .urls()
        .replace("right-cluster-pw", "wrong-cluster-pw");
    let message = config_message(
        &create_err(&cluster_config(&wrong)).await,
        "wrong-cluster-pw",
    );
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(message.contains("REDIS_CLUSTER_NODES"), "{message}");
    let none = cluster.urls().replace(":right-cluster-pw@", "");
    let message = config_message(
        &create_err(&cluster_config(&none)).await,
        "right-cluster-pw",
    );
    assert!(message.contains("requires a password"), "{message}");

    let single = RedisServer::with_password("single-pw-3");
    let message = config_message(
        &create_err(&cluster_config(&single.url())).await,
        "single-pw-3",
    );
    assert!(message.contains("not a cluster node"), "{message}");
    assert!(message.contains("REDIS_URL"), "{message}");

    // A seed that is down is passed over for one that answers.
    let down = format!("redis://:right-cluster-pw@127.0.0.1:{}", free_port());
    let seeds = format!("{down},{}", cluster.urls());
    let config = RedisConfig::from_config(&cluster_config(&seeds)).unwrap();
    let cache = RedisCache::connect(config).await.unwrap();
    assert!(cache.is_connected(), "{cache:?}");
    let debug = format!("{cache:?}");
    assert!(!debug.contains("right-cluster-pw"), "{debug}");
}

/// A cluster down when the cache is created, then a node lost: each makes exactly the keys it
/// touches `Unavailable`, every operation alike, and the cluster is used again once it is back.
#[tokio::test]
async fn cluster_outages_are_unavailable_for_the_keys_they_touch_only() {
    let mut cluster = RedisCluster::start();
    cluster.kill_all();
    let cache = bounded("create", create(&cluster_config(&cluster.urls())))
        .await
        .expect("a cluster that is down is not a reason to refuse to start");
    let claims = cache.claims().unwrap();
    for _ in 0..3 {
        let got = bounded("get", cache.get("fib:10")).await;
        assert!(is_unavailable(&got), "{got:?}");
        let claimed = bounded("claim", claims.claim("fib:claim:10", "t", LONG)).await;
        assert!(is_unavailable(&claimed), "{claimed:?}");
    }

    cluster.restart_all();
    // The same cache object: the cluster client finds the nodes again on its own.
    eventually(
        "the cache uses the cluster once it is back",
        300,
        || async { cache.set("fib:10", "55", LONG).await.is_ok() },
    )
    .await;
    assert_eq!(cache.get("fib:10").await.unwrap().as_deref(), Some("55"));
    let node = &cluster.nodes[cluster.node_of("fib:10")];
    assert_eq!(node.command(&["GET", "fib:10"]), "55");

    // One node lost: its keys fail as unavailable, every time; the others' keys work.
    let keys: Vec<String> = (0..30).map(|n| format!("fib:{n}")).collect();
    for key in &keys {
        cache.set(key, "1", LONG).await.unwrap();
    }
    let lost = cluster.node_of("fib:10");
    let (on_lost, on_live): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|key| cluster.node_of(key) == lost);
    assert!(!on_live.is_empty(), "every key is on node {lost}");
    cluster.kill(lost);
    let expiry = cache.expiry().unwrap();
    // Each operation on a lost key spends the client's retries (about a third of a second).
    for _ in 0..2 {
        for key in on_lost.iter().take(2) {
            let got = bounded("get", cache.get(key)).await;
            assert!(is_unavailable(&got), "get {key}: {got:?}");
            let put = bounded("set", cache.set(key, "1", LONG)).await;
            assert!(is_unavailable(&put), "set {key}: {put:?}");
            let left = bounded("remaining", expiry.remaining(key)).await;
            assert!(is_unavailable(&left), "remaining {key}: {left:?}");
            let claimed = bounded("claim", claims.claim(key, "t", LONG)).await;
            assert!(is_unavailable(&claimed), "claim {key}: {claimed:?}");
            let renewed = bounded("renew", claims.renew(key, "t", LONG)).await;
            assert!(is_unavailable(&renewed), "renew {key}: {renewed:?}");
        }
        for key in &on_live {
            let got = bounded("get", cache.get(key)).await;
            assert_eq!(got.unwrap().as_deref(), Some("1"), "get {key}");
            assert!(expiry.remaining(key).await.unwrap().is_some(), "{key}");
        }
    }
    // A claim on a live node works too, though its scripts are new to that node: a script
    // Redis lacks is sent to the key's node alone, never to every node.
    let live = on_live[0];
    let claim = format!("{{{live}}}:claim");
    assert!(claims.claim(&claim, "t", LONG).await.unwrap());
    assert!(claims.renew(&claim, "t", LONG).await.unwrap());
    assert!(claims.release(&claim, "t").await.unwrap());
}

#[tokio::test]
async fn two_servers_share_a_cluster() {
    let cluster = RedisCluster::start();
    let first = server_on_cluster(&cluster.urls());
    let second = server_on_cluster(&cluster.urls());

    assert_eq!(fib(&first, 27).await, "miss");
    stored(
        &cluster.nodes[cluster.node_of("fib:27")],
        "fib:27",
        "196418",
    )
    .await;
    assert_eq!(fib(&first, 27).await, "hit");
    assert_eq!(fib(&second, 27).await, "hit", "computed by the first");
    assert_eq!(fib(&second, 28).await, "miss");
    stored(
        &cluster.nodes[cluster.node_of("fib:28")],
        "fib:28",
        "317811",
    )
    .await;
    assert_eq!(fib(&first, 28).await, "hit", "computed by the second");
    for server in [&first, &second] {
        let started = server.metric("fibcache_computations_started_total").await;
        assert_eq!(started, 1.0);
    }
}

#[tokio::test]
async fn instances_on_a_cluster_compute_a_cold_n_once_between_them() {
    let cluster = RedisCluster::start();
    let servers: Vec<support::Server> =
        (0..3).map(|_| server_on_cluster(&cluster.urls())).collect();
    let n = 40;
    let asks: Vec<_> = (0..8)
        .flat_map(|_| servers.iter().map(|server| fleet::ask(server, n)))
        .collect();
    fleet::all_right(asks, n).await;

    let servers: Vec<&support::Server> = servers.iter().collect();
    assert_eq!(fleet::total(&servers, fleet::STARTED).await, 1.0);
    assert_eq!(fleet::total(&servers, &fleet::claims("won")).await, 1.0);
    assert_eq!(fleet::total(&servers, &fleet::claims("error")).await, 0.0);
    let claim_key = format!("fib:claim:{n}");
    let node = &cluster.nodes[cluster.node_of(&claim_key)];
    assert_eq!(node.command(&["EXISTS", &claim_key]), ":0", "released");
}

#[tokio::test]
async fn a_lost_node_makes_only_its_own_keys_compute() {
    let mut cluster = RedisCluster::start();
    let server = server_on_cluster(&cluster.urls());
    let keys: Vec<u64> = (10..30).collect();
    for &n in &keys {
        assert_eq!(fib(&server, n).await, "miss", "n={n}");
    }
    let value = |n: u64| fibcache_server::fib::fib_fast(n).unwrap().to_string();
    for &n in &keys {
        let key = format!("fib:{n}");
        stored(&cluster.nodes[cluster.node_of(&key)], &key, &value(n)).await;
    }
    let lost = cluster.node_of("fib:10");
    let (on_lost, on_live): (Vec<u64>, Vec<u64>) = keys
        .iter()
        .partition(|&&n| cluster.node_of(&format!("fib:{n}")) == lost);
    assert!(!on_live.is_empty(), "every key is on node {lost}");

    cluster.kill(lost);
    // Every answer is right and none is an error (`fib` asserts both); the lost node's keys
    // compute, whether the cache is asked or skipped for a moment after a failure.
    for round in 0..2 {
        for &n in &keys {
            let answer = fib(&server, n).await;
            if on_lost.contains(&n) {
                assert_eq!(answer, "miss", "n={n}, round {round}");
            }
        }
    }
    assert!(server.metric("fibcache_cache_errors_total").await > 0.0);
    // The other nodes' keys are still there, and served once the server asks the cache again.
    let live = on_live[0];
    eventually(&format!("fib:{live} is a hit again"), 200, || async {
        fib(&server, live).await == "hit"
    })
    .await;
    for &n in &on_live {
        assert_eq!(fib(&server, n).await, "hit", "n={n}");
    }
}

#[tokio::test]
async fn cluster_nodes_with_redis_url_exits_2_naming_both() {
    let seeds = "redis://:seed-pw-61@127.0.0.1:7000,redis://:seed-pw-61@127.0.0.1:7001";
    let cases = [
        vec![
            ("REDIS_CLUSTER_NODES", seeds),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ],
        vec![("REDIS_CLUSTER_NODES", "redis://:seed-pw-61@127.0.0.1:7000,")],
    ];
    for vars in cases {
        let spawn = vars
            .iter()
            .fold(Spawn::new().env("FIB_CACHE", "redis"), |s, (k, v)| {
                s.env(*k, *v)
            });
        let exit = spawn.run_to_exit();
        assert_eq!(exit.code(), Some(2), "{vars:?}: {exit:?}");
        let stderr = exit.stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "{vars:?}: {stderr}");
        for (name, _) in &vars {
            assert!(stderr.contains(name), "{vars:?}: {stderr}");
        }
        assert!(!stderr.contains("seed-pw-61"), "leaked: {stderr}");
    }
}

#[cfg(feature = "dynamic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rediscache_plugin_works_against_a_cluster() {
    let cluster = RedisCluster::start();
    let dir = support::examples::build(&["rediscache_plugin"], &[]);
    let library = dir.join(format!(
        "{}rediscache_plugin{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let mut registry = fibcache_core::Registry::new().unwrap();
    fibcache_core::plugin::load_plugins(&[library], &mut registry).unwrap();
    let config = cluster_config(&cluster.urls()).with_op_timeout(Duration::from_secs(2));
    let cache = registry.create("rediscache", &config).await.unwrap();
    support::conformance::run(cache.clone(), "conformance:rediscache:").await;
    // Its keys are in the cluster, on their nodes.
    cache.set("fib:20", "6765", LONG).await.unwrap();
    assert_eq!(
        cluster.nodes[cluster.node_of("fib:20")].command(&["GET", "fib:20"]),
        "6765"
    );
}

const LONG: Duration = Duration::from_secs(60);
