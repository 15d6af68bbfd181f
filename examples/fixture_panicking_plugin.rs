//! Test fixture: a plugin backend `panicky` whose `get` panics, so that the tests can show the
//! panic becomes a cache error and the request is still answered. `set` works.
//!
//! The panic message spans two lines on purpose: a message with a newline (as a panic's
//! message, an error's source or a server's reply may have) must not break a log line, and
//! the tests check that every line of the server's log is a whole one.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_panicking_plugin
//! cargo run --features dynamic -- \
//!     --plugin target/debug/examples/libfixture_panicking_plugin.so --cache panicky
//! ```

#![forbid(unsafe_code)]

use std::time::Duration;

use fibcache_core::{async_trait, export_plugin, register_backend, Cache, Config, Result};

struct Panicky;

#[async_trait]
impl Cache for Panicky {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        panic!("panicky fixture: get({key}) always panics\nand says so on a second line");
    }

    async fn set(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<()> {
        Ok(())
    }
}

async fn create(_config: &Config) -> Result<Panicky> {
    Ok(Panicky)
}

register_backend! {
    name: "panicky",
    summary: "test fixture whose get panics",
    factory: create,
}

export_plugin!();
