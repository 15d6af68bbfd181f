//! A `redis-server` process of the test's own, on a free loopback port.
//!
//! A missing `redis-server` is a failure saying how to install it, never a silent skip: the
//! README's test command installs it, so CI always runs the Redis tests for real.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `redis-server`, killed (by PID) when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
    /// Further command-line settings (a cluster node's), kept for restarts.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> RedisServer {
        Self::start_with(None, Vec::new())
    }

    /// Starts a server that requires `password`.
    pub fn with_password(password: &str) -> RedisServer {
        Self::start_with(Some(password.to_owned()), Vec::new())
    }

    /// Starts a server with `password` (if any) and the further settings `args`.
    pub fn start_with(password: Option<String>, args: Vec<String>) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            password,
            args,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>` with the password, if any.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (by PID) and waits until the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pauses (`SIGSTOP`) or resumes (`SIGCONT`) the server, by PID: a paused Redis accepts
    /// connections and answers nothing, the hardest outage for a client to notice.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Starts the server again on the same port and settings (empty: no data is persisted).
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.args(&self.args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); install it (Debian: `apt-get install \
                     redis-server`) or run the README's test command, which does"
                )
            });
        self.child = Some(child);
        let what = format!("redis-server to answer PING on port {}", self.port);
        crate::eventually(&what, Duration::from_secs(10), || {
            let reply = self.try_command(&["PING"]).ok()?;
            reply.starts_with("+PONG").then_some(())
        });
    }

    /// Sends one command (authenticating first when needed) and returns the raw reply line(s).
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let addr: SocketAddr = self.addr().parse().unwrap();
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        if let Some(p) = &self.password {
            stream.write_all(&resp(&["AUTH", p]))?;
            let mut line = String::new();
            reader.read_line(&mut line)?;
        }
        stream.write_all(&resp(args))?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if let Some(len) = line.strip_prefix('$') {
            let len: i64 = len.trim().parse().unwrap_or(-1);
            if len >= 0 {
                let mut buf = vec![0; len as usize + 2];
                reader.read_exact(&mut buf)?;
                return Ok(String::from_utf8_lossy(&buf[..len as usize]).into_owned());
            }
            return Ok("(nil)".to_owned());
        }
        Ok(line.trim_end().to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
