//! The load generator, `wrk`, and what it measured: its `summary.lua` prints one JSON line.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::{Result, PATH};

/// The load of every round: one load thread, so that on 2 cores the server keeps the other.
pub fn command_line(secs: u64) -> String {
    format!("wrk -t1 -c64 -d{secs}s --latency -s summary.lua")
}

/// What `summary.lua` prints.
#[derive(Deserialize)]
struct Summary {
    requests: u64,
    duration_us: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
}

/// What one run of `wrk` measured.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors and answers with a status of 400 or more.
    pub errors: u64,
}

/// Drives `GET {PATH}` on `addr` for `secs` seconds.
///
/// # Errors
/// When `wrk` fails, prints no summary, or has not finished 30 s after `secs` (it is then
/// killed by its PID).
pub fn run(addr: SocketAddr, secs: u64) -> Result<Load> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/http/summary.lua");
    let mut child = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{secs}s"), "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://{addr}{PATH}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(secs + 30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("wrk did not finish within {} s", secs + 30).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find(|line| line.starts_with('{')) else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("wrk ({}) printed no summary:\n{stdout}{stderr}", out.status).into());
    };
    let s: Summary = serde_json::from_str(line)
        .map_err(|e| format!("cannot read wrk's summary ({e}): {line}"))?;
    Ok(Load {
        rps: s.requests as f64 / (s.duration_us.max(1) as f64 / 1e6),
        p50_ms: s.p50_us as f64 / 1e3,
        p99_ms: s.p99_us as f64 / 1e3,
        errors: s.errors,
    })
}
