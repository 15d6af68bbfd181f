//! The `rediscache` plugin coalesces across instances exactly as the built-in `redis` backend
//! does (`fleet.rs`): its claims cross the plugin boundary, so a cold `n` is computed once by
//! the instances that share one Redis through the plugin.

use std::path::{Path, PathBuf};

use crate::fleet::{all_right, ask, claims, total, STARTED};
use crate::support::redis_server::RedisServer;
use crate::support::{self, Spawn};

/// The `rediscache` plugin, built with this test's features and profile.
fn rediscache_plugin() -> PathBuf {
    let dir = support::examples::build(&["rediscache_plugin"], &[]);
    dir.join(format!(
        "{}rediscache_plugin{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// A server whose cache is the `rediscache` plugin on the Redis at `url`, with the 2 s cache
/// limit of `server_on`.
fn plugin_server_on(plugin: &Path, url: &str) -> support::Server {
    Spawn::new()
        .arg("--plugin")
        .arg(plugin.display().to_string())
        .env("FIB_CACHE", "rediscache")
        .env("FIB_CACHE_TIMEOUT", "2s")
        .env("REDIS_URL", url)
        .start()
}

#[tokio::test]
async fn three_instances_on_the_rediscache_plugin_compute_a_cold_n_once_for_48_requests() {
    let redis = RedisServer::start();
    let plugin = rediscache_plugin();
    let fleet: Vec<support::Server> = (0..3)
        .map(|_| plugin_server_on(&plugin, &redis.url()))
        .collect();
    let n = 40;
    let asks: Vec<_> = (0..16)
        .flat_map(|_| fleet.iter().map(|server| ask(server, n)))
        .collect();
    all_right(asks, n).await;

    let fleet: Vec<&support::Server> = fleet.iter().collect();
    assert_eq!(total(&fleet, STARTED).await, 1.0, "one computation in all");
    assert_eq!(total(&fleet, &claims("won")).await, 1.0);
    assert_eq!(total(&fleet, &claims("unsupported")).await, 0.0);
    assert_eq!(total(&fleet, &claims("error")).await, 0.0);
    assert_eq!(redis.command(&["EXISTS", "fib:claim:40"]), ":0", "released");
}
