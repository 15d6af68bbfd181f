//! A storm of cold requests for one `n` against a single request for it.
//!
//! Starts the release `fibcache` binary with the `nop` backend (so every request is cold) and
//! measures, in interleaved rounds:
//! - `one request`: the wall time of one request for `n` (one computation);
//! - `64 concurrent`: the wall time until all of 64 concurrent requests for the same `n` are
//!   answered. Coalesced, they share one computation, so the ratio to one request should stay
//!   near 1 (target: at most 1.5).
//!
//! Each wall time is the median over the rounds with its range (min–max); the ratio is the
//! median of the within-round ratios, with their range. Below the table, a *computed estimate*
//! (not a measurement: fibcache has no switch to turn coalescing off) of the same storm on the
//! article's server, which computes once per request: one request's median × 64 / cores.
//!
//! Run with `cargo bench --bench coalescing`; `FIBCACHE_STORM_N` sets `n` (default 38) and
//! `FIBCACHE_STORM_ROUNDS` the rounds (default 5). Loopback only; the server is killed (by its
//! PID) at the end. Run as a test (`cargo test --benches`), it only says how to run it.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Spread;

const STORM: usize = 64;

/// The wall time until `size` concurrent `GET /fib/{n}` are all answered 200.
async fn storm(addr: SocketAddr, n: u64, size: usize) -> Duration {
    let path = format!("/fib/{n}");
    let start = Instant::now();
    let tasks: Vec<_> = (0..size)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { support::get(addr, &path).await.status })
        })
        .collect();
    for task in tasks {
        let status = task.await.expect("request task");
        assert_eq!(status, 200, "every request is answered");
    }
    start.elapsed()
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!(
            "benches/coalescing.rs is a bench, not a test; run `cargo bench --bench coalescing`"
        );
        return;
    }
    let n = common::env_or("FIBCACHE_STORM_N", 38);
    let rounds = common::env_or("FIBCACHE_STORM_ROUNDS", 5).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let server = support::Spawn::new()
        .args(["--cache", "nop", "--log-level", "warn"])
        .args(["--compute-timeout", "10m", "--queue-wait", "10s"])
        .start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (singles, storms): (Vec<f64>, Vec<f64>) = rt.block_on(async {
        // Warm up: connections, page cache, CPU frequency.
        storm(server.addr, n, 1).await;
        let mut times = Vec::new();
        // Interleaved, so drift on a shared machine hits both alike.
        for _ in 0..rounds {
            let single = storm(server.addr, n, 1).await.as_secs_f64();
            times.push((single, storm(server.addr, n, STORM).await.as_secs_f64()));
        }
        times.into_iter().unzip()
    });
    drop(server);
    let ms = |s: Spread| Spread {
        median: s.median * 1e3,
        min: s.min * 1e3,
        max: s.max * 1e3,
    };
    let single = Spread::of(singles.iter().copied()).expect("at least one round");
    let stormed = Spread::of(storms.iter().copied()).expect("at least one round");
    let ratio = Spread::of(storms.iter().zip(&singles).map(|(s, o)| s / o)).expect("rounds");
    println!(
        "coalescing: fib({n}), nop backend, {cores} cores, {rounds} rounds (one request, then \
         {STORM} concurrent, in turn); median over the rounds (min–max)\n"
    );
    println!("| case (measured) | wall time, ms: median (min–max) | × one request: median of round ratios (min–max) |");
    println!("|---|---:|---:|");
    println!("| one request | {} | 1 (itself) |", ms(single).show(1));
    println!(
        "| {STORM} concurrent, coalesced (fibcache) | {} | {} |",
        ms(stormed).show(1),
        ratio.show(2)
    );
    let article = single.median * STORM as f64 / cores as f64;
    println!(
        "\nComputed estimate, not measured: the article's server computes once per request, so \
         the same storm on these {cores} cores would take about {STORM} × {:.1} ms / {cores} = \
         {:.2} s ({:.0}× one request).",
        single.median * 1e3,
        article,
        article / single.median
    );
}
