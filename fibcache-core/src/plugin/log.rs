//! Forwarding of a plugin's `tracing` events to the host: both ends.
//!
//! A plugin's `tracing` has its own dispatcher, which knows nothing of the host's subscriber.
//! So the plugin installs ([`install`]), as its global default, a subscriber that formats each
//! enabled event (message, then the fields as ` key=value`) and hands it to the host's
//! [`LogFn`]; the host's end ([`host_sink`]) re-emits it with the target `fibcache::plugin`
//! and the fields `plugin` (the library's path) and `plugin_target` (the event's target in the
//! plugin). Only events cross: spans are accepted and ignored. The level crosses as an
//! [`FfiLevel`], whose conversions are the only mapping between levels and numbers.
//!
//! The plugin's formatted text becomes the host event's message as it is, newlines included:
//! keeping each event on one line is the host subscriber's job, as for every other value it
//! did not write (the `fibcache` binary's text format escapes control characters in every
//! field; its JSON format escapes them as JSON does).

use std::ffi::c_void;
use std::fmt::{self, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, RwLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use super::abi::{FfiLevel, HostApi, LogFn, LogRecord, RStr};

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

/// The most verbose level the host wants, as the number of an [`FfiLevel`].
static MAX_LEVEL: AtomicU32 = AtomicU32::new(FfiLevel::OFF.0);

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
        host.max_level
    } else {
        FfiLevel::OFF
    };
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = sink;
    MAX_LEVEL.store(max.0, Ordering::Relaxed);

    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Fails only if the plugin's author installed a subscriber of their own, which then
        // keeps the events.
        let _ = tracing::subscriber::set_global_default(Forward);
    });
    // Callsites cache whether they are enabled; the level may have just changed.
    tracing::callsite::rebuild_interest_cache();
}

fn max_level() -> LevelFilter {
    FfiLevel(MAX_LEVEL.load(Ordering::Relaxed)).into()
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
        *metadata.level() <= max_level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(max_level())
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
            level: (*metadata.level()).into(),
            target: RStr::new(metadata.target()),
            message: RStr::new(&message),
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

// ---------------------------------------------------------------------------------------------
// The host's end.

/// The host's sink for the library at `path`: a context and the function to pass it to.
pub(super) fn host_sink(path: &str) -> (*mut c_void, LogFn) {
    // Leaked: the plugin may log from any thread until the process exits.
    let source: &'static LogSource = Box::leak(Box::new(LogSource {
        path: path.to_owned(),
    }));
    (std::ptr::from_ref(source).cast_mut().cast(), reemit)
}

/// The longest event message of a plugin the host copies, in bytes; a longer one is cut.
const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// The longest event target of a plugin the host copies, in bytes.
const MAX_TARGET_LEN: usize = 256;

/// The log context of one library.
struct LogSource {
    path: String,
}

/// Re-emits one of a plugin's events in the host.
unsafe extern "C" fn reemit(ctx: *mut c_void, record: *const LogRecord<'_>) {
    // A panicking subscriber must not unwind into the plugin.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the leaked `LogSource` given at `init`; `record` and its strings
        // are valid for the duration of this call.
        let (source, record) = unsafe { (&*ctx.cast::<LogSource>(), &*record) };
        // SAFETY: as above; at most the bounds are read.
        let (target, message) = unsafe {
            (
                record.target.to_string_truncated(MAX_TARGET_LEN),
                record.message.to_string_truncated(MAX_MESSAGE_LEN),
            )
        };
        // A record is never "off"; one that says so has nothing to show.
        let Some(level) = LevelFilter::from(record.level).into_level() else {
            return;
        };
        // `tracing` fixes an event's level where it is written, hence one call per level.
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: "fibcache::plugin",
                    $level,
                    plugin = %source.path,
                    plugin_target = %target,
                    "{message}"
                )
            };
        }
        match level {
            Level::ERROR => emit!(Level::ERROR),
            Level::WARN => emit!(Level::WARN),
            Level::INFO => emit!(Level::INFO),
            Level::DEBUG => emit!(Level::DEBUG),
            Level::TRACE => emit!(Level::TRACE),
        }
    }));
}
