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

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fibcache_core::{Cache, Config, Registry};

// Referenced so that the linker keeps the backends crate and its registrations.
use fibcache_backends as _;

const KEY: &str = "fib:30";
const VALUE: &str = "832040";
const TTL: Duration = Duration::from_secs(3600);

/// `iters` gets of [`KEY`] on each of `threads` threads started together.
fn get_hits(cache: &Arc<dyn Cache>, threads: usize, iters: u64) -> Duration {
    common::on_threads(threads, |_, rt| {
        common::time_async(rt, iters, || async { cache.get(KEY).await.expect("a hit") });
    })
}

fn plugin(c: &mut Criterion) {
    let library = common::example_plugin("memcache_plugin").unwrap_or_else(|err| panic!("{err}"));
    let mut registry = Registry::new().expect("registry");
    fibcache_core::plugin::load_plugins(&[library], &mut registry)
        .unwrap_or_else(|err| panic!("{err}"));

    let rt = common::current_thread();
    let config = Config::default();
    let caches: Vec<(&str, Arc<dyn Cache>)> = ["memory", "memcache"]
        .into_iter()
        .map(|name| {
            let cache = rt
                .block_on(registry.create(name, &config))
                .unwrap_or_else(|err| panic!("create {name}: {err}"));
            rt.block_on(cache.set(KEY, VALUE, TTL))
                .expect("seed the key");
            (name, cache)
        })
        .collect();

    let mut group = c.benchmark_group("plugin");
    for (name, cache) in &caches {
        group.bench_function(format!("get_hit/{name}"), |b| {
            b.iter_custom(|iters| {
                common::time_async(&rt, iters, || async {
                    cache.get(KEY).await.expect("a hit")
                })
            })
        });
    }
    for (name, cache) in &caches {
        group.bench_function(format!("set/{name}"), |b| {
            b.iter_custom(|iters| {
                common::time_async(&rt, iters, || async {
                    cache.set(KEY, VALUE, TTL).await.expect("set")
                })
            })
        });
    }
    group.throughput(Throughput::Elements(2));
    for (name, cache) in &caches {
        group.bench_function(format!("get_hit_threads=2/{name}"), |b| {
            b.iter_custom(|iters| get_hits(cache, 2, iters))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = plugin
}
criterion_main!(benches);
