//! Values longer than any valid one, planted in Redis by someone else: with a bound on value
//! sizes (the server sets 19 bytes) a read refuses such a value without transferring it, the
//! server computes and overwrites it, and none of its content reaches a log.

use std::num::NonZeroUsize;
use std::time::Duration;

use fibcache_core::{Config, Error};
use fibcache_server::fib::{fib_fast, MAX_VALUE_LEN};

use crate::server::{fib, server_on, stored};
use crate::support::redis_server::RedisServer;
use crate::support::{self, get, json};
use crate::{config_for, create, eventually, is_backend_error};

/// `config_for(url)` with values bounded to the longest valid one, as the server sets it.
fn bounded_config(url: &str) -> Config {
    config_for(url).with_max_value_len(NonZeroUsize::new(MAX_VALUE_LEN).unwrap())
}

/// `err` and its sources on one line.
fn text(err: &Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}

/// A number from Redis's `INFO <section>`: the field `name` (`total_net_output_bytes`), or
/// the `calls=` of a command's `cmdstat_<name>`; 0 when absent.
fn info(redis: &RedisServer, section: &str, name: &str) -> u64 {
    let info = redis.command(&["INFO", section]);
    let value = info
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")));
    let value = value.map(|v| v.trim().trim_start_matches("calls="));
    let digits = value.map(|v| v.split(',').next().unwrap_or(v));
    digits.map_or(0, |d| d.parse().unwrap_or_else(|_| panic!("{name}: {d:?}")))
}

#[tokio::test]
async fn with_a_bound_a_longer_value_is_refused_without_being_read() {
    let redis = RedisServer::start();
    let cache = create(&bounded_config(&redis.url())).await.unwrap();
    let longest = fib_fast(92).unwrap().to_string();
    assert_eq!(longest.len(), 19);
    assert_eq!(redis.command(&["SET", "fib:92", &longest]), "+OK");
    assert_eq!(
        redis.command(&["SET", "fib:over", "planted-content-0020"]),
        "+OK"
    );
    assert_eq!(redis.command(&["SET", "fib:empty", ""]), "+OK");
    assert_eq!(redis.command(&["RPUSH", "fib:list", "x"]), ":1");

    assert_eq!(cache.get("fib:92").await.unwrap(), Some(longest));
    let over = cache.get("fib:over").await;
    assert!(is_backend_error(&over), "{over:?}");
    let message = text(&over.unwrap_err());
    assert!(message.contains("longer than the 19 bytes"), "{message}");
    assert!(!message.contains("planted-content"), "{message}");
    assert_eq!(cache.get("fib:missing").await.unwrap(), None);
    assert_eq!(cache.get("fib:empty").await.unwrap().as_deref(), Some(""));
    let list = cache.get("fib:list").await;
    assert!(is_backend_error(&list), "{list:?}");
    assert!(text(&list.unwrap_err()).contains("WRONGTYPE"));

    // Every one of the five reads was GETRANGE and EXISTS, never a GET.
    assert_eq!(info(&redis, "commandstats", "cmdstat_getrange"), 5);
    assert_eq!(info(&redis, "commandstats", "cmdstat_exists"), 5);
    assert_eq!(info(&redis, "commandstats", "cmdstat_get"), 0);
}

#[tokio::test]
async fn without_a_bound_a_read_is_a_plain_get() {
    let redis = RedisServer::start();
    let cache = create(&config_for(&redis.url()).without_max_value_len())
        .await
        .unwrap();
    let long = "a value longer than nineteen bytes";
    assert_eq!(redis.command(&["SET", "fib:long", long]), "+OK");
    assert_eq!(cache.get("fib:long").await.unwrap().as_deref(), Some(long));
    assert_eq!(cache.get("fib:missing").await.unwrap(), None);
    assert_eq!(info(&redis, "commandstats", "cmdstat_get"), 2);
    assert_eq!(info(&redis, "commandstats", "cmdstat_getrange"), 0);
}

#[tokio::test]
async fn a_bounded_read_of_a_huge_value_transfers_only_the_bound() {
    let redis = RedisServer::start();
    let cache = create(&bounded_config(&redis.url())).await.unwrap();
    // Redis builds the 8 MiB value itself; the test sends a few bytes.
    assert_eq!(
        redis.command(&["SETRANGE", "fib:huge", "8388607", "x"]),
        ":8388608"
    );
    // Connected, so that the count below is one read's.
    assert_eq!(cache.get("fib:warm").await.unwrap(), None);

    let before = info(&redis, "stats", "total_net_output_bytes");
    let got = cache.get("fib:huge").await;
    let after = info(&redis, "stats", "total_net_output_bytes");
    match got {
        Err(err) if err.kind() == fibcache_core::ErrorKind::Backend => {
            assert!(text(&err).contains("longer than the 19 bytes"), "{err}");
        }
        Err(err) => panic!("expected a backend error, got {err:?}"),
        Ok(value) => panic!("read {} bytes", value.map_or(0, |v| v.len())),
    }
    // What Redis sent in between: the reply to the first `INFO stats` (a few KiB) and the
    // read's. A plain `GET` would have sent 8 MiB.
    assert!(after - before < 64 * 1024, "{} bytes sent", after - before);
}

/// The peak resident set of process `pid` (`VmHWM`), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status (Linux only): {e}"));
    let line = status.lines().find(|l| l.starts_with("VmHWM:"));
    let kib = line.and_then(|l| l.split_whitespace().nth(1));
    kib.and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in:\n{status}"))
}

/// Stops `server` with SIGTERM, checks that it exits 0, and returns all it logged (the log
/// writer flushes at exit; its last line is `stopped`).
async fn stop(mut server: support::Server) -> String {
    tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("TERM", Duration::from_secs(30));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", server.log());
        // The process has exited, so its log is complete once the reader has drained it.
        support::eventually(
            "the log ends with `stopped`",
            Duration::from_secs(5),
            || Some(server.log()).filter(|log| log.contains("stopped")),
        )
    })
    .await
    .unwrap()
}

/// Defect D5: a 200 MiB value under `fib:38` made 16 concurrent requests hold it 16 times over
/// (467 MB peak), timed out, and shut Redis out for a second for every key.
#[tokio::test]
async fn a_planted_huge_value_is_refused_unread_recomputed_and_overwritten() {
    let redis = RedisServer::start();
    assert_eq!(
        redis.command(&["SETRANGE", "fib:38", "209715199", "x"]),
        ":209715200"
    );
    let server = server_on(&redis.url(), &[]);

    let requests: Vec<_> = (0..16)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move { get(addr, "/fib/38").await })
        })
        .collect();
    for request in requests {
        let resp = request.await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.body, r#"{"result":39088169}"#);
    }

    // Overwritten with the computed value and its TTL. `STRLEN` first: a `GET` of the
    // planted value would bring the 200 MiB into this test.
    eventually("fib:38 is overwritten", 100, || async {
        redis.command(&["STRLEN", "fib:38"]) == ":8"
    })
    .await;
    assert_eq!(redis.command(&["GET", "fib:38"]), "39088169");
    let pttl: i64 = redis.command(&["PTTL", "fib:38"])[1..].parse().unwrap();
    assert!(pttl > 0, "PTTL {pttl}");

    // Refused values skip nothing: a value written for another n right after is a hit.
    assert_eq!(fib(&server, 20).await, "miss");
    stored(&redis, "fib:20", "6765").await;
    assert_eq!(fib(&server, 20).await, "hit");
    assert_eq!(fib(&server, 38).await, "hit");

    let peak = peak_rss_kib(server.pid());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    let log = stop(server).await;
    assert!(log.contains("is longer than the 19 bytes"), "{log}");
    assert!(
        !log.contains("cache unavailable"),
        "the refusal opened the fail-fast window:\n{log}"
    );
}

/// Defect D10: a refused value is logged by its length and why, never by its content.
#[tokio::test]
async fn a_refused_value_is_logged_by_its_length_never_its_content() {
    let redis = RedisServer::start();
    // 17 bytes: short enough to cross, so the server's own check refuses it.
    assert_eq!(
        redis.command(&["SET", "fib:30", "secretgarbage-d10"]),
        "+OK"
    );
    let server = server_on(&redis.url(), &[]);

    let resp = get(server.addr, "/fib/30").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(json(&resp)["result"], 832_040);
    assert_eq!(resp.header("x-cache"), Some("miss"));
    stored(&redis, "fib:30", "832040").await;

    let log = stop(server).await;
    assert!(
        !log.contains("secretgarbage"),
        "the value was logged:\n{log}"
    );
    let refusal = log
        .lines()
        .find(|line| line.contains("cached value refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(refusal.contains("len=17"), "{refusal}");
    assert!(refusal.contains("not a decimal number"), "{refusal}");
}

/// The `rediscache` plugin is the same backend behind the C ABI: the bound crosses it.
#[cfg(feature = "dynamic")]
#[tokio::test]
async fn the_rediscache_plugin_receives_the_bound() {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};

    let redis = RedisServer::start();
    let dir = support::examples::build(&["rediscache_plugin"], &[]);
    let lib = dir.join(format!("{DLL_PREFIX}rediscache_plugin{DLL_SUFFIX}"));
    let mut registry = fibcache_core::Registry::new().unwrap();
    fibcache_core::plugin::load_plugins(&[lib], &mut registry).unwrap();
    let cache = registry
        .create("rediscache", &bounded_config(&redis.url()))
        .await
        .unwrap();
    assert_eq!(
        redis.command(&["SET", "fib:over", "planted-content-0020"]),
        "+OK"
    );
    assert_eq!(redis.command(&["SET", "fib:10", "55"]), "+OK");

    match cache.get("fib:over").await {
        Err(err) if err.kind() == fibcache_core::ErrorKind::Backend => {
            let message = text(&err);
            assert!(message.contains("longer than the 19 bytes"), "{message}");
            assert!(!message.contains("planted-content"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(cache.get("fib:10").await.unwrap().as_deref(), Some("55"));
}
