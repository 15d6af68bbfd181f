//! A storm of cold requests for one `n` against a single request for it.
//!
//! Starts the release `fibcache` binary with the `nop` backend (so every round is cold) and
//! measures, side by side in one run:
//! - `single`: the wall time of one request for `n` (one computation);
//! - `storm`: the wall time until all of 64 concurrent requests for the same `n` are answered.
//!   With coalescing they share one computation, so the ratio `storm / single` should stay
//!   near 1 (target: at most 1.5);
//! - `article`: what the article's server would take for the same storm, computing once per
//!   request on this machine's cores: `single * 64 / cores` (computed, since fibcache has no
//!   switch to turn coalescing off).
//!
//! Run with `cargo bench --bench coalescing`; `FIBCACHE_STORM_N` sets `n` (default 38) and
//! `FIBCACHE_STORM_ROUNDS` the rounds (default 5; the median is reported). Loopback only;
//! the server is killed (by PID) at the end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STORM: usize = 64;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> (Server, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fibcache"))
        .args(["--host", "127.0.0.1", "--port", "0", "--cache", "nop"])
        .args(["--log-level", "warn,fibcache_server::cli=info"])
        .args(["--compute-timeout", "10m", "--queue-wait", "10s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fibcache");
    let stderr = child.stderr.take().expect("piped stderr");
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("fibcache exited before listening")
            .expect("read fibcache's log");
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            break addr.parse().expect("a socket address after addr=");
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (server, addr)
}

async fn get(addr: SocketAddr, n: u64) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /fib/{n} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn storm(addr: SocketAddr, n: u64, size: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..size).map(|_| tokio::spawn(get(addr, n))).collect();
    for task in tasks {
        assert_eq!(
            task.await.expect("request task"),
            200,
            "every request is answered"
        );
    }
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter this bench does not use.
    let n = env_or("FIBCACHE_STORM_N", 38);
    let rounds = env_or("FIBCACHE_STORM_ROUNDS", 5).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let (_server, addr) = start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Warm up: connections, page cache, CPU frequency.
        storm(addr, n, 1).await;
        let mut singles = Vec::new();
        let mut storms = Vec::new();
        // Interleaved, so drift on a shared machine hits both alike.
        for _ in 0..rounds {
            singles.push(storm(addr, n, 1).await);
            storms.push(storm(addr, n, STORM).await);
        }
        let single = median(singles);
        let stormed = median(storms);
        let article = single * STORM as u32 / cores as u32;
        println!("coalescing: fib({n}), {STORM} concurrent cold requests, {cores} cores, median of {rounds} rounds (nop backend)\n");
        println!("| case | wall time | ratio to one request |");
        println!("|---|---:|---:|");
        println!("| one request | {single:.2?} | 1.00 |");
        println!(
            "| {STORM} concurrent, coalesced (fibcache) | {stormed:.2?} | {:.2} |",
            stormed.as_secs_f64() / single.as_secs_f64()
        );
        println!(
            "| {STORM} concurrent, one computation each (article, computed) | {article:.2?} | {:.2} |",
            article.as_secs_f64() / single.as_secs_f64()
        );
    });
}
