//! The `memory` backend under contention: `get` of a present key (a hit) and `set`, from 1, 2
//! and 4 threads at once, through the `Arc<dyn Cache>` the server holds.
//!
//! Run with `cargo bench --bench memory`. In `memory/get_hit/threads=T`, one iteration is one
//! operation on *each* of the T threads (they start together on a barrier), so `time` is how
//! long a round of T concurrent operations takes and `thrpt` (elements/s) is the total
//! operations per second of all threads. With no contention `thrpt` would grow with T; it
//! grows less because every operation takes the one `std::sync::Mutex` (a hit updates the LRU
//! order, so even reads need it exclusively). This machine has 2 cores, so 4 threads also
//! measure time-slicing, not only the lock. Keys cycle over 64 entries, as a busy server's
//! would over the popular `n`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fibcache_core::{Cache, Config, Registry};

// Referenced so that the linker keeps the backends crate and its registrations.
use fibcache_backends as _;

const KEYS: usize = 64;
const TTL: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy)]
enum Op {
    GetHit,
    Set,
}

/// Runs `iters` operations on each of `threads` threads at once; returns the wall time from
/// the common start to the last thread's end.
fn run(cache: &Arc<dyn Cache>, keys: &[String], op: Op, threads: usize, iters: u64) -> Duration {
    common::on_threads(threads, |t, rt| {
        rt.block_on(async {
            for i in 0..iters as usize {
                let key = &keys[(i + t * 17) % KEYS];
                match op {
                    Op::GetHit => {
                        let value = cache.get(key).await.expect("a hit");
                        std::hint::black_box(value);
                    }
                    Op::Set => cache.set(key, "832040", TTL).await.expect("set"),
                }
            }
        });
    })
}

fn memory(c: &mut Criterion) {
    let rt = common::current_thread();
    let cache = rt
        .block_on(
            Registry::new()
                .expect("registry")
                .create("memory", &Config::default()),
        )
        .expect("memory is compiled in");
    let keys: Vec<String> = (0..KEYS).map(|n| format!("fib:{n}")).collect();
    for key in &keys {
        rt.block_on(cache.set(key, "832040", TTL)).expect("set");
    }

    let mut group = c.benchmark_group("memory");
    for (name, op) in [("get_hit", Op::GetHit), ("set", Op::Set)] {
        for threads in [1, 2, 4] {
            group.throughput(Throughput::Elements(threads as u64));
            group.bench_function(format!("{name}/threads={threads}"), |b| {
                b.iter_custom(|iters| run(&cache, &keys, op, threads, iters))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = memory
}
criterion_main!(benches);
