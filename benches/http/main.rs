//! The load report: fibcache's hit path over HTTP against a bare hyper server, side by side,
//! in interleaved rounds on loopback.
//!
//! ```text
//! scripts/bench.sh                                   # every row; installs wrk and redis-server
//! FIBCACHE_BENCH_ROUNDS=3 scripts/bench.sh memory    # 3 rounds of the rows named *memory*
//! cargo bench --bench http                           # reference, nop, memory (two log levels)
//! cargo bench --bench http --features redis,dynamic  # ... plus redis and the plugin memcache
//! cargo bench --bench http --features wasm,dynamic -- memory memcache wasm  # the three kinds
//! ```
//!
//! One process per row, started once and killed by its PID at the end, also on error: the
//! `reference`, a bare hyper server (`reference.rs`), and this build's `fibcache` (release
//! under `cargo bench`) with `--cache-ttl 1h` as `nop` (computes fib(10) on every request),
//! `memory` (the default configuration: log level `info`, written to a file as under a service
//! manager), `memory-log-error` (`--log-level error`), `redis` (feature `redis`, against a
//! `redis-server` started on a free loopback port), `memory+redis` (a memory tier in front of
//! that Redis: after the first request, every hit comes from memory) and `memcache` (feature
//! `dynamic`: the example plugin, built if missing) and `wasm` (feature `wasm`: the WebAssembly
//! guest `guests/memcache`, built if missing). Every row serves `GET /fib/10`, the
//! reference's body, so every measured fibcache request is a hit (except with `nop`).
//!
//! Each row is checked (200 and that body) and warmed up; then each round drives every row
//! once with `wrk -t1 -c64 -d<secs>s --latency` (one load thread, so that the server keeps the
//! other core), round r starting at row r mod rows, so that no row always runs first or after
//! the same neighbour. `summary.lua` makes wrk print its counts and percentiles as JSON.
//!
//! # Reading the numbers
//! Requests/s, p50 and p99 are medians over the rounds, with their range (min–max). `×
//! reference` is the median of the *within-round* ratios (a row's requests/s over the
//! reference's in the same round), with their range: the rows of a round run back to back, so
//! a busy moment of the machine does not set one row against another's quiet one. "met" in the
//! targets table is computed from those same medians.
//!
//! Output: stdout, `target/fibcache-bench/report.md`, and a chart of p50 and p99 per row,
//! `target/fibcache-bench/latency.svg`. Settings: `FIBCACHE_BENCH_ROUNDS` (5),
//! `FIBCACHE_BENCH_SECS` (5) of load per row and round, `FIBCACHE_BENCH_WARMUP` (2) per row;
//! arguments after `--` pick rows by name (the reference always runs). Run as a test (`cargo
//! test --benches`), it only says how to run it: timing belongs in benches.

#[path = "../common/mod.rs"]
mod common;
mod reference;
mod report;
mod wrk;

use std::error::Error;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use fibcache_test_support::http as client;
#[cfg(feature = "redis")]
use fibcache_test_support::redis_server;

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// The path every row serves: fib(10) = 55, the reference's constant body.
const PATH: &str = "/fib/10";
const BODY: &[u8] = br#"{"result":55}"#;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some(reference::ARG) {
        reference::serve()
    } else if args.iter().any(|arg| arg == "--bench") {
        let filters = args.iter().filter(|a| !a.starts_with('-'));
        run(&filters.map(String::as_str).collect::<Vec<_>>())
    } else {
        println!("benches/http is a load report, not a test; run `scripts/bench.sh`");
        Ok(())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fibcache load report: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What one run does, from the environment.
pub struct Settings {
    pub rounds: usize,
    pub secs: u64,
    pub warmup: u64,
}

/// One server of the report and how to start it.
pub struct Row {
    /// Short name: the row filter, the chart's label, and how the targets find the row.
    pub key: &'static str,
    /// What the row is, for the table.
    pub title: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

fn fibcache(key: &'static str, title: &'static str, args: &[&str]) -> Row {
    let common = ["--host", "127.0.0.1", "--port", "0", "--cache-ttl", "1h"];
    Row {
        key,
        title,
        program: env!("CARGO_BIN_EXE_fibcache").into(),
        args: common.iter().chain(args).map(|a| (*a).to_owned()).collect(),
        env: Vec::new(),
    }
}

/// Everything this run started; dropped (on success, error or panic), it kills each process
/// by its PID. Fields drop in order: the servers before the Redis they may use.
#[derive(Default)]
struct Started {
    servers: Vec<Server>,
    #[cfg(feature = "redis")]
    redis: Option<redis_server::RedisServer>,
}

fn run(filters: &[&str]) -> Result<()> {
    let settings = Settings {
        rounds: common::env_or("FIBCACHE_BENCH_ROUNDS", 5).max(1) as usize,
        secs: common::env_or("FIBCACHE_BENCH_SECS", 5).max(1),
        warmup: common::env_or("FIBCACHE_BENCH_WARMUP", 2),
    };
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("`wrk` is not installed: `apt-get install wrk` (scripts/bench.sh does)".into());
    }
    let out_dir = common::profile_dir().with_file_name("fibcache-bench");
    let logs = out_dir.join("logs");
    fs::create_dir_all(&logs)?;
    // Read before the run rather than after: others may commit to this tree meanwhile.
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let commit = git_commit();

    let wanted = |key: &str| filters.is_empty() || filters.iter().any(|f| key.contains(f));
    let mut started = Started::default();
    let mut rows = vec![
        // First: the report takes row 0 as the reference.
        Row {
            key: "reference",
            title: "bare hyper (reference)",
            program: std::env::current_exe()?,
            args: vec![reference::ARG.to_owned()],
            env: Vec::new(),
        },
        fibcache(
            "nop",
            "fibcache `nop` (computes fib(10))",
            &["--cache", "nop"],
        ),
    ];
    if cfg!(feature = "memory") {
        let title = "fibcache `memory` (default config)";
        rows.push(fibcache("memory", title, &["--cache", "memory"]));
        let title = "fibcache `memory`, `--log-level error`";
        let args = ["--cache", "memory", "--log-level", "error"];
        rows.push(fibcache("memory-log-error", title, &args));
    }
    #[cfg(feature = "redis")]
    if wanted("redis") {
        // Without `redis-server` this panics saying how to install it; unwinding stops the rest.
        let redis = started.redis.insert(redis_server::RedisServer::start());
        let mut row = fibcache("redis", "fibcache `redis`", &["--cache", "redis"]);
        row.env.push(("REDIS_URL", redis.url()));
        rows.push(row);
        let title = "fibcache `memory+redis` (hits from the memory tier)";
        let mut row = fibcache("memory+redis", title, &["--cache", "memory+redis"]);
        row.env.push(("REDIS_URL", redis.url()));
        rows.push(row);
    }
    #[cfg(feature = "dynamic")]
    if wanted("memcache") {
        eprintln!("building the memcache plugin (if needed) ...");
        let library = common::example_plugin("memcache_plugin")?;
        let args = [
            "--cache",
            "memcache",
            "--plugin",
            &library.display().to_string(),
        ];
        rows.push(fibcache("memcache", "fibcache plugin `memcache`", &args));
    }
    #[cfg(feature = "wasm")]
    if wanted("wasm") {
        eprintln!("building the WebAssembly guests (if needed) ...");
        let component = common::wasm_guest("memcache")?;
        let args = [
            "--cache",
            "memcache",
            "--plugin",
            &component.display().to_string(),
        ];
        rows.push(fibcache("wasm", "fibcache WebAssembly `memcache`", &args));
    }
    rows.retain(|row| row.key == "reference" || wanted(row.key));

    for row in &rows {
        let server = Server::start(row, &logs)?;
        let (pid, addr) = (server.child.id(), server.addr);
        eprintln!("started {:<17} pid {pid:<7} {addr}", row.key);
        started.servers.push(server);
    }
    for server in &started.servers {
        server.check()?;
        if settings.warmup > 0 {
            eprintln!("warming {} for {} s", server.key, settings.warmup);
            wrk::run(server.addr, settings.warmup)?;
        }
    }
    let mut loads: Vec<Vec<wrk::Load>> = vec![Vec::new(); rows.len()]; // [row][round]
    for round in 0..settings.rounds {
        for i in 0..rows.len() {
            let row = (round + i) % rows.len();
            let server = &mut started.servers[row];
            eprint!(
                "round {}/{}: {:<17} ",
                round + 1,
                settings.rounds,
                server.key
            );
            let load = server.measure(settings.secs)?;
            eprintln!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                load.rps, load.p50_ms, load.p99_ms, load.errors
            );
            loads[row].push(load);
        }
    }
    drop(started);

    let report = report::markdown(&settings, &rows, &loads, &date, &commit);
    println!("\n{report}");
    fs::write(out_dir.join("report.md"), &report)?;
    report::chart(&out_dir.join("latency.svg"), &settings, &rows, &loads)?;
    eprintln!("wrote report.md and latency.svg in {}", out_dir.display());
    // At the default level the logs hold a line per request, hundreds of megabytes; they stay
    // only when the run fails, to read why.
    let _ = fs::remove_dir_all(&logs);
    Ok(())
}

/// A running server of one row.
struct Server {
    key: &'static str,
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // `Child::kill` signals this child's PID, nothing else.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `row` and waits (at most 30 s) for its `listening ... addr=` line.
    fn start(row: &Row, logs: &Path) -> Result<Server> {
        let log = logs.join(format!("{}.log", row.key));
        let mut cmd = Command::new(&row.program);
        // Only the row decides what the server does, not the caller's shell.
        for (key, _) in std::env::vars() {
            if key.starts_with("FIB_") || key.starts_with("REDIS_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .args(&row.args)
            .envs(row.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", row.program.display()))?;
        let (key, addr) = (row.key, SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut server = Server {
            key,
            addr,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(listening_addr) {
                server.addr = addr;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(format!("{key} exited with {status} before listening:\n{text}").into());
            }
            if Instant::now() > deadline {
                return Err(format!("{key} did not log its address within 30 s:\n{text}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One `GET {PATH}` answered 200 with the reference's body, or why not.
    fn check(&self) -> Result<()> {
        let head = format!("GET {PATH} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
        let answer = client::send_raw(self.addr, head.as_bytes());
        let answer = common::current_thread().block_on(answer)?;
        if answer.status != 200 || answer.body.as_bytes() != BODY {
            let (status, body) = (answer.status, answer.body);
            let want = String::from_utf8_lossy(BODY);
            let key = self.key;
            return Err(
                format!("{key}: GET {PATH} gave {status} {body:?}, not 200 {want:?}").into(),
            );
        }
        Ok(())
    }

    /// One round of load; a server that died under it is an error showing the end of its log.
    fn measure(&mut self, secs: u64) -> Result<wrk::Load> {
        let load = wrk::run(self.addr, secs)?;
        if let Some(status) = self.child.try_wait()? {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            return Err(format!("{} died under load ({status}):\n{tail}", self.key).into());
        }
        Ok(load)
    }
}

/// The `addr=` of a server's `listening` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let rest = &line[line.find("addr=")? + 5..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The short commit of this tree, marked when it has uncommitted changes.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        let dir = env!("CARGO_MANIFEST_DIR");
        Command::new("git")
            .args(["-C", dir])
            .args(args)
            .output()
            .ok()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).filter(|out| out.status.success());
    let dirty = git(&["diff", "--quiet", "HEAD"]).is_some_and(|out| !out.status.success());
    match head.map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned()) {
        Some(head) if dirty => format!("{head} (with local changes)"),
        Some(head) => head,
        None => "unknown".to_owned(),
    }
}
