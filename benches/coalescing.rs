//! A storm of cold requests for one `n` against a single request for it, in one instance and
//! across a fleet of instances sharing a Redis.
//!
//! **One instance.** Starts the release `fibcache` binary with the `nop` backend (so every
//! request is cold) and measures, in interleaved rounds:
//! - `one request`: the wall time of one request for `n` (one computation);
//! - `64 concurrent`: the wall time until all of 64 concurrent requests for the same `n` are
//!   answered. Coalesced, they share one computation, so the ratio to one request should stay
//!   near 1 (target: at most 1.5).
//!
//! Below its table, a *computed estimate* (not a measurement: coalescing inside one process
//! has no switch) of the same storm on the article's server, which computes once per request:
//! one request's median × 64 / cores.
//!
//! **Across instances** (feature `redis`). Starts a `redis-server` on a free loopback port and
//! two fleets of 4 instances on it with `--cache redis`: one with cluster-wide coalescing (the
//! default), one with `--cluster-coalescing off`. Each round empties Redis (`FLUSHALL`) before
//! each case, so `n` is cold every time, then measures one request, 64 concurrent requests
//! spread over the coalescing fleet (16 per instance), and the same over the other fleet.
//! Target: the coalescing fleet at most 1.5× one request; the computations counted by the
//! fleets' `/metrics` show why (1 against 4).
//!
//! Each wall time is the median over the rounds with its range (min–max); a ratio is the
//! median of the within-round ratios, with their range.
//!
//! Run with `cargo bench --bench coalescing` (`--features redis` for the fleets);
//! `FIBCACHE_STORM_N` sets `n` (default 38) and `FIBCACHE_STORM_ROUNDS` the rounds (default 5).
//! Loopback only; every process is killed (by its PID) at the end. Run as a test (`cargo test
//! --benches`), it only says how to run it.

mod common;

use fibcache_test_support as support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Spread;

const STORM: usize = 64;

/// The wall time until `size` concurrent `GET /fib/{n}` are all answered 200.
async fn storm(addr: SocketAddr, n: u64, size: usize) -> Duration {
    fleet_storm(&[addr], n, size).await
}

/// The wall time until `size` concurrent `GET /fib/{n}`, spread in turn over `addrs`, are all
/// answered 200 with the right number.
async fn fleet_storm(addrs: &[SocketAddr], n: u64, size: usize) -> Duration {
    let path = format!("/fib/{n}");
    let expected = fibcache_server::fib::fib_fast(n).expect("n is in range");
    let start = Instant::now();
    let tasks: Vec<_> = (0..size)
        .map(|i| {
            let (path, addr) = (path.clone(), addrs[i % addrs.len()]);
            tokio::spawn(async move { support::get(addr, &path).await })
        })
        .collect();
    for task in tasks {
        let resp = task.await.expect("request task");
        assert_eq!(resp.status, 200, "every request is answered: {}", resp.body);
        assert_eq!(support::json(&resp)["result"], expected, "and right");
    }
    start.elapsed()
}

/// Wall times in seconds as milliseconds.
fn ms(s: Spread) -> Spread {
    Spread {
        median: s.median * 1e3,
        min: s.min * 1e3,
        max: s.max * 1e3,
    }
}

/// Median and range of `times` (seconds) and of their within-round ratios to `singles`.
fn against(times: &[f64], singles: &[f64]) -> (Spread, Spread) {
    let wall = Spread::of(times.iter().copied()).expect("at least one round");
    let ratio = Spread::of(times.iter().zip(singles).map(|(t, o)| t / o)).expect("rounds");
    (ms(wall), ratio)
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
    let single = Spread::of(singles.iter().copied()).expect("at least one round");
    let (stormed, ratio) = against(&storms, &singles);
    println!(
        "coalescing: fib({n}), nop backend, {cores} cores, {rounds} rounds (one request, then \
         {STORM} concurrent, in turn); median over the rounds (min–max)\n"
    );
    println!("| case (measured) | wall time, ms: median (min–max) | × one request: median of round ratios (min–max) |");
    println!("|---|---:|---:|");
    println!("| one request | {} | 1 (itself) |", ms(single).show(1));
    println!(
        "| {STORM} concurrent, coalesced (fibcache) | {} | {} |",
        stormed.show(1),
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
    #[cfg(feature = "redis")]
    fleets::run(&rt, n, rounds);
}

#[cfg(feature = "redis")]
mod fleets {
    use super::*;
    use support::redis_server::RedisServer;

    const INSTANCES: usize = 4;

    /// A fleet of [`INSTANCES`] on the Redis at `url`, with `args`.
    fn fleet(url: &str, args: &[&str]) -> Vec<support::Server> {
        (0..INSTANCES)
            .map(|_| {
                support::Spawn::new()
                    .env("REDIS_URL", url)
                    .args(["--cache", "redis", "--log-level", "warn"])
                    .args(["--compute-timeout", "10m", "--queue-wait", "10s"])
                    .args(args.iter().copied())
                    .start()
            })
            .collect()
    }

    /// The computations a fleet started, from its `/metrics`.
    async fn computations(fleet: &[support::Server]) -> f64 {
        let mut sum = 0.0;
        for server in fleet {
            sum += server.metric("fibcache_computations_started_total").await;
        }
        sum
    }

    pub fn run(rt: &tokio::runtime::Runtime, n: u64, rounds: u64) {
        let redis = RedisServer::start();
        let on = fleet(&redis.url(), &[]);
        let off = fleet(&redis.url(), &["--cluster-coalescing", "off"]);
        let addrs = |fleet: &[support::Server]| fleet.iter().map(|s| s.addr).collect::<Vec<_>>();
        let (on_addrs, off_addrs) = (addrs(&on), addrs(&off));
        let cold = || assert_eq!(redis.command(&["FLUSHALL"]), "+OK");
        let (mut singles, mut coalesced, mut apart) = (Vec::new(), Vec::new(), Vec::new());
        let (started_on, started_off) = rt.block_on(async {
            cold();
            fleet_storm(&on_addrs, n, 1).await; // warm-up
            let warm = (computations(&on).await, computations(&off).await);
            for _ in 0..rounds {
                cold();
                singles.push(fleet_storm(&on_addrs[..1], n, 1).await.as_secs_f64());
                cold();
                coalesced.push(fleet_storm(&on_addrs, n, STORM).await.as_secs_f64());
                cold();
                apart.push(fleet_storm(&off_addrs, n, STORM).await.as_secs_f64());
            }
            // Per storm: the single requests computed once each round, so leave them out.
            let on = computations(&on).await - warm.0 - rounds as f64;
            let off = computations(&off).await - warm.1;
            (on / rounds as f64, off / rounds as f64)
        });
        drop((on, off, redis));
        let single = Spread::of(singles.iter().copied()).expect("at least one round");
        let (with, with_ratio) = against(&coalesced, &singles);
        let (without, without_ratio) = against(&apart, &singles);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        println!(
            "\ncoalescing across {INSTANCES} instances on one Redis (`--cache redis`): fib({n}), \
             {cores} cores, {rounds} rounds, Redis emptied before each case; {STORM} requests \
             spread evenly over the fleet\n"
        );
        println!("| case (measured) | wall time, ms: median (min–max) | × one request: median of round ratios (min–max) | computations per storm |");
        println!("|---|---:|---:|---:|");
        println!("| one request | {} | 1 (itself) | 1 |", ms(single).show(1));
        println!(
            "| {STORM} concurrent, cluster coalescing on | {} | {} | {started_on:.2} |",
            with.show(1),
            with_ratio.show(2)
        );
        println!(
            "| {STORM} concurrent, `--cluster-coalescing off` | {} | {} | {started_off:.2} |",
            without.show(1),
            without_ratio.show(2)
        );
        let met = if with_ratio.median <= 1.5 {
            "met"
        } else {
            "MISSED"
        };
        println!(
            "\nTarget: coalescing fleet at most 1.5× one request: {:.2}, {met}. Without it each \
             instance computes, {INSTANCES} computations sharing {cores} cores.",
            with_ratio.median
        );
    }
}
