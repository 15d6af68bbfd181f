//! `--cache memory+redis`: a memory tier in front of a shared Redis. Reads go nearest first
//! and copy a farther hit nearer, writes go to every tier, a failing tier is skipped, and
//! hits are counted by the tier that answered.

use crate::eventually;
use crate::server::{fib, server_on, stored};
use crate::support::redis_server::RedisServer;
use crate::support::{self, get, json};

/// A server with a memory tier in front of the Redis at `url`, with `args`.
fn tiered_on(url: &str, args: &[&str]) -> support::Server {
    let tiers = ["--cache", "memory+redis"];
    server_on(url, &[&tiers[..], args].concat())
}

const MEMORY_HITS: &str = r#"fibcache_cache_hits_total{tier="memory"}"#;
const REDIS_HITS: &str = r#"fibcache_cache_hits_total{tier="redis"}"#;

#[tokio::test]
async fn a_value_computed_by_one_instance_is_a_redis_hit_then_a_memory_hit_on_another() {
    let redis = RedisServer::start();
    let first = tiered_on(&redis.url(), &[]);
    let second = tiered_on(&redis.url(), &[]);

    let health = json(&get(second.addr, "/healthz").await);
    assert_eq!(health["backend"], "memory+redis", "{health}");

    assert_eq!(fib(&first, 27).await, "miss");
    stored(&redis, "fib:27", "196418").await;
    assert_eq!(fib(&second, 27).await, "hit");
    assert_eq!(second.metric(REDIS_HITS).await, 1.0);
    assert_eq!(second.metric(MEMORY_HITS).await, 0.0);
    assert_eq!(fib(&second, 27).await, "hit");
    assert_eq!(
        second.metric(MEMORY_HITS).await,
        1.0,
        "the redis hit was copied to the memory tier"
    );
    assert_eq!(second.metric(REDIS_HITS).await, 1.0);
    assert_eq!(
        second.metric("fibcache_computations_started_total").await,
        0.0
    );
    // The computing instance wrote its memory tier too: its next answer is a memory hit.
    assert_eq!(fib(&first, 27).await, "hit");
    assert_eq!(first.metric(MEMORY_HITS).await, 1.0);
    assert_eq!(first.metric(REDIS_HITS).await, 0.0);
}

#[tokio::test]
async fn with_redis_down_the_memory_tier_keeps_answering_hits() {
    let mut redis = RedisServer::start();
    let server = tiered_on(&redis.url(), &[]);
    assert_eq!(fib(&server, 22).await, "miss");
    stored(&redis, "fib:22", "17711").await;

    redis.stop();
    for _ in 0..5 {
        assert_eq!(fib(&server, 22).await, "hit", "from the memory tier");
    }
    assert_eq!(server.metric(MEMORY_HITS).await, 5.0);
    // Other numbers are computed, right, and then answered by the memory tier alone.
    assert_eq!(fib(&server, 23).await, "miss");
    assert_eq!(fib(&server, 23).await, "hit");
    assert!(server.metric("fibcache_cache_errors_total").await > 0.0);
    assert_eq!(
        server.metric(r#"fibcache_cache_up{tier="redis"}"#).await,
        0.0
    );
    assert_eq!(
        server.metric(r#"fibcache_cache_up{tier="memory"}"#).await,
        1.0
    );
    let ready = get(server.addr, "/readyz").await;
    assert_eq!(ready.status, 200, "a degraded cache still serves");
    assert_eq!(json(&ready)["cache"], "degraded", "{}", ready.body);
}

#[tokio::test]
async fn a_poisoned_redis_value_is_recomputed_and_overwritten_in_every_tier() {
    let redis = RedisServer::start();
    let server = tiered_on(&redis.url(), &[]);
    assert_eq!(redis.command(&["SET", "fib:20", "garbage"]), "+OK");

    assert_eq!(fib(&server, 20).await, "miss");
    stored(&redis, "fib:20", "6765").await;
    assert_eq!(fib(&server, 20).await, "hit");
    assert_eq!(server.metric(MEMORY_HITS).await, 1.0);

    // Another instance, with an empty memory tier, finds the repaired value in Redis.
    let other = tiered_on(&redis.url(), &[]);
    assert_eq!(fib(&other, 20).await, "hit");
    assert_eq!(other.metric(REDIS_HITS).await, 1.0);
    assert_eq!(
        server.metric("fibcache_computations_started_total").await
            + other.metric("fibcache_computations_started_total").await,
        1.0
    );
}

#[tokio::test]
async fn the_memory_tier_keeps_a_copy_no_longer_than_redis_does() {
    let redis = RedisServer::start();
    let server = tiered_on(&redis.url(), &["--cache-ttl", "1h"]);
    // A right value that Redis drops in 1 s, while --cache-ttl is an hour.
    assert_eq!(
        redis.command(&["SET", "fib:25", "75025", "PX", "1000"]),
        "+OK"
    );
    assert_eq!(fib(&server, 25).await, "hit");
    assert_eq!(server.metric(REDIS_HITS).await, 1.0);

    // Redis expires the value by itself: wait for that, then ask.
    eventually("Redis expires fib:25", 100, || async {
        redis.command(&["EXISTS", "fib:25"]) == ":0"
    })
    .await;
    assert_eq!(
        fib(&server, 25).await,
        "miss",
        "the memory copy lived past the Redis value's remaining lifetime"
    );
    assert_eq!(server.metric(MEMORY_HITS).await, 0.0);
}

#[tokio::test]
async fn the_memory_tier_keeps_a_copy_no_longer_than_the_cache_ttl() {
    let redis = RedisServer::start();
    let server = tiered_on(&redis.url(), &["--cache-ttl", "1s"]);
    // A value that Redis keeps for good, planted by hand.
    assert_eq!(redis.command(&["SET", "fib:24", "46368"]), "+OK");
    assert_eq!(fib(&server, 24).await, "hit");
    assert_eq!(fib(&server, 24).await, "hit");
    assert_eq!(server.metric(REDIS_HITS).await, 1.0);
    assert_eq!(server.metric(MEMORY_HITS).await, 1.0);

    // While the memory copy lives, every read is a memory hit; once --cache-ttl is over, a
    // read goes to Redis again (and copies anew).
    eventually("the memory copy expires after --cache-ttl", 100, || async {
        assert_eq!(fib(&server, 24).await, "hit");
        server.metric(REDIS_HITS).await == 2.0
    })
    .await;
}

/// A copy in the memory tier never outlives the Redis value it was copied from: value and
/// lifetime are read in one round trip, and the copy's lifetime is counted from before that
/// read. Each trial plants a value with a short lifetime, reads it (a Redis hit, copied), then
/// reads on until Redis no longer has it: the first read after that must be computed.
#[tokio::test]
async fn a_memory_copy_never_outlives_its_redis_source_at_the_expiry_boundary() {
    let redis = RedisServer::start();
    let server = tiered_on(&redis.url(), &[]);
    let trials: u64 = 30;
    let mut stale = 0;
    for trial in 0..trials {
        let n = trial + 1;
        let key = format!("fib:{n}");
        let value = fibcache_server::fib::fib_fast(n).unwrap().to_string();
        let px = (100 + 7 * trial).to_string();
        redis.command(&["SET", &key, &value, "PX", &px]);
        assert_eq!(fib(&server, n).await, "hit", "trial {trial}: from Redis");
        loop {
            let gone = redis.command(&["EXISTS", &key]) == ":0";
            let cache = fib(&server, n).await;
            if gone && cache == "hit" {
                stale += 1;
            }
            // Computed again (and written for `--cache-ttl`): this trial is over.
            if gone || cache == "miss" {
                break;
            }
        }
    }
    eprintln!("expiry boundary: {stale} stale answers in {trials} trials");
    assert_eq!(stale, 0, "a memory copy outlived its Redis source");
}
