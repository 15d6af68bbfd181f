//! The measurements the plugin and WebAssembly benches share: a backend behind a boundary
//! against the built-in `memory`, both created from one registry and called through the
//! `Arc<dyn Cache>` the server holds.

use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Throughput};
use fibcache_core::{Cache, Config, Registry};

/// The key every operation reads or writes, and its value.
pub const KEY: &str = "fib:30";
pub const VALUE: &str = "832040";
pub const TTL: Duration = Duration::from_secs(3600);

/// The backends `names` of `registry`, created from `config` on `rt`, each holding [`KEY`].
pub fn seeded(
    rt: &tokio::runtime::Runtime,
    registry: &Registry,
    config: &Config,
    names: &[&'static str],
) -> Vec<(&'static str, Arc<dyn Cache>)> {
    names
        .iter()
        .map(|&name| {
            let cache = rt
                .block_on(registry.create(name, config))
                .unwrap_or_else(|err| panic!("create {name}: {err}"));
            rt.block_on(cache.set(KEY, VALUE, TTL))
                .expect("seed the key");
            (name, cache)
        })
        .collect()
}

/// Benches, for each cache in `group`: `get_hit/<name>` and `set/<name>`, one operation at a
/// time; then `get_hit_threads=2/<name>`, a get on each of 2 threads at once, with the group's
/// throughput set to 2 elements (bench anything else in the group before this).
pub fn hits_and_writes(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    caches: &[(&'static str, Arc<dyn Cache>)],
) {
    for (name, cache) in caches {
        group.bench_function(format!("get_hit/{name}"), |b| {
            b.iter_custom(|iters| {
                super::time_async(rt, iters, || async { cache.get(KEY).await.expect("a hit") })
            })
        });
    }
    for (name, cache) in caches {
        group.bench_function(format!("set/{name}"), |b| {
            b.iter_custom(|iters| {
                super::time_async(rt, iters, || async {
                    cache.set(KEY, VALUE, TTL).await.expect("set")
                })
            })
        });
    }
    group.throughput(Throughput::Elements(2));
    for (name, cache) in caches {
        group.bench_function(format!("get_hit_threads=2/{name}"), |b| {
            b.iter_custom(|iters| {
                super::on_threads(2, |_, rt| {
                    super::time_async(rt, iters, || async { cache.get(KEY).await.expect("a hit") });
                })
            })
        });
    }
}
