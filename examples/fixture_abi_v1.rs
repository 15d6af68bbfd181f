//! Test fixture: a plugin whose handshake says it was built for plugin ABI 1 with
//! fibcache-core 0.1.0, as a plugin of the first release was, so that the tests can show the
//! server refuses it naming both sides' versions. Not an example to follow.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_abi_v1
//! cargo run --features dynamic -- --plugin target/debug/examples/libfixture_abi_v1.so
//! ```

#![forbid(unsafe_code)]

use fibcache_core::nop::NopCache;
use fibcache_core::{export_plugin, register_backend, Config, Result};

async fn create(_config: &Config) -> Result<NopCache> {
    Ok(NopCache)
}

// A backend, so that only the version check can refuse the library.
register_backend! {
    name: "abiv1",
    summary: "test fixture that claims plugin ABI 1",
    factory: create,
}

export_plugin!(@fixture abi_version = 1, core_version = "0.1.0");
