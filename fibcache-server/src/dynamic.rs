//! Cache backends loaded from shared libraries at start-up (`--plugin`, feature `dynamic`).
//!
//! [`load_plugins`] opens each library, reads and checks its handshake before calling
//! anything in it, and adds every backend it exports to the same [`Registry`] as the
//! built-in ones, marked [`Origin::Plugin`] with the path. Each backend is wrapped here in a
//! [`Cache`] of the host's own that talks to the plugin through the C ABI of
//! [`fibcache_core::plugin`] (which documents the protocol, what a plugin must match and what
//! is checked): nothing but `#[repr(C)]` data and `extern "C"` functions crosses.
//!
//! A plugin operation completes through a callback that this module turns into a oneshot
//! channel, so an async worker of the server awaits it like any other future and never blocks
//! on a plugin. A plugin's `tracing` events are re-emitted here with the target
//! `fibcache::plugin` and the fields `plugin` (the path) and `plugin_target`.
//!
//! Libraries are never unloaded: a plugin's runtime threads, tasks and thread-local
//! destructors may run at any time until the process exits, so the handles are leaked on
//! purpose (refused libraries included).

use std::borrow::Cow;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fibcache_core::plugin::{
    self, level, BackendInfo, ConfigView, HandshakeHead, HostApi, Instance, LogRecord, PluginApi,
    RStr, Status,
};
use fibcache_core::registry::DynFactory;
use fibcache_core::{async_trait, Backend, Cache, Config, Error, Origin, Registry};
use libloading::Library;
use tokio::sync::oneshot;
use tracing::level_filters::LevelFilter;
use tracing::Level;

/// Why a plugin library was refused. Each message names the library and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// Nothing exists at the path.
    #[error("plugin `{path}` does not exist; pass the path of a built plugin library (for example target/release/examples/libmemcache_plugin.so)")]
    NotFound {
        /// The path as given.
        path: String,
    },

    /// The platform's loader refused the file.
    #[error("plugin `{path}` is not a loadable shared library ({reason}); build the plugin as a `cdylib` for this platform")]
    NotALibrary {
        /// The path as given.
        path: String,
        /// What the loader said.
        reason: String,
    },

    /// A shared library without a fibcache handshake.
    #[error("`{path}` is a shared library but not a fibcache plugin (no valid `{symbol}`); a plugin crate ends with `fibcache_core::export_plugin!();`", symbol = plugin::HANDSHAKE_SYMBOL)]
    NotAPlugin {
        /// The path as given.
        path: String,
    },

    /// A plugin built for another plugin ABI or an incompatible `fibcache-core`.
    #[error("plugin `{path}` was built for plugin ABI {plugin_abi} (fibcache-core {plugin_core}) but this fibcache speaks ABI {host_abi} (fibcache-core {host_core}); rebuild the plugin against fibcache-core {host_core}")]
    Incompatible {
        /// The path as given.
        path: String,
        /// The plugin's ABI version.
        plugin_abi: u32,
        /// The plugin's `fibcache-core` version.
        plugin_core: String,
        /// This binary's ABI version.
        host_abi: u32,
        /// This binary's `fibcache-core` version.
        host_core: String,
    },

    /// A plugin built with `panic = "abort"`, whose panics could not be caught.
    #[error("plugin `{path}` was built with panic=abort, so a panic in it would abort the server; rebuild it with panic=unwind (the default)")]
    PanicAbort {
        /// The path as given.
        path: String,
    },

    /// The plugin's `init` failed.
    #[error("plugin `{path}` failed to start: {message}; fix the plugin and rebuild it")]
    Init {
        /// The path as given.
        path: String,
        /// What went wrong.
        message: String,
    },

    /// The plugin exports no backend.
    #[error("plugin `{path}` exports no backends; call `register_backend!` in the crate that calls `export_plugin!()`")]
    NoBackends {
        /// The path as given.
        path: String,
    },

    /// A backend name the registry already has.
    #[error("plugin `{path}` registers backend `{name}`, which is already taken by {taken_by}; rename the plugin's backend or drop one of the two")]
    NameTaken {
        /// The path as given.
        path: String,
        /// The contested name.
        name: String,
        /// The origin of the backend that has the name.
        taken_by: String,
    },
}

/// Loads each library and adds its backends to `registry` (marked [`Origin::Plugin`] with the
/// path as given).
///
/// Call it before choosing the backend. It does not need a tokio runtime; the caches it adds
/// may be used from any runtime.
///
/// # Errors
/// The first library that cannot be used, with why; backends of the libraries before it stay
/// in `registry`, and no backend of the refused library is added.
pub fn load_plugins(paths: &[PathBuf], registry: &mut Registry) -> Result<(), PluginError> {
    for path in paths {
        load(path, registry)?;
    }
    Ok(())
}

fn load(path: &Path, registry: &mut Registry) -> Result<(), PluginError> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(PluginError::NotFound { path: shown });
    }
    let library = open(path).map_err(|err| PluginError::NotALibrary {
        path: shown.clone(),
        reason: std::error::Error::source(&err)
            .map_or_else(|| err.to_string(), ToString::to_string),
    })?;
    // Never unloaded: see the module documentation.
    let library: &'static Library = Box::leak(Box::new(library));
    let handshake = handshake(library, &shown)?;
    // SAFETY: checked by `handshake`: the table and the strings are statics of the library,
    // which is never unloaded.
    let (api, krate, version) = unsafe {
        (
            &*handshake.api,
            handshake.plugin_crate.to_string_lossy(),
            handshake.plugin_version.to_string_lossy(),
        )
    };
    init(api, &shown)?;
    let backends = list(api, &shown)?;

    // Every name is checked before any is added, so a refused library adds nothing.
    for (index, (name, _)) in backends.iter().enumerate() {
        let taken_by = if let Ok(existing) = registry.get(name) {
            existing.origin().to_string()
        } else if backends[..index].iter().any(|(earlier, _)| earlier == name) {
            Origin::Plugin {
                path: shown.clone(),
            }
            .to_string()
        } else {
            continue;
        };
        return Err(PluginError::NameTaken {
            path: shown,
            name: name.clone(),
            taken_by,
        });
    }
    let names: Vec<&str> = backends.iter().map(|(name, _)| name.as_str()).collect();
    tracing::info!(plugin = %shown, %krate, %version, backends = ?names, "plugin loaded");
    for (index, (name, summary)) in backends.iter().enumerate() {
        let backend = Arc::new(PluginBackend {
            api,
            index,
            name: Arc::from(name.as_str()),
        });
        let factory: DynFactory = Arc::new(move |config| {
            let backend = backend.clone();
            Box::pin(async move { backend.create(config).await })
        });
        let origin = Origin::Plugin {
            path: shown.clone(),
        };
        registry
            .add(Backend::new(name, summary, origin, factory))
            .map_err(|err| match err {
                Error::DuplicateBackend { name, first, .. } => PluginError::NameTaken {
                    path: shown.clone(),
                    name,
                    taken_by: first,
                },
                other => PluginError::Init {
                    path: shown.clone(),
                    message: other.to_string(),
                },
            })?;
    }
    Ok(())
}

/// Opens the library, resolving every symbol now so that a library with missing dependencies
/// fails here rather than at its first call.
fn open(path: &Path) -> Result<Library, libloading::Error> {
    // A bare file name would make the loader search the system's library path instead of the
    // current directory.
    let path = if path.components().count() == 1 && path.is_relative() {
        Cow::Owned(Path::new(".").join(path))
    } else {
        Cow::Borrowed(path)
    };
    #[cfg(unix)]
    {
        use libloading::os::unix::{Library as UnixLibrary, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: loading runs the library's initialisers; loading a plugin means trusting
        // it, as the documentation of `--plugin` says. Nothing else in it is called before
        // its handshake is checked.
        unsafe { UnixLibrary::open(Some(&*path), RTLD_NOW | RTLD_LOCAL) }.map(Library::from)
    }
    #[cfg(not(unix))]
    {
        // SAFETY: as above.
        unsafe { Library::new(&*path) }
    }
}

/// Reads and checks the handshake; a handshake it returns has a function table.
fn handshake(
    library: &'static Library,
    shown: &str,
) -> Result<&'static plugin::Handshake, PluginError> {
    let not_a_plugin = || PluginError::NotAPlugin {
        path: shown.to_owned(),
    };
    // SAFETY: looking a symbol up runs no code; it is only used as an address below.
    let symbol = unsafe { library.get::<*const c_void>(plugin::HANDSHAKE_SYMBOL) }
        .map_err(|_| not_a_plugin())?;
    // SAFETY: the library is never unloaded, so the address stays valid.
    let address = unsafe { symbol.try_as_raw_ptr() }.ok_or_else(not_a_plugin)?;
    let head = address.cast::<HandshakeHead>().cast_const();
    if head.is_null() || !head.cast::<plugin::Handshake>().is_aligned() {
        return Err(not_a_plugin());
    }
    // SAFETY: the symbol is at least as large as the magic value: a foreign symbol of this
    // name that is smaller is the one thing that cannot be checked (see `fibcache_core::plugin`).
    let magic = unsafe { std::ptr::read(head.cast::<[u8; 16]>()) };
    if magic != plugin::MAGIC {
        return Err(not_a_plugin());
    }
    // SAFETY: with the magic value it is a fibcache handshake, whose head is laid out the same
    // in every ABI version; its strings point to statics of the library.
    let (abi, core) = unsafe { ((*head).abi_version, (*head).core_version.to_string_lossy()) };
    if abi != plugin::ABI_VERSION
        || !plugin::core_versions_compatible(&core, fibcache_core::VERSION)
    {
        return Err(PluginError::Incompatible {
            path: shown.to_owned(),
            plugin_abi: abi,
            plugin_core: core,
            host_abi: plugin::ABI_VERSION,
            host_core: fibcache_core::VERSION.to_owned(),
        });
    }
    // SAFETY: same ABI version, so the whole handshake has this layout; it is static.
    let handshake: &'static plugin::Handshake = unsafe { &*head.cast() };
    if handshake.panic_unwind != 1 {
        return Err(PluginError::PanicAbort {
            path: shown.to_owned(),
        });
    }
    if handshake.api.is_null() {
        return Err(not_a_plugin());
    }
    Ok(handshake)
}

/// Calls the plugin's `init` with the host's log sink.
fn init(api: &'static PluginApi, shown: &str) -> Result<(), PluginError> {
    // Leaked: the plugin may log from any thread until the process exits.
    let source: &'static LogSource = Box::leak(Box::new(LogSource {
        path: shown.to_owned(),
    }));
    let host = HostApi {
        abi_version: plugin::ABI_VERSION,
        max_level: host_max_level(),
        log_ctx: std::ptr::from_ref(source).cast_mut().cast(),
        log: Some(forward_log),
    };
    let (ctx, mut rx) = completion(api);
    // SAFETY: `host` outlives the call, its log context lives forever, and `ctx` is a fresh
    // completion for `on_done`.
    unsafe { (api.init)(&host, ctx, on_done) };
    let failed = |message: String| PluginError::Init {
        path: shown.to_owned(),
        message,
    };
    match rx.try_recv() {
        Ok(outcome) if outcome.status == Status::OK => Ok(()),
        Ok(outcome) => Err(failed(outcome.describe())),
        Err(_) => Err(failed("its `init` returned without answering".to_owned())),
    }
}

/// The names and summaries of the backends the plugin exports, in its order.
fn list(api: &'static PluginApi, shown: &str) -> Result<Vec<(String, String)>, PluginError> {
    // SAFETY: `init` succeeded; these take no pointers but `out`, which is valid.
    let count = unsafe { (api.backend_count)() };
    if count == 0 {
        return Err(PluginError::NoBackends {
            path: shown.to_owned(),
        });
    }
    let mut backends = Vec::with_capacity(count);
    for index in 0..count {
        let mut info = BackendInfo {
            name: RStr::EMPTY,
            summary: RStr::EMPTY,
        };
        // SAFETY: `info` is a valid place for the plugin to write.
        let status = unsafe { (api.backend_info)(index, &mut info) };
        // SAFETY: the strings are statics of the library, which is never unloaded.
        let (name, summary) =
            unsafe { (info.name.to_string_lossy(), info.summary.to_string_lossy()) };
        if status != Status::OK || name.is_empty() {
            return Err(PluginError::Init {
                path: shown.to_owned(),
                message: format!("it cannot describe its backend #{index}"),
            });
        }
        backends.push((name, summary));
    }
    Ok(backends)
}

/// The host's most verbose enabled level, as the plugin's level number.
fn host_max_level() -> u32 {
    match LevelFilter::current().into_level() {
        None => level::OFF,
        Some(Level::ERROR) => level::ERROR,
        Some(Level::WARN) => level::WARN,
        Some(Level::INFO) => level::INFO,
        Some(Level::DEBUG) => level::DEBUG,
        Some(Level::TRACE) => level::TRACE,
    }
}

/// The log context of one library.
struct LogSource {
    path: String,
}

/// Re-emits one of a plugin's events in the host.
unsafe extern "C" fn forward_log(ctx: *mut c_void, record: *const LogRecord) {
    // A panicking subscriber must not unwind into the plugin.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the leaked `LogSource` given at `init`; `record` and its strings
        // are valid for the duration of this call.
        let (source, record) = unsafe { (&*ctx.cast::<LogSource>(), &*record) };
        // SAFETY: as above.
        let (target, message) = unsafe {
            (
                String::from_utf8_lossy(record.target.as_bytes()),
                String::from_utf8_lossy(record.message.as_bytes()),
            )
        };
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
        match record.level {
            level::ERROR => emit!(Level::ERROR),
            level::WARN => emit!(Level::WARN),
            level::INFO => emit!(Level::INFO),
            level::DEBUG => emit!(Level::DEBUG),
            _ => emit!(Level::TRACE),
        }
    }));
}

/// What a plugin answered through its `done` callback, copied.
struct Outcome {
    status: Status,
    text: String,
    instance: InstancePtr,
}

impl Outcome {
    /// The failure as a `fibcache_core` error of the backend `name`.
    fn into_error(self, name: &str) -> Error {
        match self.status {
            Status::CONFIG => Error::Config {
                backend: name.to_owned(),
                message: self.text,
            },
            Status::UNAVAILABLE => Error::unavailable(name, self.text),
            _ => Error::backend(name, self.describe()),
        }
    }

    /// A failure in words.
    fn describe(&self) -> String {
        match self.status {
            Status::PANICKED => format!("the plugin panicked: {}", self.text),
            Status::FAILED | Status::CONFIG | Status::UNAVAILABLE => self.text.clone(),
            Status::ABSENT => "no value".to_owned(),
            Status(other) => format!("the plugin answered with unknown status {other}"),
        }
    }
}

/// The `ctx` of one operation: where to send its outcome.
struct Pending {
    tx: oneshot::Sender<Outcome>,
    /// To release an instance that arrives after its `create` was given up.
    api: &'static PluginApi,
}

/// A fresh `ctx` for `on_done` and the receiver of its outcome.
fn completion(api: &'static PluginApi) -> (*mut c_void, oneshot::Receiver<Outcome>) {
    let (tx, rx) = oneshot::channel();
    let ctx = Box::into_raw(Box::new(Pending { tx, api }));
    (ctx.cast(), rx)
}

/// The `done` callback of every operation: copies the answer and sends it to the waiting
/// future. Runs on whichever thread the plugin completes on; never blocks.
unsafe extern "C" fn on_done(
    ctx: *mut c_void,
    status: Status,
    text: RStr,
    instance: *const Instance,
) {
    // SAFETY: `ctx` comes from `completion` and the plugin calls `done` once per operation.
    let pending = unsafe { Box::from_raw(ctx.cast::<Pending>()) };
    // SAFETY: `text` is valid for the duration of this call.
    let bytes = unsafe { text.as_bytes() };
    let (status, text) = match String::from_utf8(bytes.to_vec()) {
        Ok(text) => (status, text),
        Err(_) => (
            Status::FAILED,
            "the plugin answered with text that is not UTF-8".to_owned(),
        ),
    };
    let outcome = Outcome {
        status,
        text,
        instance: InstancePtr(instance),
    };
    if let Err(unwanted) = pending.tx.send(outcome) {
        // Nobody waits any more (the `create` future was dropped): free what was made for it.
        if !unwanted.instance.0.is_null() {
            // SAFETY: a fresh instance of this plugin that nobody else holds.
            unsafe { (pending.api.release)(unwanted.instance.0) };
        }
    }
}

/// An instance pointer of a plugin.
#[derive(Clone, Copy)]
struct InstancePtr(*const Instance);

// SAFETY: an instance is the plugin's `Arc<dyn Cache>`, which is `Send + Sync`; the protocol
// allows calls on it from any thread, at the same time.
unsafe impl Send for InstancePtr {}
// SAFETY: as above.
unsafe impl Sync for InstancePtr {}

/// One backend of a loaded plugin; what its registry factory calls.
struct PluginBackend {
    api: &'static PluginApi,
    index: usize,
    name: Arc<str>,
}

impl PluginBackend {
    async fn create(&self, config: &Config) -> fibcache_core::Result<Arc<dyn Cache>> {
        let rx = {
            let view = ConfigView::new(config);
            let (ctx, rx) = completion(self.api);
            // SAFETY: the config view outlives the call; `ctx` is a fresh completion.
            unsafe { (self.api.create)(self.index, view.as_ffi(), ctx, on_done) };
            rx
        };
        let outcome = rx.await.map_err(|_| self.vanished())?;
        if outcome.status != Status::OK {
            return Err(outcome.into_error(&self.name));
        }
        if outcome.instance.0.is_null() {
            return Err(Error::backend(
                &*self.name,
                "the plugin created no instance",
            ));
        }
        Ok(Arc::new(PluginCache {
            api: self.api,
            instance: outcome.instance,
            name: self.name.clone(),
        }))
    }

    fn vanished(&self) -> Error {
        Error::backend(
            &*self.name,
            "the plugin dropped an operation without answering",
        )
    }
}

/// A plugin backend's instance as a host [`Cache`].
struct PluginCache {
    api: &'static PluginApi,
    instance: InstancePtr,
    /// The registered name, for errors.
    name: Arc<str>,
}

impl PluginCache {
    /// Runs one operation: `start` calls the plugin with a fresh `ctx`; the answer is awaited
    /// without blocking the thread.
    async fn call(&self, start: impl FnOnce(*mut c_void)) -> fibcache_core::Result<Outcome> {
        let (ctx, rx) = completion(self.api);
        start(ctx);
        let outcome = rx.await.map_err(|_| self.vanished())?;
        if outcome.status == Status::OK || outcome.status == Status::ABSENT {
            Ok(outcome)
        } else {
            Err(outcome.into_error(&self.name))
        }
    }

    fn vanished(&self) -> Error {
        Error::backend(
            &*self.name,
            "the plugin dropped an operation without answering",
        )
    }
}

#[async_trait]
impl Cache for PluginCache {
    async fn get(&self, key: &str) -> fibcache_core::Result<Option<String>> {
        let outcome = self
            .call(|ctx| {
                // SAFETY: the instance is alive (released only in `drop`), the key outlives
                // the call, and `ctx` is a fresh completion.
                unsafe { (self.api.get)(self.instance.0, RStr::new(key), ctx, on_done) }
            })
            .await?;
        Ok((outcome.status == Status::OK).then_some(outcome.text))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> fibcache_core::Result<()> {
        self.call(|ctx| {
            // SAFETY: as in `get`.
            unsafe {
                (self.api.set)(
                    self.instance.0,
                    RStr::new(key),
                    RStr::new(value),
                    ttl.into(),
                    ctx,
                    on_done,
                )
            }
        })
        .await?;
        Ok(())
    }
}

impl Drop for PluginCache {
    fn drop(&mut self) {
        // SAFETY: released once, after the last call through this wrapper; operations still
        // running in the plugin hold their own reference to the backend.
        unsafe { (self.api.release)(self.instance.0) };
    }
}
