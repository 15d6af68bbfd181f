//! A backend in a library crate of someone else's: `dash`, a map with a lifetime per entry,
//! registered with `register_backend!` and named by its descriptor [`DASH`].

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fibcache_core::{async_trait, register_backend, Cache, Config, Result};

/// Values and when they expire.
#[derive(Default)]
pub struct Dash(Mutex<HashMap<String, (String, Instant)>>);

#[async_trait]
impl Cache for Dash {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let live = map.get(key).filter(|(_, until)| Instant::now() < *until);
        Ok(live.map(|(value, _)| value.clone()))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key.to_owned(), (value.to_owned(), Instant::now() + ttl));
        Ok(())
    }
}

async fn create(_config: &Config) -> Result<Dash> {
    Ok(Dash::default())
}

register_backend! {
    name: "dash",
    summary: "a map in a library crate of someone else's",
    factory: create,
    descriptor: pub DASH,
}
