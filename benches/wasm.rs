//! A backend in a WebAssembly component against the same kind of backend compiled in: the
//! guest `memcache` (`guests/memcache`, an LRU with TTLs) against the built-in `memory`, both
//! created from one registry and called through the `Arc<dyn Cache>` the server holds.
//!
//! Run with `cargo bench --features wasm --bench wasm`; it builds the guests for
//! `wasm32-wasip2` if needed (`rustup target add wasm32-wasip2`). Read the pairs side by side:
//! - `wasm/get_hit/{memory,memcache}` and `wasm/set/{memory,memcache}`: one operation at a
//!   time; `time` per operation. The difference is the sandbox boundary: the hop to the
//!   instance's thread and back (a bounded queue and a oneshot), setting the call's epoch
//!   deadline, and copying key and value into and out of guest memory.
//! - `wasm/get_hit_threads=2/{memory,memcache}`: the same from 2 threads at once; `thrpt` is
//!   gets per second in total. The instance serves one call at a time, so this shows the queue.
//! - `wasm/create/memcache`: creating a cache: a thread, an instance from the pre-linked
//!   component, and the guest's `open` (what a trap costs the next call, plus the thread).
//! - `wasm/load/memcache`: compiling and checking the component file (cranelift), as start-up
//!   does once per `--plugin`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fibcache_core::{Cache, Config, Registry};
use fibcache_wasm::{load_plugins, Limits};

// Referenced so that the linker keeps the backends crate and its registrations.
use fibcache_backends as _;

const KEY: &str = "fib:30";
const VALUE: &str = "832040";
const TTL: Duration = Duration::from_secs(3600);

fn wasm(c: &mut Criterion) {
    let component = common::wasm_guest("memcache").unwrap_or_else(|err| panic!("{err}"));
    let mut registry = Registry::new().expect("registry");
    load_plugins(
        std::slice::from_ref(&component),
        &mut registry,
        &Limits::default(),
    )
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

    let mut group = c.benchmark_group("wasm");
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
    group.bench_function("create/memcache", |b| {
        b.iter_custom(|iters| {
            common::time_async(&rt, iters, || async {
                registry.create("memcache", &config).await.expect("create")
            })
        })
    });
    group.bench_function("load/memcache", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut registry = Registry::new().expect("registry");
                load_plugins(
                    std::slice::from_ref(&component),
                    &mut registry,
                    &Limits::default(),
                )
                .expect("load");
            }
            start.elapsed()
        })
    });
    group.throughput(Throughput::Elements(2));
    for (name, cache) in &caches {
        group.bench_function(format!("get_hit_threads=2/{name}"), |b| {
            b.iter_custom(|iters| {
                common::on_threads(2, |_, rt| {
                    common::time_async(rt, iters, || async {
                        cache.get(KEY).await.expect("a hit")
                    });
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = wasm
}
criterion_main!(benches);
