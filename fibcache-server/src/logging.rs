//! The binary's tracing subscriber: level and filters, text or JSON, and a non-blocking writer.
//!
//! Log lines go to stderr through a background thread (`tracing-appender`), so a request never
//! waits on the terminal or a pipe: at the default level the server logs one line per request,
//! and a blocking writer would cost a large share of hit throughput. The thread writes in
//! batches (one `write(2)` for all the lines queued since its last write). If it falls more
//! than its queue behind, lines are dropped rather than slowing requests down.

use anyhow::Context as _;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. Keep the guard alive until exit: dropping it flushes.
///
/// `level` is a level or an `EnvFilter` directive list; `RUST_LOG`, when set, adds its
/// directives after it (so it can refine or override per target).
///
/// # Errors
/// When `level` or `RUST_LOG` is not a valid filter.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<WorkerGuard> {
    let mut directives = level.to_owned();
    if let Ok(extra) = std::env::var("RUST_LOG") {
        if !extra.trim().is_empty() {
            directives.push(',');
            directives.push_str(&extra);
        }
    }
    let filter = EnvFilter::builder()
        .parse(&directives)
        .with_context(|| format!("invalid log filter {directives:?} (--log-level / RUST_LOG)"))?;
    // The worker drains every line queued so far, then flushes: behind a buffer, a burst of
    // lines costs one write(2) instead of one per line (stderr itself is unbuffered).
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(guard)
}
