//! Embedded the README's way (`examples/embed_axum.rs`: default settings, backends created from
//! `Settings::cache_config`), the app keeps the binary's bound on values: a huge value planted
//! in Redis is refused unread.

use crate::oversize::peak_rss_kib;
use crate::support::redis_server::RedisServer;
use crate::support::{examples, get, Spawn};

#[tokio::test]
async fn a_planted_50_mib_value_costs_an_embedded_app_no_memory() {
    let redis = RedisServer::start();
    assert_eq!(
        redis.command(&["SETRANGE", "fib:30", "52428799", "x"]),
        ":52428800"
    );
    let server = Spawn::new()
        .program(examples::binary("embed_axum"))
        .args(["--cache", "redis"])
        .env("REDIS_URL", redis.url())
        .start();
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move { get(addr, "/api/fib/30").await })
        })
        .collect();
    for request in requests {
        let resp = request.await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.body, r#"{"result":832040}"#);
    }
    let peak = peak_rss_kib(server.pid());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
