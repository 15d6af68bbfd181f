//! The `Cache` conformance suite against the built-in backends created through the registry.

mod support;

use fibcache_core::{Config, Registry};

use fibcache_backends as _;

#[cfg(feature = "memory")]
#[tokio::test(flavor = "multi_thread")]
async fn memory_passes_the_conformance_suite() {
    let cache = Registry::new()
        .unwrap()
        .create("memory", &Config::default())
        .await
        .unwrap();
    assert!(cache.expiry().is_none(), "memory offers no Expiry");
    assert!(cache.claims().is_none(), "memory offers no Claims");
    support::conformance::run(cache, "conformance:").await;
}

#[cfg(feature = "memory")]
#[tokio::test(flavor = "multi_thread")]
async fn memory_keeps_at_most_its_capacity_whatever_keys_are_asked_for() {
    let config = Config::default().with_capacity(std::num::NonZeroUsize::new(100).unwrap());
    let cache = Registry::new()
        .unwrap()
        .create("memory", &config)
        .await
        .unwrap();
    let ttl = std::time::Duration::from_secs(60);
    for i in 0..10_000 {
        cache.set(&format!("k{i}"), "v", ttl).await.unwrap();
    }
    let mut present = 0;
    for i in 0..10_000 {
        if cache.get(&format!("k{i}")).await.unwrap().is_some() {
            present += 1;
        }
    }
    assert_eq!(present, 100, "exactly the capacity survives");
    // The survivors are the most recently written.
    assert!(cache.get("k9999").await.unwrap().is_some());
    assert!(cache.get("k9899").await.unwrap().is_none());
}

#[tokio::test]
async fn nop_stores_nothing() {
    let cache = Registry::new()
        .unwrap()
        .create("nop", &Config::default())
        .await
        .unwrap();
    assert!(cache.expiry().is_none(), "nop offers no Expiry");
    assert!(cache.claims().is_none(), "nop offers no Claims");
    cache
        .set("k", "v", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap(), None);
}
