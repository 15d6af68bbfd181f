//! The binary's tracing subscriber: level and filters, text or JSON, and a batching writer.
//!
//! At `debug` the server logs one line per request. Writing each line to stderr as it happens
//! costs a system call per request, and handing each line to a writer thread (as
//! `tracing-appender` does) costs a thread wake-up per request; on a busy two-core machine
//! either takes a large share of hit throughput. Here a request only appends its formatted line
//! to a shared buffer (a short, uncontended lock); a background thread writes the buffer out
//! every [`FLUSH_EVERY`], in one `write(2)`. Lines therefore reach stderr up to that much later.
//! If stderr stalls and the buffer reaches [`MAX_BUFFER`], further lines are dropped (and
//! counted in a line of their own) rather than slowing requests down or growing memory.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tracing_subscriber::fmt::MakeWriter;

mod one_line;
mod time;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// How often the background thread writes what has been logged.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Most bytes held for writing; past this, lines are dropped until the next write.
pub const MAX_BUFFER: usize = 4 << 20;

struct Shared {
    buffer: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while appending leaves at worst a partial line; keep logging.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes out everything buffered so far.
    fn flush_to(&self, out: &mut impl Write, spare: &mut Vec<u8>) {
        spare.clear();
        std::mem::swap(&mut *self.lock(), spare);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                spare,
                "fibcache: {dropped} log lines dropped (stderr too slow)"
            );
        }
        if !spare.is_empty() {
            let _ = out.write_all(spare);
            let _ = out.flush();
        }
    }
}

/// Where a formatted event goes: appended to the shared buffer.
pub struct Appender<'a>(&'a Shared);

impl Write for Appender<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.0.lock();
        if buffer.len() + line.len() > MAX_BUFFER {
            drop(buffer);
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buffer.extend_from_slice(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `MakeWriter` handed to the subscriber.
#[derive(Clone)]
struct Batching(Arc<Shared>);

impl<'a> MakeWriter<'a> for Batching {
    type Writer = Appender<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Appender(&self.0)
    }
}

/// Keeps the writer thread running; dropping it writes out what is left and stops it.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn writer_thread(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("fibcache-log".to_owned())
        .spawn(move || {
            let mut spare = Vec::with_capacity(64 * 1024);
            loop {
                let stop = {
                    let stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
                    let (stop, _) = shared
                        .wake
                        .wait_timeout_while(stop, FLUSH_EVERY, |stop| !*stop)
                        .unwrap_or_else(|e| e.into_inner());
                    *stop
                };
                // Locked per write, not for the thread's life: a panic message or the CLI's
                // own `eprintln!` must never wait on the log writer.
                shared.flush_to(&mut std::io::stderr().lock(), &mut spare);
                if stop {
                    return;
                }
            }
        })
}

/// Installs the global subscriber. Keep the guard alive until exit: dropping it flushes.
///
/// `level` is a level or an `EnvFilter` directive list; `RUST_LOG`, when set, adds its
/// directives after it (so it can refine or override per target).
///
/// # Errors
/// When `level` or `RUST_LOG` is not a valid filter, or the writer thread cannot start.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<LogGuard> {
    check_directives(level, "--log-level")?;
    let mut directives = level.to_owned();
    if let Ok(extra) = std::env::var("RUST_LOG") {
        if !extra.trim().is_empty() {
            check_directives(&extra, "RUST_LOG")?;
            directives.push(',');
            directives.push_str(&extra);
        }
    }
    let filter = EnvFilter::builder()
        .parse(&directives)
        .with_context(|| format!("invalid log filter {directives:?} (--log-level / RUST_LOG)"))?;
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Vec::with_capacity(64 * 1024)),
        dropped: AtomicU64::new(0),
        stop: Mutex::new(false),
        wake: Condvar::new(),
    });
    let thread = writer_thread(shared.clone()).context("cannot start the log writer thread")?;
    let guard = LogGuard {
        shared: shared.clone(),
        thread: Some(thread),
    };
    let builder = tracing_subscriber::fmt()
        .with_timer(time::CachedTime)
        .with_env_filter(filter)
        .with_writer(Batching(shared));
    match format {
        LogFormat::Text => builder
            .with_ansi(false)
            .fmt_fields(one_line::OneLineFields::new())
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(guard)
}

/// The levels a directive may name.
const LEVELS: &str = "trace, debug, info, warn, error, off";

/// Refuses what `EnvFilter` would take silently but cannot be meant: a bare word that is not a
/// level (`warning`, `inf`: the filter reads it as a target name, enables that target only,
/// and every line is lost) and a `target=level` whose level is not one.
///
/// # Errors
/// Naming the directive, where it came from (`origin`), and the valid levels.
fn check_directives(directives: &str, origin: &str) -> anyhow::Result<()> {
    for directive in directives.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let (what, level) = match directive.rsplit_once('=') {
            Some((target, level)) if !target.contains('{') || target.ends_with(']') => {
                (format!("level `{level}` in `{directive}`"), level)
            }
            // `target[span{field=value}]` with no level of its own: EnvFilter's syntax.
            Some(_) => continue,
            None if directive.ends_with(']') => continue,
            None => (format!("level `{directive}`"), directive),
        };
        let level = level.trim();
        if level.is_empty()
            || level
                .parse::<tracing::level_filters::LevelFilter>()
                .is_err()
        {
            anyhow::bail!(
                "invalid log {what} ({origin}); valid levels: {LEVELS} (or target=level)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            buffer: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    #[test]
    fn levels_and_filters_are_checked() {
        for good in [
            "info",
            "WARN",
            "debug,hyper=info",
            "info,fibcache_server::app=debug",
            "off",
            "info,h2[conn]=trace",
            "my_crate[span{user=ada}]",
            " info , tokio=warn ",
            "",
        ] {
            assert!(check_directives(good, "test").is_ok(), "{good:?}");
        }
        for bad in [
            "warning",
            "degub",
            "inf",
            "info,hyper=loud",
            "tokio=",
            "x=y=z",
        ] {
            let err = check_directives(bad, "--log-level")
                .expect_err(bad)
                .to_string();
            assert!(err.contains("--log-level"), "{err}");
            assert!(
                err.contains("trace, debug, info, warn, error, off"),
                "{err}"
            );
        }
    }

    #[test]
    fn lines_are_written_in_order_in_one_batch() {
        let shared = shared();
        Appender(&shared).write_all(b"one\n").unwrap();
        Appender(&shared).write_all(b"two\n").unwrap();
        let mut out = Vec::new();
        shared.flush_to(&mut out, &mut Vec::new());
        assert_eq!(out, b"one\ntwo\n");
        // Nothing is written twice.
        let mut again = Vec::new();
        shared.flush_to(&mut again, &mut Vec::new());
        assert!(again.is_empty());
    }

    #[test]
    fn a_full_buffer_drops_lines_and_says_how_many() {
        let shared = shared();
        let line = vec![b'x'; MAX_BUFFER / 2 + 1];
        Appender(&shared).write_all(&line).unwrap();
        Appender(&shared).write_all(&line).unwrap();
        Appender(&shared).write_all(&line).unwrap();
        let mut out = Vec::new();
        shared.flush_to(&mut out, &mut Vec::new());
        assert_eq!(
            out.len(),
            line.len() + "fibcache: 2 log lines dropped (stderr too slow)\n".len()
        );
        assert!(out.ends_with(b"fibcache: 2 log lines dropped (stderr too slow)\n"));
    }
}
