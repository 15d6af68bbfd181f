//! A backend loaded from a shared library against the same backend compiled in: the example
//! plugin `memcache` (the `memory` backend's code, built into a plugin) against the built-in
//! `memory`, both created from one registry and called through the `Arc<dyn Cache>` the server
//! holds.
//!
//! Run with `cargo bench --features dynamic --bench plugin`; it builds
//! `examples/memcache_plugin.rs` as a `cdylib` (same profile and features) if needed. Read the
//! pairs side by side:
//! - `plugin/get_hit/{memory,memcache}` and `plugin/set/{memory,memcache}`: one operation at a
//!   time; `time` per operation. The difference is the plugin boundary: copying key and value
//!   across the C ABI, handing the operation to the plugin's own runtime (a thread hop: a
//!   plugin thread wakes to run it, and the waiting task here wakes for the answer), and the
//!   completion callback and its oneshot channel (the LRU behind both is the same code). The
//!   hop is most of it, and it depends on the machine: how long a parked thread takes to wake.
//! - `plugin/get_hit_threads=2/{memory,memcache}`: the same from 2 threads at once (the
//!   server's 2 workers on this machine); one iteration is one get on each thread and `thrpt`
//!   is gets per second in total.
//!
//! A hit through the HTTP server costs tens of microseconds, and the hop costs microseconds
//! to tens of them: visible in the load report (`benches/http/`) for a plugin tier, which is
//! why a `memory` tier in front of a plugin (`memory+memcache`) is the fast configuration.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use fibcache_core::{Config, Registry};

use common::boundary;

// Referenced so that the linker keeps the backends crate and its registrations.
use fibcache_backends as _;

fn plugin(c: &mut Criterion) {
    let library = common::example_plugin("memcache_plugin").unwrap_or_else(|err| panic!("{err}"));
    let mut registry = Registry::new().expect("registry");
    fibcache_core::plugin::load_plugins(&[library], &mut registry)
        .unwrap_or_else(|err| panic!("{err}"));

    let rt = common::current_thread();
    let caches = boundary::seeded(&rt, &registry, &Config::default(), &["memory", "memcache"]);
    let mut group = c.benchmark_group("plugin");
    boundary::hits_and_writes(&mut group, &rt, &caches);
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = plugin
}
criterion_main!(benches);
