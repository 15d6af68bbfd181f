//! Forwarding of a plugin's `tracing` events to the host.
//!
//! A plugin's `tracing` has its own dispatcher, which knows nothing of the host's subscriber.
//! So the plugin installs, as its global default, a subscriber that formats each enabled event
//! (message, then the fields as ` key=value`) and hands it to the host's [`LogFn`], which
//! re-emits it in the host. Only events cross: spans are accepted and ignored.

use std::ffi::c_void;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, RwLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use super::{level, HostApi, LogFn, LogRecord, RStr};

/// Where events go.
struct Sink {
    ctx: *mut c_void,
    log: LogFn,
}

// SAFETY: the host promises that its log function may be called with this context from any
// thread, for as long as the process runs.
unsafe impl Send for Sink {}
// SAFETY: as above; the sink is only read.
unsafe impl Sync for Sink {}

/// The host's sink; replaced when the host calls `init` again (a test process that loads the
/// library several times), which is why it is not a `OnceLock`.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// The most verbose level the host wants, as a [`level`] constant.
static MAX_LEVEL: AtomicU32 = AtomicU32::new(level::OFF);

/// Points the plugin's `tracing` at the host's log function.
///
/// # Safety
/// `host.log`, if set, must be callable with `host.log_ctx` from any thread for as long as the
/// process runs.
pub(super) unsafe fn install(host: &HostApi) {
    let sink = host.log.map(|log| Sink {
        ctx: host.log_ctx,
        log,
    });
    let max = if sink.is_some() {
        host.max_level.min(level::TRACE)
    } else {
        level::OFF
    };
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = sink;
    MAX_LEVEL.store(max, Ordering::Relaxed);

    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Fails only if the plugin's author installed a subscriber of their own, which then
        // keeps the events.
        let _ = tracing::subscriber::set_global_default(Forward);
    });
    // Callsites cache whether they are enabled; the level may have just changed.
    tracing::callsite::rebuild_interest_cache();
}

fn number(level: &Level) -> u32 {
    match *level {
        Level::ERROR => level::ERROR,
        Level::WARN => level::WARN,
        Level::INFO => level::INFO,
        Level::DEBUG => level::DEBUG,
        Level::TRACE => level::TRACE,
    }
}

fn max_level() -> u32 {
    MAX_LEVEL.load(Ordering::Relaxed)
}

/// The plugin's global subscriber.
struct Forward;

impl Subscriber for Forward {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        number(metadata.level()) <= max_level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match max_level() {
            level::OFF => LevelFilter::OFF,
            level::ERROR => LevelFilter::ERROR,
            level::WARN => LevelFilter::WARN,
            level::INFO => LevelFilter::INFO,
            level::DEBUG => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        let message = text.finish();
        let record = LogRecord {
            level: number(metadata.level()),
            target: RStr::new(metadata.target()),
            message: RStr::new(&message),
            file: metadata.file().map_or(RStr::EMPTY, RStr::new),
            line: metadata.line().unwrap_or(0),
        };
        let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
        if let Some(sink) = &*sink {
            // SAFETY: see `Sink`; the record borrows locals that outlive the call.
            unsafe { (sink.log)(sink.ctx, &record) };
        }
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// An event's message followed by its other fields.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(mut self) -> String {
        self.message.push_str(&self.fields);
        self.message
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}
