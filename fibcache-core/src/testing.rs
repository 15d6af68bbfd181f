//! The behaviour every backend must show, as one suite a backend's own tests run in a few
//! lines (feature `testing`).
//!
//! fibcache runs it against each of its backends, `memory`, `redis` (single server and
//! cluster), and the backends of both example plugins; a third-party backend runs the same
//! checks, so "passes the conformance suite" means the same thing everywhere.
//!
//! It checks the [`Cache`] contract (absent keys, overwrite, independence of keys, odd keys and
//! values, lifetimes, concurrent use) and, where a backend offers them, the optional
//! capabilities: [`Expiry`] (the remaining lifetime) and [`Claims`] (exclusive, lapsing unless
//! renewed, one winner among concurrent claimers).
//!
//! # Example
//! A backend's test, with a cache that keeps values in a map:
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::{Duration, Instant};
//! use fibcache_core::{async_trait, Cache, Result};
//!
//! #[derive(Default)]
//! struct MapCache(Mutex<HashMap<String, (String, Instant)>>);
//!
//! #[async_trait]
//! impl Cache for MapCache {
//!     async fn get(&self, key: &str) -> Result<Option<String>> {
//!         let map = self.0.lock().unwrap();
//!         Ok(map.get(key).filter(|(_, until)| Instant::now() < *until).map(|(v, _)| v.clone()))
//!     }
//!     async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
//!         let until = Instant::now() + ttl;
//!         self.0.lock().unwrap().insert(key.to_owned(), (value.to_owned(), until));
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In a backend's tests: `#[tokio::test] async fn conformance() { ... }`.
//! fibcache_core::testing::conformance(Arc::new(MapCache::default()), "test:").await;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::{Cache, Claims, Expiry};

/// How long the suite waits for a short TTL to run out. Real time (not paused), because
/// stores such as Redis keep their own clock; the assertions are on outcomes only.
const SHORT_TTL: Duration = Duration::from_millis(300);
const PAST_SHORT_TTL: Duration = Duration::from_millis(700);

/// Runs every check of the `Cache` contract against `cache`, and those of each optional
/// capability it offers; panics, naming the check, at the first that fails. Every key it uses
/// starts with `ns`, so that it can share a store with other tests.
///
/// It takes about two seconds: lifetimes are checked on the real clock, because stores such
/// as Redis keep their own.
pub async fn conformance(cache: Arc<dyn Cache>, ns: &str) {
    absent(&*cache, ns).await;
    set_then_get(&*cache, ns).await;
    overwrite(&*cache, ns).await;
    keys_are_independent(&*cache, ns).await;
    odd_keys_and_values(&*cache, ns).await;
    ttl_expiry(&*cache, ns).await;
    overwrite_restarts_ttl(&*cache, ns).await;
    concurrent_use(cache.clone(), ns).await;
    if let Some(expiry) = cache.expiry() {
        remaining(&*cache, expiry, ns).await;
    }
    if let Some(claims) = cache.claims() {
        claims_are_exclusive(claims, ns).await;
        claims_lapse_unless_renewed(claims, ns).await;
        one_of_many_concurrent_claims_wins(cache.clone(), ns).await;
    }
}

const LONG: Duration = Duration::from_secs(60);

/// The value under `key`, which must be readable (a backend failure fails the suite).
async fn read(cache: &dyn Cache, key: &str) -> Option<String> {
    cache
        .get(key)
        .await
        .unwrap_or_else(|err| panic!("get({key:?}) failed: {err:?}"))
}

async fn absent(cache: &dyn Cache, ns: &str) {
    assert_eq!(read(cache, &format!("{ns}never-set")).await, None);
}

async fn set_then_get(cache: &dyn Cache, ns: &str) {
    let key = format!("{ns}a");
    cache.set(&key, "55", LONG).await.unwrap();
    assert_eq!(read(cache, &key).await.as_deref(), Some("55"));
    // Reading does not consume.
    assert_eq!(read(cache, &key).await.as_deref(), Some("55"));
}

async fn overwrite(cache: &dyn Cache, ns: &str) {
    let key = format!("{ns}b");
    cache.set(&key, "first", LONG).await.unwrap();
    cache.set(&key, "second", LONG).await.unwrap();
    assert_eq!(read(cache, &key).await.as_deref(), Some("second"));
}

async fn keys_are_independent(cache: &dyn Cache, ns: &str) {
    let (k1, k2) = (format!("{ns}c1"), format!("{ns}c2"));
    cache.set(&k1, "one", LONG).await.unwrap();
    cache.set(&k2, "two", LONG).await.unwrap();
    assert_eq!(read(cache, &k1).await.as_deref(), Some("one"));
    assert_eq!(read(cache, &k2).await.as_deref(), Some("two"));
}

async fn odd_keys_and_values(cache: &dyn Cache, ns: &str) {
    let key = format!("{ns}spaces and ünïcode:\u{1F980}");
    let value = "a value with spaces, \"quotes\", \r\n and ünïcode \u{1F980}";
    cache.set(&key, value, LONG).await.unwrap();
    assert_eq!(read(cache, &key).await.as_deref(), Some(value));
    // An empty value is a value, not an absence.
    let empty = format!("{ns}empty");
    cache.set(&empty, "", LONG).await.unwrap();
    assert_eq!(read(cache, &empty).await.as_deref(), Some(""));
}

async fn ttl_expiry(cache: &dyn Cache, ns: &str) {
    let key = format!("{ns}short");
    cache.set(&key, "v", SHORT_TTL).await.unwrap();
    assert_eq!(
        read(cache, &key).await.as_deref(),
        Some("v"),
        "read before the TTL ends"
    );
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(read(cache, &key).await, None, "an expired key is absent");
    // An expired value is never returned again.
    assert_eq!(read(cache, &key).await, None, "second read after expiry");
}

async fn overwrite_restarts_ttl(cache: &dyn Cache, ns: &str) {
    let key = format!("{ns}restart");
    cache.set(&key, "old", SHORT_TTL).await.unwrap();
    cache.set(&key, "new", LONG).await.unwrap();
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(read(cache, &key).await.as_deref(), Some("new"));
}

async fn concurrent_use(cache: Arc<dyn Cache>, ns: &str) {
    let tasks = 32;
    let rounds = 50;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let cache = cache.clone();
        let ns = ns.to_owned();
        handles.push(tokio::spawn(async move {
            for r in 0..rounds {
                let own = format!("{ns}task{t}:{r}");
                cache.set(&own, &format!("{t}-{r}"), LONG).await.unwrap();
                assert_eq!(read(&*cache, &own).await, Some(format!("{t}-{r}")));
                // Everybody also hammers one shared key; any of the values written is fine.
                let shared = format!("{ns}shared");
                cache.set(&shared, &t.to_string(), LONG).await.unwrap();
                let seen: usize = read(&*cache, &shared).await.unwrap().parse().unwrap();
                assert!(seen < tasks);
            }
        }));
    }
    for h in handles {
        h.await.expect("a concurrent task panicked");
    }
    for t in 0..tasks {
        let key = format!("{ns}task{t}:{}", rounds - 1);
        assert_eq!(
            read(&*cache, &key).await,
            Some(format!("{t}-{}", rounds - 1))
        );
    }
}

async fn remaining(cache: &dyn Cache, expiry: &dyn Expiry, ns: &str) {
    let key = format!("{ns}expiry");
    cache.set(&key, "v", LONG).await.unwrap();
    let left = expiry.remaining(&key).await.unwrap();
    assert!(
        left.is_some_and(|left| left > Duration::ZERO && left <= LONG),
        "a key set for {LONG:?} has {left:?} left"
    );
    let never = format!("{ns}expiry-never-set");
    assert_eq!(expiry.remaining(&never).await.unwrap(), None);
}

async fn claims_are_exclusive(claims: &dyn Claims, ns: &str) {
    let key = format!("{ns}claim:1");
    assert!(
        claims.claim(&key, "token-a", LONG).await.unwrap(),
        "a free key"
    );
    assert!(
        !claims.claim(&key, "token-b", LONG).await.unwrap(),
        "a claim held by another token is refused"
    );
    assert!(
        !claims.renew(&key, "token-b", LONG).await.unwrap(),
        "renew, wrong token"
    );
    assert!(
        !claims.release(&key, "token-b").await.unwrap(),
        "release, wrong token"
    );
    assert!(
        !claims.claim(&key, "token-b", LONG).await.unwrap(),
        "the wrong token's renew and release left the claim"
    );
    assert!(
        claims.renew(&key, "token-a", LONG).await.unwrap(),
        "the holder renews"
    );
    assert!(
        claims.release(&key, "token-a").await.unwrap(),
        "the holder releases"
    );
    assert!(
        !claims.release(&key, "token-a").await.unwrap(),
        "a released claim is nobody's"
    );
    assert!(
        claims.claim(&key, "token-b", LONG).await.unwrap(),
        "a released claim is free to another token"
    );
}

async fn claims_lapse_unless_renewed(claims: &dyn Claims, ns: &str) {
    let (lapsing, renewed) = (format!("{ns}claim:2"), format!("{ns}claim:3"));
    assert!(claims.claim(&lapsing, "token-a", SHORT_TTL).await.unwrap());
    assert!(claims.claim(&renewed, "token-a", SHORT_TTL).await.unwrap());
    assert!(claims.renew(&renewed, "token-a", LONG).await.unwrap());
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert!(
        !claims.renew(&lapsing, "token-a", LONG).await.unwrap(),
        "a lapsed claim is not the holder's any more"
    );
    assert!(
        claims.claim(&lapsing, "token-b", LONG).await.unwrap(),
        "a lapsed claim is free to another token"
    );
    assert!(
        !claims.claim(&renewed, "token-b", LONG).await.unwrap(),
        "a renewed claim outlives its first lifetime"
    );
}

async fn one_of_many_concurrent_claims_wins(cache: Arc<dyn Cache>, ns: &str) {
    let key = format!("{ns}claim:race");
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move {
                let claims = cache.claims().unwrap();
                claims
                    .claim(&key, &format!("token-{t}"), LONG)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.expect("a claiming task panicked"));
    }
    assert_eq!(won, 1, "exactly one of 16 concurrent claims wins");
}
