//! The load report: fibcache's hit path over HTTP against a bare hyper server, side by side,
//! in one run on loopback.
//!
//! ```text
//! cargo bench --bench http                          # reference, nop, memory (two log levels)
//! cargo bench --bench http --features redis,dynamic # ... plus redis and the memcache plugin
//! scripts/bench.sh                                  # the same, installing wrk/redis-server
//! ```
//! It starts a bare hyper server in this process (hyper 1 + hyper-util, HTTP/1, answering a
//! constant `{"result":55}`), and the release `fibcache` binary of this build (same features)
//! once per row: backend `nop`, `memory`, `memory` with `--log-level error`, `redis` against
//! a `redis-server` it starts (feature `redis`), and the example plugin `memcache` (feature
//! `dynamic`; built if missing). Every row serves `GET /fib/10`, whose answer is the
//! reference's body, with a TTL of an hour so that every measured fibcache request is a hit
//! (except `nop`, which computes fib(10) each time). Each server is checked, warmed, then
//! driven with the same bounded load: `wrk -t2 -c64 -d8s --latency` when `wrk` is installed,
//! otherwise a Rust load generator with the same connections, threads and duration (the
//! output says which). Every process it starts is killed by PID at the end, also on error.
//!
//! It prints a markdown table (requests/s, p50 and p99 latency, each row's ratio to the
//! reference, the server's CPU use and cache hit ratio), the issue's target ratios, and writes
//! them to `target/fibcache-bench/report.md` with a chart of p50/p99 per row in
//! `target/fibcache-bench/latency.svg`.
//!
//! # Reading the numbers
//! The load generator and the servers share this machine's cores (nothing is pinned), so the
//! absolute requests/s are those of a machine at full load, and the *ratios* between rows of
//! one run are what to compare. `server CPU` is the server process's CPU time over the run in
//! cores (1.00 = one core busy all the time): a server that does more per request shows it
//! there before it shows in requests/s. Other programs on the machine add noise, and only ever
//! make a run slower; rerun with `FIBCACHE_BENCH_ROUNDS=3` (or more) to run the rows in turn
//! several times: each row then shows its best round (the least disturbed), and each ratio is
//! the median of the ratios within a round, whose rows ran back to back. On a busy shared
//! machine, one round's ratios can be off by ±20%.
//!
//! # Settings (environment variables)
//! `FIBCACHE_BENCH_SECS` (8) seconds of load per row, `FIBCACHE_BENCH_WARMUP` (2) seconds of
//! warm-up, `FIBCACHE_BENCH_CONNECTIONS` (64), `FIBCACHE_BENCH_THREADS` (2) load threads,
//! `FIBCACHE_BENCH_ROUNDS` (1), `FIBCACHE_BENCH_LOADGEN` (`wrk` or `rust`; default `wrk` if
//! installed), `FIBCACHE_BENCH_BIN` (another `fibcache` binary to measure instead of this
//! build's, e.g. a candidate fix built elsewhere; the report names it). Arguments after `--`
//! select rows by name (`cargo bench --bench http -- memory`).
//! Run as a test (`cargo test --benches`), it only says how to run it: timing belongs in
//! benches.

mod common;

#[cfg(feature = "redis")]
#[allow(dead_code)]
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::convert::Infallible;
use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// The path every row serves: fib(10) = 55, the reference's constant body.
const PATH: &str = "/fib/10";
const BODY: &[u8] = br#"{"result":55}"#;
/// The name of the reference server's threads, by which its CPU time is found.
const REFERENCE_THREADS: &str = "hyper-reference";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|arg| arg == "--bench") {
        println!("benches/http.rs is a load report, not a test; run `cargo bench --bench http`");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    match run(&filters) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fibcache load report: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What one run does, from the environment.
struct Settings {
    secs: u64,
    warmup: u64,
    connections: usize,
    threads: usize,
    rounds: usize,
    loadgen: LoadGen,
    out_dir: PathBuf,
    /// The `fibcache` binary every fibcache row runs.
    bin: PathBuf,
}

#[derive(Clone)]
enum LoadGen {
    Wrk { version: String },
    Rust { why: String },
}

impl LoadGen {
    fn describe(&self, s: &Settings) -> String {
        match self {
            LoadGen::Wrk { version } => format!(
                "{version}: `wrk -t{} -c{} -d{}s --timeout 2s --latency`",
                s.threads, s.connections, s.secs
            ),
            LoadGen::Rust { why } => format!(
                "the Rust load generator in benches/http.rs ({why}): {} threads, {} keep-alive \
                 connections, {} s, one request in flight per connection, like wrk",
                s.threads, s.connections, s.secs
            ),
        }
    }
}

fn env_number(name: &str, default: u64, min: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(raw) => match raw.trim().parse::<u64>() {
            Ok(n) if n >= min => Ok(n),
            _ => {
                Err(format!("{name} must be a whole number of at least {min}, got {raw:?}").into())
            }
        },
    }
}

impl Settings {
    fn from_env() -> Result<Self> {
        let wrk = Command::new("wrk")
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()
            .map(|out| {
                // `wrk --version` prints its banner and exits 1.
                let text = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                text.lines()
                    .next()
                    .unwrap_or("wrk")
                    .split(" [")
                    .next()
                    .unwrap_or("wrk")
                    .trim()
                    .to_owned()
            });
        let loadgen = match (std::env::var("FIBCACHE_BENCH_LOADGEN").as_deref(), wrk) {
            (Ok("rust"), _) => LoadGen::Rust {
                why: "FIBCACHE_BENCH_LOADGEN=rust".to_owned(),
            },
            (Ok("wrk") | Err(_), Some(version)) => LoadGen::Wrk { version },
            (Ok("wrk"), None) => {
                return Err("FIBCACHE_BENCH_LOADGEN=wrk but `wrk` is not installed; \
                            scripts/bench.sh installs it"
                    .into())
            }
            (Err(_), None) => LoadGen::Rust {
                why: "`wrk` is not installed; scripts/bench.sh installs it".to_owned(),
            },
            (Ok(other), _) => {
                return Err(
                    format!("FIBCACHE_BENCH_LOADGEN must be wrk or rust, got {other:?}").into(),
                )
            }
        };
        let target_dir = common::profile_dir()
            .parent()
            .ok_or("the profile directory has no parent")?
            .to_path_buf();
        Ok(Settings {
            secs: env_number("FIBCACHE_BENCH_SECS", 8, 1)?,
            warmup: env_number("FIBCACHE_BENCH_WARMUP", 2, 0)?,
            connections: env_number("FIBCACHE_BENCH_CONNECTIONS", 64, 1)? as usize,
            threads: env_number("FIBCACHE_BENCH_THREADS", 2, 1)? as usize,
            rounds: env_number("FIBCACHE_BENCH_ROUNDS", 1, 1)? as usize,
            loadgen,
            out_dir: target_dir.join("fibcache-bench"),
            bin: match std::env::var_os("FIBCACHE_BENCH_BIN") {
                Some(bin) => PathBuf::from(bin),
                None => snapshot_binary(&target_dir.join("fibcache-bench"))?,
            },
        })
    }
}

/// A copy of this build's `fibcache` to run: the target directory is shared, and another
/// `cargo build --release` (with other features) may replace `target/release/fibcache` while
/// the report runs.
fn snapshot_binary(out_dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(out_dir)?;
    let copy = out_dir.join("fibcache");
    fs::copy(env!("CARGO_BIN_EXE_fibcache"), &copy)
        .map_err(|e| format!("cannot copy {}: {e}", env!("CARGO_BIN_EXE_fibcache")))?;
    Ok(copy)
}

/// One row of the report, before it runs.
struct Plan {
    /// Short name: row filter, chart label, and the key the target ratios look rows up by.
    key: &'static str,
    /// What the row is, for the table.
    title: String,
    kind: Kind,
}

enum Kind {
    Reference,
    Fibcache {
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
}

fn fibcache(key: &'static str, title: &str, args: &[&str], env: &[(&str, String)]) -> Plan {
    Plan {
        key,
        title: title.to_owned(),
        kind: Kind::Fibcache {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        },
    }
}

/// Everything this run started that must be stopped: dropped (on success, error or panic),
/// it kills each process by PID.
///
/// Fields drop in order: the servers before the Redis they may use.
#[derive(Default)]
struct Started {
    servers: Vec<Server>,
    #[cfg(feature = "redis")]
    redis: Option<redis_server::RedisServer>,
}

fn run(filters: &[String]) -> Result<()> {
    let settings = Settings::from_env()?;
    fs::create_dir_all(settings.out_dir.join("logs"))?;
    let load_at_start = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // Read before the run rather than after: others may commit to this tree meanwhile.
    let commit = git_commit();
    let mut notes: Vec<String> = Vec::new();
    let mut started = Started::default();

    let mut plans = vec![
        Plan {
            key: "reference",
            title: "bare hyper (reference)".to_owned(),
            kind: Kind::Reference,
        },
        fibcache(
            "nop",
            "fibcache `nop` (computes fib(10))",
            &["--cache", "nop"],
            &[],
        ),
    ];
    if cfg!(feature = "memory") {
        plans.push(fibcache(
            "memory",
            "fibcache `memory`",
            &["--cache", "memory"],
            &[],
        ));
        plans.push(fibcache(
            "memory-error-log",
            "fibcache `memory`, `--log-level error`",
            // The `listening` line is at `info`; keeping that one target at `info` keeps the
            // address readable and changes nothing per request (filters are decided per
            // call site, once).
            &[
                "--cache",
                "memory",
                "--log-level",
                "error,fibcache_server::cli=info",
            ],
            &[],
        ));
    } else {
        notes.push("rows `memory` skipped: built without feature `memory`".to_owned());
    }
    let wanted = |key: &str| filters.is_empty() || filters.iter().any(|f| key.contains(f.as_str()));

    #[cfg(feature = "redis")]
    if wanted("redis") {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            let server = redis_server::RedisServer::start();
            plans.push(fibcache(
                "redis",
                "fibcache `redis`",
                &["--cache", "redis"],
                &[("REDIS_URL", server.url())],
            ));
            started.redis = Some(server);
        } else {
            notes.push(
                "row `redis` skipped: `redis-server` is not installed (scripts/bench.sh \
                 installs it)"
                    .to_owned(),
            );
        }
    }
    #[cfg(not(feature = "redis"))]
    notes.push(
        "row `redis` skipped: built without feature `redis` (add `--features redis`)".to_owned(),
    );

    #[cfg(feature = "dynamic")]
    if wanted("memcache") {
        eprintln!("building the memcache plugin (if needed) ...");
        let library = common::example_plugin("memcache_plugin")?;
        plans.push(fibcache(
            "memcache",
            "fibcache plugin `memcache`",
            &[
                "--cache",
                "memcache",
                "--plugin",
                &library.display().to_string(),
            ],
            &[],
        ));
    }
    #[cfg(not(feature = "dynamic"))]
    notes.push(
        "row `memcache` skipped: built without feature `dynamic` (add `--features dynamic`)"
            .to_owned(),
    );

    plans.retain(|plan| wanted(plan.key));
    if plans.is_empty() {
        return Err(format!("no row matches {filters:?}").into());
    }

    eprintln!("load generator: {}", settings.loadgen.describe(&settings));
    for plan in &plans {
        let server = Server::start(plan, &settings)?;
        eprintln!("started {:<18} on {}", plan.key, server.addr);
        started.servers.push(server);
    }
    for server in &started.servers {
        server.check()?;
        if settings.warmup > 0 {
            eprintln!("warming {} for {} s", server.key, settings.warmup);
            drive(&settings, server.addr, settings.warmup)?;
        }
    }

    let mut results: Vec<Vec<Measured>> = (0..started.servers.len()).map(|_| Vec::new()).collect();
    for round in 1..=settings.rounds {
        for (i, server) in started.servers.iter().enumerate() {
            eprint!(
                "round {round}/{}: {:<18} {} s ... ",
                settings.rounds, server.key, settings.secs
            );
            let measured = server.measure(&settings)?;
            eprintln!(
                "{:.0} req/s, p50 {}, p99 {}",
                measured.load.rps,
                ms(measured.load.p50),
                ms(measured.load.p99)
            );
            results[i].push(measured);
        }
    }
    let rows: Vec<Row> = started
        .servers
        .iter()
        .zip(&plans)
        .zip(results)
        .map(|((server, plan), mut runs)| {
            // The best by requests/s (interference only slows a run down); latencies are that
            // run's, so a row is one real run.
            let rounds = runs.iter().map(|m| m.load.rps).collect();
            runs.sort_by(|a, b| a.load.rps.total_cmp(&b.load.rps));
            Row {
                rounds,
                key: plan.key,
                title: plan.title.clone(),
                measured: runs.pop().expect("at least one round"),
                pid: server.pid(),
            }
        })
        .collect();

    let context = Context {
        commit: &commit,
        load_at_start: load_at_start.trim(),
        notes: &notes,
    };
    let report = render(&settings, &rows, &context);
    println!("\n{report}");
    let report_path = settings.out_dir.join("report.md");
    fs::write(&report_path, &report)?;
    let svg_path = settings.out_dir.join("latency.svg");
    fs::write(&svg_path, svg(&rows, &settings))?;
    eprintln!("wrote {} and {}", report_path.display(), svg_path.display());

    drop(started);
    // The logs served their purpose (the address, and a log to read if something failed); at
    // the default level they hold one line per request, tens of megabytes.
    let _ = fs::remove_dir_all(settings.out_dir.join("logs"));
    Ok(())
}

/// A server under test.
struct Server {
    key: &'static str,
    addr: SocketAddr,
    process: Process,
}

enum Process {
    /// The in-process hyper server, on its own runtime; dropping the runtime stops it.
    Reference(Option<tokio::runtime::Runtime>),
    Fibcache {
        child: Child,
        log: PathBuf,
    },
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.process {
            Process::Reference(runtime) => {
                if let Some(runtime) = runtime.take() {
                    runtime.shutdown_background();
                }
            }
            Process::Fibcache { child, .. } => {
                // `Child::kill` signals this child's PID, nothing else.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Server {
    fn start(plan: &Plan, settings: &Settings) -> Result<Server> {
        match &plan.kind {
            Kind::Reference => {
                let (runtime, addr) = reference_server()?;
                Ok(Server {
                    key: plan.key,
                    addr,
                    process: Process::Reference(Some(runtime)),
                })
            }
            Kind::Fibcache { args, env } => {
                let log = settings
                    .out_dir
                    .join("logs")
                    .join(format!("{}.log", plan.key));
                let mut cmd = Command::new(&settings.bin);
                // Only this row's settings decide what the server does, not the caller's shell.
                for (key, _) in std::env::vars() {
                    if key.starts_with("FIB_") || key.starts_with("REDIS_") || key == "RUST_LOG" {
                        cmd.env_remove(key);
                    }
                }
                cmd.args(["--host", "127.0.0.1", "--port", "0", "--cache-ttl", "1h"])
                    .args(args)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    // A file, as under a service manager: the log costs what writing it costs.
                    .stderr(fs::File::create(&log)?);
                let child = cmd
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", settings.bin.display()))?;
                let mut server = Server {
                    key: plan.key,
                    addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                    process: Process::Fibcache { child, log },
                };
                server.addr = server.wait_listening()?;
                Ok(server)
            }
        }
    }

    /// Reads the bound address from the server's `listening addr=...` log line.
    fn wait_listening(&mut self) -> Result<SocketAddr> {
        let Process::Fibcache { child, log } = &mut self.process else {
            return Ok(self.addr);
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read_to_string(&*log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(listening_addr) {
                return Ok(addr);
            }
            if let Some(status) = child.try_wait()? {
                return Err(format!(
                    "fibcache ({}) exited with {status} before listening:\n{text}",
                    self.key
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "fibcache ({}) did not log its address within 30 s:\n{text}",
                    self.key
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Reference(_) => None,
            Process::Fibcache { child, .. } => Some(child.id()),
        }
    }

    /// One request answered 200 with the expected body, or why not.
    fn check(&self) -> Result<()> {
        let (status, body) = http_get(self.addr, PATH)?;
        if status != 200 || body.as_bytes() != BODY {
            return Err(format!(
                "{} answered GET {PATH} with {status} {body:?}; expected 200 {:?}",
                self.key,
                String::from_utf8_lossy(BODY)
            )
            .into());
        }
        Ok(())
    }

    /// CPU time (user + system) the server has used so far, in clock ticks.
    fn cpu_ticks(&self) -> Option<u64> {
        match &self.process {
            Process::Fibcache { child, .. } => {
                proc_stat_ticks(&format!("/proc/{}/stat", child.id())).map(|(_, t)| t)
            }
            // The reference shares this process: count only its own runtime's threads.
            Process::Reference(_) => {
                let mut total = 0;
                for task in fs::read_dir("/proc/self/task").ok()? {
                    let path = task.ok()?.path().join("stat");
                    if let Some((comm, ticks)) = proc_stat_ticks(&path.to_string_lossy()) {
                        if comm == REFERENCE_THREADS {
                            total += ticks;
                        }
                    }
                }
                Some(total)
            }
        }
    }

    fn cache_counters(&self) -> Option<(f64, f64)> {
        if let Process::Reference(_) = self.process {
            return None;
        }
        let (status, body) = http_get(self.addr, "/metrics").ok()?;
        if status != 200 {
            return None;
        }
        let value = |name: &str| {
            body.lines().find_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
                rest.split_whitespace().next()?.parse::<f64>().ok()
            })
        };
        Some((
            value("fibcache_cache_hits_total")?,
            value("fibcache_cache_misses_total")?,
        ))
    }

    fn measure(&self, settings: &Settings) -> Result<Measured> {
        let ticks_before = self.cpu_ticks();
        let cache_before = self.cache_counters();
        let started = Instant::now();
        let load = drive(settings, self.addr, settings.secs)?;
        let wall = started.elapsed().as_secs_f64();
        let cpu = match (ticks_before, self.cpu_ticks()) {
            (Some(a), Some(b)) => Some((b.saturating_sub(a)) as f64 / clock_ticks() / wall),
            _ => None,
        };
        let hits = match (cache_before, self.cache_counters()) {
            (Some((h0, m0)), Some((h1, m1))) if (h1 - h0) + (m1 - m0) > 0.0 => {
                Some((h1 - h0) / ((h1 - h0) + (m1 - m0)))
            }
            _ => None,
        };
        if let Process::Fibcache { log, .. } = &self.process {
            // A server that died under load would show as socket errors; say why instead.
            if let Some(pid) = self.pid() {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let text = fs::read_to_string(log).unwrap_or_default();
                    return Err(format!("fibcache ({}) died under load:\n{text}", self.key).into());
                }
            }
        }
        Ok(Measured {
            load,
            server_cpu: cpu,
            hit_ratio: hits,
        })
    }
}

/// The `addr=` of the server's "listening" log line (text format).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let rest = &line[line.find("addr=")? + 5..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `(comm, utime + stime)` from a `/proc/.../stat` file.
fn proc_stat_ticks(path: &str) -> Option<(String, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    // After the comm: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A blocking `GET` on a fresh connection, answered within 10 s.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no response head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status code")?;
    Ok((status, body.to_owned()))
}

/// The bare reference: hyper's HTTP/1 connection on tokio, one constant JSON answer, on its
/// own runtime with as many workers as fibcache has (one per core).
fn reference_server() -> Result<(tokio::runtime::Runtime, SocketAddr)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(REFERENCE_THREADS)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
                    resp.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((runtime, addr))
}

/// What the load generator saw.
#[derive(Debug, Clone)]
struct Load {
    rps: f64,
    p50: Duration,
    p99: Duration,
    requests: u64,
    /// Answers other than 2xx/3xx.
    non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    socket_errors: u64,
}

struct Measured {
    load: Load,
    server_cpu: Option<f64>,
    hit_ratio: Option<f64>,
}

struct Row {
    /// Requests/s of every round, in order.
    rounds: Vec<f64>,
    key: &'static str,
    title: String,
    measured: Measured,
    pid: Option<u32>,
}

/// Drives `addr` with the configured load for `secs` seconds.
fn drive(settings: &Settings, addr: SocketAddr, secs: u64) -> Result<Load> {
    match &settings.loadgen {
        LoadGen::Wrk { .. } => wrk(settings, addr, secs),
        LoadGen::Rust { .. } => rust_load(settings, addr, secs),
    }
}

fn wrk(settings: &Settings, addr: SocketAddr, secs: u64) -> Result<Load> {
    let mut child = Command::new("wrk")
        .arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{secs}s"))
        .args(["--timeout", "2s", "--latency"])
        .arg(format!("http://{addr}{PATH}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    // wrk stops by itself after `secs`; past a generous margin it is killed (by its PID).
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
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}").into())
}

/// Reads requests/s, the 50th and 99th percentiles, and the error counts of `wrk --latency`.
fn parse_wrk(text: &str) -> Option<Load> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = parse_wrk_duration(rest.trim());
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = parse_wrk_duration(rest.trim());
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next()?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest.trim().parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            socket_errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    Some(Load {
        rps: rps?,
        p50: p50?,
        p99: p99?,
        requests: requests?,
        non_2xx,
        socket_errors,
    })
}

/// `620.00us`, `1.20ms`, `2.00s`, `1.00m` as wrk prints them.
fn parse_wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().ok()?;
    let secs = match unit.trim() {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// The fallback load generator: `threads` runtime workers, `connections` keep-alive
/// connections each with one request in flight (as wrk does), for `secs` seconds.
fn rust_load(settings: &Settings, addr: SocketAddr, secs: u64) -> Result<Load> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .thread_name("fibcache-load")
        .enable_all()
        .build()?;
    let request: std::sync::Arc<[u8]> = format!("GET {PATH} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
        .into_bytes()
        .into();
    let connections = settings.connections;
    let load = runtime.block_on(async move {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(secs);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections {
            tasks.spawn(connection(addr, request.clone(), deadline));
        }
        let mut total = ConnStats::default();
        while let Some(stats) = tasks.join_next().await {
            let stats = stats.map_err(|e| format!("load task failed: {e}"))?;
            total.latencies_us.extend(stats.latencies_us);
            total.non_2xx += stats.non_2xx;
            total.errors += stats.errors;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let mut latencies = total.latencies_us;
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1));
            Duration::from_micros(latencies.get(i - 1).copied().unwrap_or(0).into())
        };
        Ok::<_, Box<dyn Error>>(Load {
            rps: latencies.len() as f64 / elapsed,
            p50: at(0.50),
            p99: at(0.99),
            requests: latencies.len() as u64,
            non_2xx: total.non_2xx,
            socket_errors: total.errors,
        })
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    load
}

#[derive(Default)]
struct ConnStats {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    errors: u64,
}

async fn connection(
    addr: SocketAddr,
    request: std::sync::Arc<[u8]>,
    deadline: Instant,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut stream: Option<tokio::net::TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    let limit = Duration::from_secs(2);
    while Instant::now() < deadline {
        let conn = match stream.as_mut() {
            Some(conn) => conn,
            None => match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(conn)) => {
                    let _ = conn.set_nodelay(true);
                    stream.insert(conn)
                }
                _ => {
                    stats.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match tokio::time::timeout(limit, exchange(conn, &request, &mut buf)).await {
            Ok(Ok(status)) => {
                let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                stats.latencies_us.push(us);
                if !(200..400).contains(&status) {
                    stats.non_2xx += 1;
                }
            }
            _ => {
                stats.errors += 1;
                stream = None;
            }
        }
    }
    stats
}

/// Sends one request and reads its whole response (`Content-Length` framed); the status.
async fn exchange(
    conn: &mut tokio::net::TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    conn.write_all(request).await?;
    buf.clear();
    loop {
        if conn.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let length = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .ok_or_else(|| bad("no content-length"))?;
        if buf.len() >= head_end + 4 + length {
            return Ok(status);
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The requests/s of one row over another's.
struct Ratio {
    /// The median of `rounds`.
    median: f64,
    /// The ratio within each round, in order.
    rounds: Vec<f64>,
}

/// `a`'s requests/s over `b`'s, round by round; `None` unless both rows ran.
fn paired_ratio(rows: &[Row], a: &str, b: &str) -> Option<Ratio> {
    let rounds_of = |key: &str| rows.iter().find(|r| r.key == key).map(|r| &r.rounds);
    let (a, b) = (rounds_of(a)?, rounds_of(b)?);
    let rounds: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, b)| **b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    let mut sorted = rounds.clone();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = match sorted.len() {
        0 => return None,
        n if n % 2 == 1 => sorted[mid],
        _ => (sorted[mid - 1] + sorted[mid]) / 2.0,
    };
    Some(Ratio { median, rounds })
}

/// What the report says about the circumstances of the run.
struct Context<'a> {
    commit: &'a str,
    load_at_start: &'a str,
    notes: &'a [String],
}

/// Renders the report in markdown.
fn render(settings: &Settings, rows: &[Row], context: &Context<'_>) -> String {
    let find = |key: &str| rows.iter().find(|r| r.key == key).map(|r| &r.measured);
    let mut out = String::new();
    let _ = writeln!(out, "## fibcache load report\n");
    let _ = writeln!(
        out,
        "- run: {} UTC, commit {}, features: {}",
        utc_now(),
        context.commit,
        common::features().join(", ")
    );
    if std::env::var_os("FIBCACHE_BENCH_BIN").is_some() {
        let _ = writeln!(
            out,
            "- fibcache binary: `{}` (FIBCACHE_BENCH_BIN), not this build's",
            settings.bin.display()
        );
    }
    let _ = writeln!(
        out,
        "- load: {}, `GET {PATH}`, after {} s of warm-up per row; {}",
        settings.loadgen.describe(settings),
        settings.warmup,
        if settings.rounds == 1 {
            "1 round".to_owned()
        } else {
            format!(
                "each row's best of {} rounds run in turn (every round's requests/s in the \
                 last column)",
                settings.rounds
            )
        }
    );
    let _ = writeln!(
        out,
        "- machine: {}; load average at start: {}. The load generator and the \
         servers share these cores (nothing is pinned): compare the ratios of one run, not \
         absolute numbers across machines",
        machine(),
        context.load_at_start
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| row | requests/s | × reference | p50 | p99 | requests | non-2xx / socket errors | server CPU | cache hits |{}",
        if settings.rounds > 1 { " every round (req/s) |" } else { "" }
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|{}",
        if settings.rounds > 1 { "---|" } else { "" }
    );
    for row in rows {
        let m = &row.measured;
        let every = if settings.rounds > 1 {
            let all: Vec<String> = row.rounds.iter().map(|r| format!("{r:.0}")).collect();
            format!(" {} |", all.join(", "))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} / {} | {} | {} |{every}",
            row.title,
            m.load.rps,
            paired_ratio(rows, row.key, "reference")
                .map_or_else(|| "—".to_owned(), |r| format!("{:.2}", r.median)),
            ms(m.load.p50),
            ms(m.load.p99),
            m.load.requests,
            m.load.non_2xx,
            m.load.socket_errors,
            m.server_cpu
                .map_or_else(|| "—".to_owned(), |c| format!("{c:.2} cores")),
            m.hit_ratio
                .map_or_else(|| "—".to_owned(), |h| format!("{:.1}%", h * 100.0)),
        );
    }
    if settings.rounds > 1 {
        let _ = writeln!(
            out,
            "\n`× reference` and the ratios below are medians of the ratios *within* each round \
             (the rows of a round run back to back), so a busy moment of the machine does not \
             set one row against another row's quiet one; requests/s, p50 and p99 are each \
             row's best round."
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "### Targets (from this run)\n");
    let _ = writeln!(out, "| target | measured | goal | met |");
    let _ = writeln!(out, "|---|---:|---:|:---:|");
    let mut target = |name: &str, ratio: Option<Ratio>, goal: f64| {
        let (shown, ok) = match ratio {
            Some(r) => {
                let detail = if r.rounds.len() > 1 {
                    let all: Vec<String> = r.rounds.iter().map(|v| format!("{v:.2}")).collect();
                    format!(" (rounds: {})", all.join(", "))
                } else {
                    String::new()
                };
                (
                    format!("{:.2}{detail}", r.median),
                    if r.median >= goal { "yes" } else { "**no**" },
                )
            }
            None => ("not measured".to_owned(), "—"),
        };
        let _ = writeln!(out, "| {name} | {shown} | ≥ {goal:.2} | {ok} |");
    };
    target(
        "memory hits / bare hyper",
        paired_ratio(rows, "memory", "reference"),
        0.90,
    );
    target(
        "memcache plugin / memory",
        paired_ratio(rows, "memcache", "memory"),
        0.95,
    );
    target(
        "redis / memory",
        paired_ratio(rows, "redis", "memory"),
        0.50,
    );
    target(
        "default log level / `--log-level error`",
        paired_ratio(rows, "memory", "memory-error-log"),
        0.80,
    );
    // The p99 target is absolute; the reference's p99 shows what this machine allows.
    let p99 = |key: &str| find(key).map(|m| m.load.p99.as_secs_f64() * 1e3);
    let (shown, ok) = match p99("memory") {
        Some(v) => (
            format!(
                "{v:.2} ms{}",
                p99("reference").map_or_else(String::new, |r| format!(" (bare hyper: {r:.2} ms)"))
            ),
            if v < P99_GOAL_MS { "yes" } else { "**no**" },
        ),
        None => ("not measured".to_owned(), "—"),
    };
    let _ = writeln!(
        out,
        "| memory hits p99 | {shown} | < {P99_GOAL_MS} ms | {ok} |"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Rows other than `--log-level error` log at the default level (`info`: one line per \
         request, to a file). `server CPU` is the server process's CPU time over the run \
         (PIDs: {}); `cache hits` is hits / (hits + misses) from its `/metrics` over the run.",
        rows.iter()
            .filter_map(|r| r.pid.map(|p| format!("{} {p}", r.key)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !context.notes.is_empty() {
        let _ = writeln!(out);
    }
    for note in context.notes {
        let _ = writeln!(out, "- {note}");
    }
    out
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs ({model})")
}

fn git_commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let head = Command::new("git")
        .args(["-C", dir, "rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let dirty = Command::new("git")
        .args(["-C", dir, "diff", "--quiet", "HEAD"])
        .status()
        .is_ok_and(|s| !s.success());
    match head {
        Some(head) if dirty => format!("{head} (with local changes)"),
        Some(head) => head,
        None => "unknown".to_owned(),
    }
}

/// `YYYY-MM-DD HH:MM` in UTC, without a date crate (days to civil date, after H. Hinnant).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The issue's p99 target for memory hits, drawn on the chart.
const P99_GOAL_MS: f64 = 2.0;

/// Grouped bars of p50 and p99 latency per row, with requests/s under each group.
fn svg(rows: &[Row], settings: &Settings) -> String {
    const GROUP: f64 = 130.0;
    const BAR: f64 = 40.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 60.0;
    const HEIGHT: f64 = 300.0;
    // Wide enough for the title and footer even with a single row.
    let width = (LEFT + GROUP * rows.len() as f64 + 30.0).max(760.0);
    let max_ms = rows
        .iter()
        .map(|r| r.measured.load.p99.as_secs_f64() * 1e3)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let step = nice_step(max_ms / 5.0);
    let top_ms = (max_ms / step).ceil() * step;
    let y = |v: f64| TOP + HEIGHT - v / top_ms * HEIGHT;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{h:.0}" font-family="sans-serif" font-size="12">"#,
        h = TOP + HEIGHT + 75.0
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">fibcache: latency per row under {} connections (GET {PATH})</text>"#,
        settings.connections
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="32" width="12" height="12" fill="#4e79a7"/><text x="{}" y="42">p50</text><rect x="{}" y="32" width="12" height="12" fill="#e15759"/><text x="{}" y="42">p99</text>"##,
        LEFT + 16.0,
        LEFT + 60.0,
        LEFT + 76.0
    );
    let mut tick = 0.0;
    while tick <= top_ms + step / 2.0 {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{x2:.0}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{tick:.2} ms</text>"##,
            x2 = width - 20.0,
            yy = y(tick),
            tx = LEFT - 6.0,
            ty = y(tick) + 4.0
        );
        tick += step;
    }
    for (i, row) in rows.iter().enumerate() {
        let x0 = LEFT + GROUP * i as f64 + (GROUP - 2.0 * BAR) / 2.0;
        for (j, (value, color)) in [
            (row.measured.load.p50, "#4e79a7"),
            (row.measured.load.p99, "#e15759"),
        ]
        .into_iter()
        .enumerate()
        {
            let v = value.as_secs_f64() * 1e3;
            let x = x0 + BAR * j as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{yy:.1}" width="{w:.1}" height="{hh:.1}" fill="{color}"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="middle" font-size="10">{v:.2}</text>"#,
                yy = y(v),
                w = BAR - 4.0,
                hh = (TOP + HEIGHT - y(v)).max(0.5),
                tx = x + (BAR - 4.0) / 2.0,
                ty = y(v) - 3.0
            );
        }
        let cx = LEFT + GROUP * i as f64 + GROUP / 2.0;
        let _ = writeln!(
            out,
            r##"<text x="{cx:.1}" y="{a:.1}" text-anchor="middle">{}</text><text x="{cx:.1}" y="{b:.1}" text-anchor="middle" fill="#555">{:.0} req/s</text>"##,
            row.key,
            row.measured.load.rps,
            a = TOP + HEIGHT + 20.0,
            b = TOP + HEIGHT + 38.0
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" stroke="#333"/><line x1="{LEFT}" x2="{x2:.0}" y1="{b}" y2="{b}" stroke="#333"/>"##,
        b = TOP + HEIGHT,
        x2 = width - 20.0
    );
    // Drawn over the bars, so that the target stays visible where a bar crosses it.
    if P99_GOAL_MS <= top_ms {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{x2:.0}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e15759" stroke-dasharray="6 4"/><text x="{tx:.0}" y="{ty:.1}" text-anchor="end" fill="#e15759" font-size="10" stroke="white" stroke-width="3" paint-order="stroke">p99 target</text>"##,
            x2 = width - 20.0,
            yy = y(P99_GOAL_MS),
            tx = width - 22.0,
            ty = y(P99_GOAL_MS) - 3.0
        );
    }
    let loadgen = match &settings.loadgen {
        LoadGen::Wrk { .. } => "wrk",
        LoadGen::Rust { .. } => "Rust load generator",
    };
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{y:.0}" fill="#555">{loadgen}: {} threads, {} connections, {} s per row; load generator and servers share {} CPUs</text>"##,
        settings.threads,
        settings.connections,
        settings.secs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        y = TOP + HEIGHT + 60.0
    );
    out.push_str("</svg>\n");
    out
}

/// The 1, 2 or 5 times a power of ten closest above `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    let fraction = raw / power;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}
