//! What the benches share: criterion's settings, timing async operations without timing the
//! runtime, finding (or building) the example plugin, and how the reports sum up rounds.
//!
//! Each bench includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

pub mod boundary;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// Short runs: on a shared 2-core machine more samples add noise, not precision, and every
/// criterion bench together should finish in a few minutes.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// Times `iters` sequential runs of `op` inside one `block_on`, so that entering the runtime is
/// not part of what is measured (for `Bencher::iter_custom`).
pub fn time_async<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut op: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(op().await);
        }
        start.elapsed()
    })
}

/// Runs `work(t, runtime)` on each of `threads` threads, each with a runtime of its own built
/// beforehand, all started together on a barrier; returns the wall time from that common start
/// to the last thread's end.
pub fn on_threads<F>(threads: usize, work: F) -> Duration
where
    F: Fn(usize, &tokio::runtime::Runtime) + Sync,
{
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    let rt = current_thread();
                    barrier.wait();
                    work(t, &rt);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("benchmark thread");
        }
        start.elapsed()
    })
}

/// A runtime for one thread, as each benchmark thread drives its own futures.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}

/// The directory Cargo put this build's binaries in (`target/release` for `cargo bench`).
pub fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_fibcache"))
        .parent()
        .expect("the binary is in a directory")
        .to_path_buf()
}

/// The `--features` of this build, so that a nested build reuses its artifacts.
pub fn features() -> Vec<&'static str> {
    let mut features = Vec::new();
    if cfg!(feature = "memory") {
        features.push("memory");
    }
    if cfg!(feature = "redis") {
        features.push("redis");
    }
    if cfg!(feature = "dynamic") {
        features.push("dynamic");
    }
    if cfg!(feature = "wasm") {
        features.push("wasm");
    }
    features
}

/// The shared library of the example plugin `example` (e.g. `memcache_plugin`), built with
/// this build's profile and features if it is not there yet.
///
/// # Errors
/// When Cargo cannot build it; the message says which command failed.
pub fn example_plugin(example: &str) -> Result<PathBuf, String> {
    let dir = profile_dir();
    let path = dir.join("examples").join(format!(
        "{}{example}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let target_dir = dir
        .parent()
        .expect("the profile directory is in the target directory");
    let profile = dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("release");
    // Always asked, so that a stale library (older than the plugin's source) is rebuilt;
    // when it is up to date this takes a fraction of a second.
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--example", example, "--no-default-features", "--features"])
        .arg(features().join(","));
    if profile == "release" {
        cmd.arg("--release");
    } else if profile != "debug" {
        cmd.args(["--profile", profile]);
    }
    let shown = format!("{cmd:?}");
    match cmd.status() {
        Ok(status) if status.success() && path.exists() => Ok(path),
        Ok(status) => Err(format!(
            "{shown} exited with {status} (no {})",
            path.display()
        )),
        Err(err) => Err(format!("cannot run {shown}: {err}")),
    }
}

/// The number in the environment variable `name`, or `default` when it is unset or not a
/// whole number.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A figure measured once per round: the median over the rounds and their range, as the
/// reports show it (`median (min–max)`). The median, because another program on the machine
/// only ever slows a round down; the range, so that a reader sees how far to trust it.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        let (n, mid) = (v.len(), v.len() / 2);
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[mid],
            _ => (v[mid - 1] + v[mid]) / 2.0,
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// `median (min–max)` with `decimals` digits after the point.
    pub fn show(&self, decimals: usize) -> String {
        let Spread { median, min, max } = self;
        format!("{median:.decimals$} ({min:.decimals$}–{max:.decimals$})")
    }
}

/// The component of the WebAssembly guest `package` (`guests/<package>`), built for
/// `wasm32-wasip2` in release if it is not up to date.
pub fn wasm_guest(package: &str) -> Result<PathBuf, String> {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .args(["--package", package])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the guest {package} failed (the target: rustup target add \
             wasm32-wasip2):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(guests.join(format!(
        "target/wasm32-wasip2/release/{}.wasm",
        package.replace('-', "_")
    )))
}
