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

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use fibcache_core::{Config, Registry};
use fibcache_wasm::{load_plugins, Limits};

use common::boundary;

// Referenced so that the linker keeps the backends crate and its registrations.
use fibcache_backends as _;

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
    let caches = boundary::seeded(&rt, &registry, &config, &["memory", "memcache"]);
    let mut group = c.benchmark_group("wasm");
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
    boundary::hits_and_writes(&mut group, &rt, &caches);
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = wasm
}
criterion_main!(benches);
