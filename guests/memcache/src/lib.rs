//! `memcache`: an in-memory LRU cache with per-entry lifetimes, as a WebAssembly component of
//! the `fibcache:cache` world with both optional capabilities (`expiry`, `claims`).
//!
//! The store lives in the instance's linear memory, so it starts empty whenever the host
//! re-creates the instance (after a trap): a cache may forget, never answer wrongly.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

wit_bindgen::generate!({ path: "../../wit", world: "cache-full" });

use exports::fibcache::cache::backend::{Config, Guest as Backend, Info};
use exports::fibcache::cache::claims::Guest as Claims;
use exports::fibcache::cache::expiry::Guest as Expiry;

/// The entries and when each lapses. A component instance is single-threaded (the host
/// serializes calls), so a `RefCell` is all the locking needed.
struct Store {
    entries: LruCache<String, (String, Instant)>,
}

thread_local! {
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
}

fn with_store<T>(f: impl FnOnce(&mut Store) -> T) -> Result<T, String> {
    STORE.with(|store| match store.borrow_mut().as_mut() {
        Some(store) => Ok(f(store)),
        None => Err("memcache: `open` was not called".to_owned()),
    })
}

impl Store {
    /// The live entry of `key`, dropping it if it has lapsed.
    fn live(&mut self, key: &str) -> Option<&(String, Instant)> {
        let now = Instant::now();
        if self.entries.peek(key).is_some_and(|(_, until)| *until <= now) {
            self.entries.pop(key);
        }
        self.entries.get(key)
    }
}

struct Memcache;

impl Backend for Memcache {
    fn backends() -> Vec<Info> {
        vec![Info {
            name: "memcache".to_owned(),
            summary: "in-memory LRU with TTLs (WebAssembly component)".to_owned(),
        }]
    }

    fn open(name: String, config: Config) -> Result<(), String> {
        if name != "memcache" {
            return Err(format!("memcache serves `memcache`, not `{name}`"));
        }
        let capacity = usize::try_from(config.capacity)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| format!("capacity {} is out of range", config.capacity))?;
        STORE.with(|store| {
            *store.borrow_mut() = Some(Store {
                entries: LruCache::new(capacity),
            })
        });
        Ok(())
    }

    fn get(key: String) -> Result<Option<String>, String> {
        with_store(|store| store.live(&key).map(|(value, _)| value.clone()))
    }

    fn set(key: String, value: String, ttl_ms: u64) -> Result<(), String> {
        let until = Instant::now() + Duration::from_millis(ttl_ms);
        with_store(|store| {
            store.entries.put(key, (value, until));
        })
    }
}

impl Expiry for Memcache {
    fn remaining(key: String) -> Result<Option<u64>, String> {
        with_store(|store| {
            store.live(&key).map(|(_, until)| {
                let left = until.saturating_duration_since(Instant::now());
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
            })
        })
    }
}

impl Claims for Memcache {
    fn claim(key: String, token: String, ttl_ms: u64) -> Result<bool, String> {
        with_store(|store| {
            if store.live(&key).is_some() {
                return false;
            }
            let until = Instant::now() + Duration::from_millis(ttl_ms);
            store.entries.put(key, (token, until));
            true
        })
    }

    fn renew(key: String, token: String, ttl_ms: u64) -> Result<bool, String> {
        with_store(|store| match store.live(&key) {
            Some((held, _)) if *held == token => {
                let until = Instant::now() + Duration::from_millis(ttl_ms);
                store.entries.put(key, (token, until));
                true
            }
            _ => false,
        })
    }

    fn release(key: String, token: String) -> Result<bool, String> {
        with_store(|store| match store.live(&key) {
            Some((held, _)) if *held == token => {
                store.entries.pop(&key);
                true
            }
            _ => false,
        })
    }
}

export!(Memcache);
