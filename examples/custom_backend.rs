//! A backend written the way a third-party crate would write it: against `fibcache-core`'s
//! public API only, registered with one macro line, and served by the real fibcache server,
//! selectable by name next to the built-in backends.
//!
//! Run it (any flag of `fibcache` works, e.g. `--list-backends`):
//!
//! ```sh
//! FIB_CACHE=sharded cargo run --example custom_backend
//! curl -i localhost:8080/fib/30    # x-cache: miss, then hit
//! ```
//!
//! The backend, `sharded`, is a map split into shards, each behind its own lock, so that
//! threads working on different keys rarely wait for each other. Unlike the built-in `memory`
//! backend it has no capacity bound: fine for fibcache, whose keys are bounded by `--max-n`.

#![forbid(unsafe_code)]

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fibcache_core::{async_trait, register_backend, Cache, Config, Result};

const SHARDS: usize = 16;

/// A value and the instant it stops being valid.
type Entry = (String, Instant);

struct Sharded {
    /// One lock per shard; a `std` mutex, as it is held for a map operation only, never across
    /// an `.await`.
    shards: [Mutex<HashMap<String, Entry>>; SHARDS],
}

impl Sharded {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let shard = &self.shards[hasher.finish() as usize % SHARDS];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Cache for Sharded {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            None => Ok(None),
            Some((_, expires)) if *expires <= Instant::now() => {
                shard.remove(key);
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value.clone())),
        }
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let expires = Instant::now()
            .checked_add(ttl)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        self.shard(key)
            .insert(key.to_owned(), (value.to_owned(), expires));
        Ok(())
    }
}

async fn create(_config: &Config) -> Result<Sharded> {
    Ok(Sharded {
        shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
    })
}

register_backend! {
    name: "sharded",
    summary: "example third-party backend: a map in 16 locked shards",
    factory: create,
}

fn main() -> std::process::ExitCode {
    fibcache_server::cli::main(fibcache_server::about!())
}
