//! What fibcache's tests and benches share: the real `fibcache` binary on a free port, a small
//! HTTP/1.1 client and HTTP/2 clients over real sockets, a `redis-server` (or a Redis Cluster)
//! of the caller's own, and [`eventually`], the one way a test waits for an event.
//!
//! A crate of the workspace, not published: the root package's integration tests reach it
//! through their `tests/support` module, its benches directly.

pub mod http;
pub mod http2;
pub mod load;
pub mod redis_cluster;
pub mod redis_server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use http::{get, request, Response};

/// The `fibcache` binary of the running test's or bench's own build: Cargo builds a package's
/// binaries before its integration tests and benches, into the directory above theirs
/// (`<target>/<profile>/fibcache` for `<target>/<profile>/deps/<test>-<hash>`).
///
/// # Panics
/// When there is no such file (the caller is not a test or bench of the `fibcache` package).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>/deps")
        .join(format!("fibcache{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "no fibcache binary at {}", path.display());
    path
}

/// A `fibcache` process started by a test, killed (by PID) when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread that reads the server's stderr into `log`; joined once the server exited,
    /// so that `log()` then holds every line.
    reader: Option<std::thread::JoinHandle<()>>,
}

/// How to start a server: extra arguments and environment variables.
#[derive(Default, Clone)]
pub struct Spawn {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The program to run instead of `fibcache` (an example built on the server).
    pub program: Option<std::path::PathBuf>,
}

impl Spawn {
    pub fn new() -> Self {
        Spawn::default()
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `program` (e.g. an example binary) instead of `fibcache`.
    pub fn program(mut self, program: impl Into<std::path::PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    fn command(&self) -> Command {
        let mut cmd = match &self.program {
            Some(program) => Command::new(program),
            None => Command::new(binary()),
        };
        // A clean slate: nothing from the developer's shell decides what the test sees.
        for (key, _) in std::env::vars() {
            if key.starts_with("FIB_") || key.starts_with("REDIS_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.args(["--host", "127.0.0.1", "--port", "0"]);
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the server and waits (at most 30 s) until it logs the address it bound.
    ///
    /// # Panics
    /// When the process exits or does not log its address in time; the panic shows its log.
    pub fn start(&self) -> Server {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fibcache");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                    }
                    log.lock().unwrap().push(line);
                }
            })
        };
        // The reader drops `tx` when stderr closes, i.e. when the process has exited.
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Server {
                child,
                addr,
                log,
                reader: Some(reader),
            },
            Err(RecvTimeoutError::Disconnected) => {
                let _ = reader.join();
                let status = child.wait().expect("wait for fibcache");
                panic!(
                    "fibcache exited with {status} before listening; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "fibcache did not log its address in 30 s; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// Runs the binary to completion (at most 60 s) and returns its exit status and output.
    pub fn run_to_exit(&self) -> Exit {
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fibcache");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("fibcache did not exit within 60 s");
        };
        let out = out.expect("the output of fibcache");
        Exit {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What a process that ran to completion left behind.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Exit {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// The `addr=` of a "listening" log line, in text or JSON format.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let rest = &line[line.find("addr")? + 4..];
    let rest = rest.trim_start_matches(['=', '"', ':', ' ']);
    let end = rest
        .find(|c: char| c == '"' || c == ',' || c.is_whitespace() || c == '}')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Server {
    /// Starts the default server (in-memory backend) with `args`.
    pub fn start(args: &[&str]) -> Server {
        Spawn::new().args(args.iter().copied()).start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends a signal to this server (by PID) and waits at most `limit` for it to exit; once it
    /// has, [`Server::log`] holds everything it wrote.
    pub fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> Option<ExitStatus> {
        self.signal(signal);
        self.wait(limit)
    }

    /// Sends a signal to this server, by PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits at most `limit` for this server to exit; once it has, [`Server::log`] holds
    /// everything it wrote.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipe is at its end: the reader finishes with the last lines.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a Prometheus sample (`name` with its labels exactly as exposed).
    ///
    /// # Panics
    /// When the exposition has no such sample: a renamed series must fail the test that reads
    /// it, not read as 0.
    pub async fn metric(&self, sample: &str) -> f64 {
        let resp = get(self.addr, "/metrics").await;
        assert_eq!(resp.status, 200, "GET /metrics: {}", resp.body);
        metric_value(&resp.body, sample)
            .unwrap_or_else(|| panic!("no sample {sample} in /metrics:\n{}", resp.body))
    }
}

/// Reads one sample's value out of a Prometheus text exposition.
pub fn metric_value(exposition: &str, sample: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(sample)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON body of a response, parsed.
pub fn json(resp: &Response) -> serde_json::Value {
    serde_json::from_str(&resp.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", resp.body))
}

/// How often [`eventually`] and [`eventually_async`] look again.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Waits for an event: calls `check` until it returns `Some`, every 10 ms, for at most
/// `limit`, and returns what it found; past `limit` the test fails naming `what`. The one
/// polling loop of the tests: wait on an outcome (a metric, a log line, a closed socket),
/// never sleep in its place.
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL_EVERY);
    }
}

/// [`eventually`] for checks that are futures (they run on the test's runtime).
pub async fn eventually_async<T, F>(what: &str, limit: Duration, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
