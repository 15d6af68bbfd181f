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
//!   versions match, and nothing in it is called until the whole handshake has been checked.
//! - A refused library adds nothing to the registry: every name is checked before any is added.
//! - Libraries are never unloaded: a plugin's runtime threads, tasks and thread-local
//!   destructors may run at any time until the process exits, so the handles are leaked on
//!   purpose (refused libraries included), and with them the function tables copied here.
//! - A plugin's `tracing` events are re-emitted by [`super::log`] with the target
//!   `fibcache::plugin` and the fields `plugin` (the path) and `plugin_target`.

use std::borrow::Cow;
use std::ffi::c_void;
use std::mem::size_of;
use std::path::{Path, PathBuf};

use libloading::Library;
use tracing::level_filters::LevelFilter;

use super::abi::{
    read_extensible, BackendInfo, Extensible, Handshake, HandshakeHead, HostApi, PluginApi, RStr,
    Status, ABI_VERSION, HANDSHAKE_SYMBOL, MAGIC,
};
use super::{log, proxy};
use crate::{Backend, Origin, Registry};

/// Why a plugin library was refused. Each message names the library and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
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
    #[error("`{path}` is a shared library but not a fibcache plugin (no valid `{symbol}`); a plugin crate ends with `fibcache_core::export_plugin!();`", symbol = HANDSHAKE_SYMBOL)]
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

    /// A plugin whose function table is smaller than this ABI version's mandatory part.
    #[error("plugin `{path}` has a function table of {size} bytes, fewer than the {required} of plugin ABI {abi}; rebuild it with `export_plugin!` against fibcache-core {core}", abi = ABI_VERSION, core = crate::VERSION)]
    TableTooSmall {
        /// The path as given.
        path: String,
        /// The size the plugin gave its table.
        size: usize,
        /// The least size this host reads.
        required: usize,
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
pub fn load_plugins(paths: &[PathBuf], registry: &mut Registry) -> Result<(), LoadError> {
    for path in paths {
        load(path, registry)?;
    }
    Ok(())
}

fn load(path: &Path, registry: &mut Registry) -> Result<(), LoadError> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(LoadError::NotFound { path: shown });
    }
    let library = open(path).map_err(|err| LoadError::NotALibrary {
        path: shown.clone(),
        reason: std::error::Error::source(&err)
            .map_or_else(|| err.to_string(), ToString::to_string),
    })?;
    // Never unloaded: see the module documentation.
    let library: &'static Library = Box::leak(Box::new(library));
    let not_a_plugin = || LoadError::NotAPlugin {
        path: shown.clone(),
    };
    // SAFETY: looking a symbol up runs no code; it is only used as an address below.
    let symbol =
        unsafe { library.get::<*const c_void>(HANDSHAKE_SYMBOL) }.map_err(|_| not_a_plugin())?;
    // SAFETY: the library is never unloaded, so the address stays valid.
    let address = unsafe { symbol.try_as_raw_ptr() }.ok_or_else(not_a_plugin)?;
    // SAFETY: the address of a static of a library that is never unloaded.
    let plugin = unsafe { check_handshake(address, &shown) }?;
    init(plugin.api, &shown)?;
    let backends = list(plugin.api, &shown)?;

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
        return Err(LoadError::NameTaken {
            path: shown,
            name: name.clone(),
            taken_by,
        });
    }
    let names: Vec<&str> = backends.iter().map(|(name, _)| name.as_str()).collect();
    tracing::info!(
        plugin = %shown,
        krate = %plugin.krate,
        version = %plugin.version,
        backends = ?names,
        "plugin loaded"
    );
    for (index, (name, summary)) in backends.iter().enumerate() {
        let origin = Origin::Plugin {
            path: shown.clone(),
        };
        let factory = proxy::factory(plugin.api, index, name);
        registry
            .add(Backend::new(name, summary, origin, factory))
            .map_err(|err| LoadError::NameTaken {
                path: shown.clone(),
                name: err.name().to_owned(),
                taken_by: err
                    .origins()
                    .map_or_else(|| err.to_string(), |(first, _)| first.to_owned()),
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

/// What a checked handshake says.
#[derive(Debug)]
struct Checked {
    /// The plugin's function table, copied (and leaked, like the library).
    api: &'static PluginApi,
    /// The plugin crate's name, for the log.
    krate: String,
    /// The plugin crate's version, for the log.
    version: String,
}

/// Reads and checks the handshake at `address`: the head alone first, the rest only once the
/// magic value and both versions match.
///
/// # Safety
/// `address` must be the address of a symbol named [`HANDSHAKE_SYMBOL`] that stays mapped for
/// the rest of the process and is at least as large as [`MAGIC`] (the one thing that cannot
/// be checked of a foreign library).
unsafe fn check_handshake(address: *const c_void, shown: &str) -> Result<Checked, LoadError> {
    let not_a_plugin = || LoadError::NotAPlugin {
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
    // SAFETY: with the magic value it is a fibcache handshake, whose head is laid out the same
    // in every ABI version; its strings point to statics of the library.
    let (abi, core) = unsafe { ((*head).abi_version, (*head).core_version.to_string_lossy()) };
    if abi != ABI_VERSION || !core_versions_compatible(&core, crate::VERSION) {
        return Err(LoadError::Incompatible {
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
        return Err(LoadError::PanicAbort {
            path: shown.to_owned(),
        });
    }
    if handshake.api.is_null() {
        return Err(not_a_plugin());
    }
    // SAFETY: the table is a static of the library, as large as its `size` says.
    let api =
        unsafe { read_extensible(handshake.api) }.map_err(|size| LoadError::TableTooSmall {
            path: shown.to_owned(),
            size,
            required: PluginApi::MANDATORY,
        })?;
    // SAFETY: the strings are statics of the library.
    let (krate, version) = unsafe {
        (
            handshake.plugin_crate.to_string_lossy(),
            handshake.plugin_version.to_string_lossy(),
        )
    };
    Ok(Checked {
        api: Box::leak(Box::new(api)),
        krate,
        version,
    })
}

/// Whether a plugin built with `fibcache-core` `plugin` can be loaded by a host built with
/// `host`: the same major version, or below 1.0 the same minor version (Cargo's rule).
fn core_versions_compatible(plugin: &str, host: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
    match (parts(plugin), parts(host)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// Calls the plugin's `init` with the host's log sink.
fn init(api: &'static PluginApi, shown: &str) -> Result<(), LoadError> {
    let (log_ctx, log) = log::host_sink(shown);
    let host = HostApi {
        size: size_of::<HostApi>(),
        max_level: LevelFilter::current().into(),
        log_ctx,
        log: Some(log),
    };
    let (ctx, mut rx) = proxy::completion(api);
    // SAFETY: `host` outlives the call, its log context lives forever, and `ctx` is a fresh
    // completion for `on_done`.
    unsafe { (api.init)(&host, ctx, proxy::on_done) };
    let failed = |message: String| LoadError::Init {
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
fn list(api: &'static PluginApi, shown: &str) -> Result<Vec<(String, String)>, LoadError> {
    // SAFETY: `init` succeeded; these take no pointers but `out`, which is valid.
    let count = unsafe { (api.backend_count)() };
    if count == 0 {
        return Err(LoadError::NoBackends {
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
            return Err(LoadError::Init {
                path: shown.to_owned(),
                message: format!("it cannot describe its backend #{index}"),
            });
        }
        backends.push((name, summary));
    }
    Ok(backends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::guest::{ExportedCrate, Table};

    struct Fixture;

    impl ExportedCrate for Fixture {
        const NAME: &'static str = "host-test";
        const VERSION: &'static str = "0.0.0";
    }

    /// What the host says about a handshake, as a plugin library would export it.
    fn check(handshake: &'static Handshake) -> Result<Checked, LoadError> {
        // SAFETY: a static of this test binary.
        unsafe { check_handshake(std::ptr::from_ref(handshake).cast(), "fixture.so") }
    }

    #[test]
    fn a_handshake_of_this_build_is_accepted() {
        static GOOD: Handshake = Handshake::of::<Fixture>();
        let checked = check(&GOOD).unwrap();
        assert_eq!(checked.krate, "host-test");
        assert_eq!(checked.api.size, size_of::<PluginApi>());
    }

    #[test]
    fn another_abi_version_is_refused_even_with_this_core_version() {
        static NEXT: Handshake = Handshake::of::<Fixture>().abi_version(ABI_VERSION + 1);
        let err = check(&NEXT).unwrap_err();
        let LoadError::Incompatible {
            plugin_abi,
            plugin_core,
            ..
        } = &err
        else {
            panic!("expected Incompatible, got {err:?}");
        };
        assert_eq!(*plugin_abi, ABI_VERSION + 1);
        assert_eq!(plugin_core, crate::VERSION);
    }

    #[test]
    fn a_function_table_smaller_than_the_mandatory_part_is_refused() {
        static SHORT: PluginApi = PluginApi {
            size: 3 * size_of::<usize>(),
            ..Table::<Fixture>::API
        };
        static HANDSHAKE: Handshake = Handshake::new("host-test", "0.0.0", &SHORT);
        let err = check(&HANDSHAKE).unwrap_err();
        assert!(
            matches!(err, LoadError::TableTooSmall { size: 24, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "plugin `fixture.so` has a function table of 24 bytes, fewer than the {} of \
                 plugin ABI {ABI_VERSION}; rebuild it with `export_plugin!` against \
                 fibcache-core {}",
                PluginApi::MANDATORY,
                crate::VERSION
            )
        );
    }

    #[test]
    fn a_symbol_without_the_magic_value_is_not_a_plugin() {
        static NOT_MAGIC: [u64; 8] = [7; 8];
        // SAFETY: a static of 64 bytes, aligned as a handshake is.
        let err = unsafe { check_handshake(NOT_MAGIC.as_ptr().cast(), "x.so") }.unwrap_err();
        assert!(matches!(err, LoadError::NotAPlugin { .. }), "{err:?}");
    }

    #[test]
    fn core_versions_follow_cargo_compatibility() {
        assert!(core_versions_compatible("0.1.0", "0.1.7"));
        assert!(!core_versions_compatible("0.1.0", "0.2.0"));
        assert!(core_versions_compatible("1.2.0", "1.9.3"));
        assert!(!core_versions_compatible("1.2.0", "2.0.0"));
        assert!(core_versions_compatible("0.3.1-rc.1", "0.3.0"));
        assert!(!core_versions_compatible("garbage", "0.1.0"));
    }
}
