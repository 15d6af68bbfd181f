//! The host side of the boundary: loading a plugin library and checking it before anything
//! in it is called.
//!
//! [`load_plugins`] opens each library, reads and checks its handshake, calls its `init`, and
//! adds every backend it exports to the [`Registry`], marked [`Origin::Plugin`] with the path.
//! The backends themselves are reached through the host-side [`Cache`](crate::Cache) of
//! [`super::proxy`].
//!
//! Invariants:
//! - Nothing of a library is read beyond its [`HandshakeHead`] until the magic value and the
//!   ABI version match, and nothing in it is called until the whole handshake has been
//!   checked.
//! - Every count and length the library writes is checked against a bound before anything is
//!   allocated or copied for it: at most [`MAX_BACKENDS`] backends, names of at most
//!   [`MAX_NAME_LEN`] bytes, summaries of at most [`MAX_SUMMARY_LEN`], crate names and
//!   versions of at most [`MAX_VERSION_LEN`]. A library past one is refused
//!   ([`LoadErrorKind::Malformed`](super::LoadErrorKind::Malformed)).
//! - A refused library adds nothing to the registry: every name is checked before any is added.
//! - Each library is mapped from a private copy of its file, removed once mapped: the
//!   operator's file can be replaced, or written into, without touching what runs, and each
//!   version reloaded gets a path of its own (see [`super::reload`]).
//! - Libraries are never unloaded: a plugin's runtime threads, tasks and thread-local
//!   destructors may run at any time until the process exits, so the handles are leaked on
//!   purpose (refused libraries included), and with them the function tables copied here.
//! - A plugin's `tracing` events are re-emitted by [`super::log`] with the target
//!   `fibcache::plugin` and the fields `plugin` (the path) and `plugin_target`.

use std::borrow::Cow;
use std::ffi::c_void;
use std::io::Write;
use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use libloading::Library;
use tracing::level_filters::LevelFilter;

use super::abi::{
    read_extensible, BackendInfo, Extensible, Handshake, HandshakeHead, HostApi, PluginApi, RStr,
    Status, ABI_VERSION, HANDSHAKE_SYMBOL, MAGIC,
};
use super::load_error::{LoadError, Refusal};
use super::log;
use super::proxy::{self, Expect};
use super::reload::{File, Mapped, Plugins, Slot};
use crate::reload::ContentHash;
use crate::{Backend, Origin, Registry};

/// The most backends one library may export.
pub const MAX_BACKENDS: usize = 256;
/// The longest backend name a library may export, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// The longest backend summary a library may export, in bytes.
pub const MAX_SUMMARY_LEN: usize = 1024;
/// The longest crate name or version a handshake may carry, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// Loads each library and adds its backends to `registry` (marked [`Origin::Plugin`] with the
/// path as given). The returned [`Plugins`] reloads them ([`Plugins::reload`]).
///
/// Call it before choosing the backend. It does not need a tokio runtime; the caches it adds
/// may be used from any runtime.
///
/// # Errors
/// The first library that cannot be used, with why; backends of the libraries before it stay
/// in `registry`, and no backend of the refused library is added.
pub fn load_plugins(paths: &[PathBuf], registry: &mut Registry) -> Result<Plugins, LoadError> {
    let mut plugins = Plugins::default();
    for path in paths {
        plugins
            .files
            .push(load(path, registry).map_err(LoadError::from)?);
    }
    Ok(plugins)
}

fn load(path: &Path, registry: &mut Registry) -> Result<File, Refusal> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(Refusal::NotFound { path: shown });
    }
    let bytes = std::fs::read(path).map_err(|err| Refusal::NotALibrary {
        path: shown.clone(),
        reason: err.to_string(),
    })?;
    let hash = ContentHash::of(&bytes);
    let (api, backends) = open_copy(&bytes, &shown)?;

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
        return Err(Refusal::NameTaken {
            path: shown,
            name: name.clone(),
            taken_by,
        });
    }
    let names: Vec<String> = backends.iter().map(|(name, _)| name.clone()).collect();
    let slot = Arc::new(Slot::new(api, names.clone()));
    for (name, summary) in &backends {
        let origin = Origin::Plugin {
            path: shown.clone(),
        };
        let factory = proxy::factory(slot.clone(), name);
        registry
            .add(Backend::new(name, summary, origin, factory))
            .map_err(|err| Refusal::NameTaken {
                path: shown.clone(),
                name: err.name().to_owned(),
                taken_by: err
                    .origins()
                    .map_or_else(|| err.to_string(), |(first, _)| first.to_owned()),
            })?;
    }
    Ok(File {
        path: path.to_owned(),
        hash,
        failed: None,
        mapped: vec![Mapped { hash, api, names }],
        copies: 0,
        slot,
    })
}

/// A library mapped and checked: its function table, and its backends' names and summaries in
/// its order.
pub(super) type Opened = (&'static PluginApi, Vec<(String, String)>);

/// Maps `bytes`, the content of the library file `shown`, from a private copy (see
/// [`private_copy`]) and checks it as [`open_checked`] does; the copy is removed once mapped.
pub(super) fn open_copy(bytes: &[u8], shown: &str) -> Result<Opened, Refusal> {
    let copy = private_copy(bytes, shown).map_err(|reason| Refusal::NotALibrary {
        path: shown.to_owned(),
        reason,
    })?;
    let opened = open_checked(&copy, shown);
    // Mapped (or refused): the copy is not needed any more.
    let _ = std::fs::remove_file(&copy);
    opened
}

/// Writes `bytes` to a new file in the temporary directory that only this user can read, for
/// the loader to map. The loader maps a path only once, so each version of a plugin needs a
/// path of its own; and a library mapped from the operator's file would crash the server if
/// the file were written into while mapped, which a private copy rules out.
fn private_copy(bytes: &[u8], shown: &str) -> Result<PathBuf, String> {
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let name = Path::new(shown)
        .file_name()
        .map_or_else(|| "plugin".into(), |n| n.to_string_lossy().into_owned());
    let path = std::env::temp_dir().join(format!(
        "fibcache-{}-{}-{name}",
        std::process::id(),
        COPIES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o700);
    let written = options
        .open(&path)
        .and_then(|mut out| out.write_all(bytes).and_then(|()| out.sync_all()));
    written.map_err(|err| {
        let _ = std::fs::remove_file(&path);
        format!(
            "cannot copy it to {} to load it ({err}); set TMPDIR to a writable directory",
            path.display()
        )
    })?;
    Ok(path)
}

/// Opens the library at `path` (shown as `shown`), checks its handshake, calls its `init`
/// and lists its backends (names and summaries, in its order).
pub(super) fn open_checked(path: &Path, shown: &str) -> Result<Opened, Refusal> {
    let library = open(path).map_err(|err| Refusal::NotALibrary {
        path: shown.to_owned(),
        reason: std::error::Error::source(&err)
            .map_or_else(|| err.to_string(), ToString::to_string),
    })?;
    // Never unloaded: see the module documentation.
    let library: &'static Library = Box::leak(Box::new(library));
    let not_a_plugin = || Refusal::NotAPlugin {
        path: shown.to_owned(),
    };
    // SAFETY: looking a symbol up runs no code; it is only used as an address below.
    let symbol =
        unsafe { library.get::<*const c_void>(HANDSHAKE_SYMBOL) }.map_err(|_| not_a_plugin())?;
    // SAFETY: the library is never unloaded, so the address stays valid.
    let address = unsafe { symbol.try_as_raw_ptr() }.ok_or_else(not_a_plugin)?;
    // SAFETY: the address of a static of a library that is never unloaded.
    let plugin = unsafe { check_handshake(address, shown) }?;
    init(plugin.api, shown)?;
    let backends = list(plugin.api, shown)?;
    let names: Vec<&str> = backends.iter().map(|(name, _)| name.as_str()).collect();
    tracing::info!(
        plugin = %shown,
        krate = %plugin.krate,
        version = %plugin.version,
        core = %plugin.core,
        backends = ?names,
        "plugin loaded"
    );
    Ok((plugin.api, backends))
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

/// What a checked handshake says.
#[derive(Debug)]
struct Checked {
    /// The plugin's function table, copied (and leaked, like the library).
    api: &'static PluginApi,
    /// The plugin crate's name, for the log.
    krate: String,
    /// The plugin crate's version, for the log.
    version: String,
    /// The `fibcache-core` version the plugin was built with, for the log.
    core: String,
}

/// Reads and checks the handshake at `address`: the head alone first, the rest only once the
/// magic value and the ABI version match.
///
/// # Safety
/// `address` must be the address of a symbol named [`HANDSHAKE_SYMBOL`] that stays mapped for
/// the rest of the process and is at least as large as [`MAGIC`] (the one thing that cannot
/// be checked of a foreign library).
unsafe fn check_handshake(address: *const c_void, shown: &str) -> Result<Checked, Refusal> {
    let not_a_plugin = || Refusal::NotAPlugin {
        path: shown.to_owned(),
    };
    let head = address.cast::<HandshakeHead>();
    if head.is_null() || !head.cast::<Handshake>().is_aligned() {
        return Err(not_a_plugin());
    }
    // SAFETY: the caller guarantees the magic value's bytes.
    let magic = unsafe { std::ptr::read(head.cast::<[u8; 16]>()) };
    if magic != MAGIC {
        return Err(not_a_plugin());
    }
    let malformed = |reason: String| Refusal::Malformed {
        path: shown.to_owned(),
        reason,
    };
    // SAFETY: with the magic value it is a fibcache handshake, whose head is laid out the same
    // in every ABI version; its strings point to statics of the library.
    let (abi, core) = unsafe { ((*head).abi_version, (*head).core_version) };
    // SAFETY: as above.
    let core = unsafe { bounded(core, MAX_VERSION_LEN) }
        .map_err(|len| malformed(format!("its fibcache-core version is {len} bytes long")))?;
    if abi != ABI_VERSION {
        return Err(Refusal::Incompatible {
            path: shown.to_owned(),
            plugin_abi: abi,
            plugin_core: core,
            host_abi: ABI_VERSION,
            host_core: crate::VERSION.to_owned(),
        });
    }
    // SAFETY: same ABI version, so the whole handshake has this layout; it is static.
    let handshake: &'static Handshake = unsafe { &*head.cast() };
    if handshake.panic_unwind != 1 {
        return Err(Refusal::PanicAbort {
            path: shown.to_owned(),
        });
    }
    if handshake.api.is_null() {
        return Err(not_a_plugin());
    }
    // SAFETY: the table is a static of the library, as large as its `size` says.
    let api = unsafe { read_extensible(handshake.api) }.map_err(|size| Refusal::TableTooSmall {
        path: shown.to_owned(),
        size,
        required: PluginApi::MANDATORY,
    })?;
    // SAFETY: the strings are statics of the library.
    let (krate, version) = unsafe {
        (
            bounded(handshake.plugin_crate, MAX_VERSION_LEN),
            bounded(handshake.plugin_version, MAX_VERSION_LEN),
        )
    };
    let krate = krate.map_err(|len| malformed(format!("its crate name is {len} bytes long")))?;
    let version =
        version.map_err(|len| malformed(format!("its crate version is {len} bytes long")))?;
    Ok(Checked {
        api: Box::leak(Box::new(api)),
        krate,
        version,
        core,
    })
}

/// An owned copy of a string of the library, with invalid UTF-8 replaced by U+FFFD, or the
/// length it claims when that is more than `max` (nothing is read then).
///
/// # Safety
/// `text` must point to as many bytes as it claims, when that is at most `max`.
unsafe fn bounded(text: RStr<'_>, max: usize) -> Result<String, usize> {
    // SAFETY: forwarded to the caller.
    unsafe { text.bytes_within(max) }.map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

/// Calls the plugin's `init` with the host's log sink.
fn init(api: &'static PluginApi, shown: &str) -> Result<(), Refusal> {
    let (log_ctx, log) = log::host_sink(shown);
    let host = HostApi {
        size: size_of::<HostApi>(),
        max_level: LevelFilter::current().into(),
        log_ctx,
        log: Some(log),
    };
    let (ctx, mut rx) = proxy::completion(api, Expect::Nothing, None);
    // SAFETY: `host` outlives the call, its log context lives forever, and `ctx` is a fresh
    // completion for `on_done`.
    unsafe { (api.init)(&host, ctx, proxy::on_done) };
    let failed = |message: String| Refusal::Init {
        path: shown.to_owned(),
        message,
    };
    match rx.try_recv() {
        Ok(outcome) if outcome.status == Status::OK => Ok(()),
        Ok(outcome) => Err(failed(outcome.status.describe(outcome.text))),
        Err(_) => Err(failed("its `init` returned without answering".to_owned())),
    }
}

/// The names and summaries of the backends the plugin exports, in its order.
fn list(api: &'static PluginApi, shown: &str) -> Result<Vec<(String, String)>, Refusal> {
    let malformed = |reason: String| Refusal::Malformed {
        path: shown.to_owned(),
        reason,
    };
    // SAFETY: `init` succeeded; these take no pointers but `out`, which is valid.
    let count = unsafe { (api.backend_count)() };
    if count == 0 {
        return Err(Refusal::NoBackends {
            path: shown.to_owned(),
        });
    }
    if count > MAX_BACKENDS {
        return Err(malformed(format!(
            "it exports {count} backends, more than the {MAX_BACKENDS} a plugin may"
        )));
    }
    let mut backends = Vec::with_capacity(count);
    for index in 0..count {
        let mut info = BackendInfo {
            name: RStr::EMPTY,
            summary: RStr::EMPTY,
        };
        // SAFETY: `info` is a valid place for the plugin to write.
        let status = unsafe { (api.backend_info)(index, &mut info) };
        if status != Status::OK {
            return Err(Refusal::Init {
                path: shown.to_owned(),
                message: format!("it cannot describe its backend #{index}"),
            });
        }
        // SAFETY: the strings are statics of the library, which is never unloaded.
        let (name, summary) = unsafe {
            (
                bounded(info.name, MAX_NAME_LEN),
                bounded(info.summary, MAX_SUMMARY_LEN),
            )
        };
        let name = name.map_err(|len| {
            malformed(format!(
                "the name of its backend #{index} is {len} bytes long, more than \
                 {MAX_NAME_LEN}"
            ))
        })?;
        let summary = summary.map_err(|len| {
            malformed(format!(
                "the summary of its backend #{index} is {len} bytes long, more than \
                 {MAX_SUMMARY_LEN}"
            ))
        })?;
        if name.is_empty() {
            return Err(Refusal::Init {
                path: shown.to_owned(),
                message: format!("it cannot describe its backend #{index}"),
            });
        }
        backends.push((name, summary));
    }
    Ok(backends)
}

#[cfg(test)]
mod tests;
