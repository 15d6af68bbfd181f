//! What choosing a backend by name costs: building the [`Registry`] from the `inventory`
//! registrations linked into the binary, looking a backend up by name, and creating a ready
//! cache from it (`memory` and `nop`).
//!
//! Run with `cargo bench --bench registry`. Each line is the time of one call (criterion's
//! `time: [low estimate high]`). All of this happens once at start-up, so the point is only
//! that it is microseconds, not milliseconds; `lookup` also shows that the name lookup (a
//! `BTreeMap` of a handful of entries) is nothing next to a request, while `lookup_unknown`
//! pays for formatting the "available: ..." list of its error.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use fibcache_core::{Config, Registry};

// Referenced so that the linker keeps the backends crate and its registrations.
use fibcache_backends as _;

fn registry(c: &mut Criterion) {
    let mut group = c.benchmark_group("registry");
    group.bench_function("new", |b| {
        b.iter(|| Registry::new().expect("no duplicates"))
    });

    let registry = Registry::new().expect("no duplicates");
    group.bench_function("lookup", |b| {
        b.iter(|| {
            registry
                .get(black_box("memory"))
                .map(|backend| backend.name().len())
        })
    });
    group.bench_function("lookup_unknown", |b| {
        // The error path formats the list of available names.
        b.iter(|| registry.get(black_box("memcached")).is_err())
    });

    let rt = common::current_thread();
    let config = Config::default();
    for name in ["memory", "nop"] {
        group.bench_function(format!("create/{name}"), |b| {
            b.iter_custom(|iters| {
                common::time_async(&rt, iters, || async {
                    registry.create(name, &config).await.expect("compiled in")
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = registry
}
criterion_main!(benches);
