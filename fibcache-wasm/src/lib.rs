//! Sandboxed WebAssembly component backends for fibcache: the wasmtime host of `wit/cache.wit`.
//!
//! A native plugin (`fibcache_core::plugin`) is fast but shares the server's address space and
//! threads: one that loops stalls a worker, one that corrupts memory corrupts the server. A
//! component written against the WIT world `fibcache:cache` runs in a sandbox instead: it is
//! granted no filesystem, network or environment, its memory is capped, every call is
//! interrupted at the operation's time limit, and a trap costs one call (a miss) and a fresh
//! instance. The same `.wasm` file runs on every platform, and can be written in any language
//! that targets the component model. Its backends join the same [`Registry`] as the built-in
//! ones, selected by name.
//!
//! # Overview
//! - [`load_plugins`] compiles each component, checks its world and version, asks it which
//!   backends it serves, and adds them to a registry with [`Origin::Wasm`].
//! - [`Limits`]: what each instance may use (memory; time comes from
//!   [`Config::op_timeout`](fibcache_core::Config::op_timeout)).
//! - [`WasmCache`]: one backend, served by one instance on a thread of its own.
//!
//! Guarantees: a guest never runs on the caller's thread; a call returns within the
//! operation's time limit plus one epoch tick (5 ms); a value longer than
//! [`Config::max_value_len`](fibcache_core::Config::max_value_len) is refused, after a copy
//! that the memory cap bounds (wasmtime frees the guest's copy before the host can measure it
//! in place). Not guaranteed: state surviving a trap (the instance is re-created empty).
//!
//! # Example
//! ```no_run
//! use fibcache_core::{Config, Registry};
//! use fibcache_wasm::{load_plugins, Limits};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = Registry::new()?;
//! load_plugins(&["memcache.wasm".into()], &mut registry, &Limits::default())?;
//! let cache = registry.create("memcache", &Config::default()).await?;
//! cache.set("fib:10", "55", std::time::Duration::from_secs(15)).await?;
//! assert_eq!(cache.get("fib:10").await?.as_deref(), Some("55"));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod instance;
mod reload;
mod world;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fibcache_core::reload::ContentHash;
use fibcache_core::{Backend, Origin, Registry};
use wasmtime::component::{Component, InstancePre};

pub use cache::WasmCache;
pub use fibcache_core::reload::{Reload, ReloadOutcome};
pub use reload::Plugins;
pub use world::{PACKAGE, VERSION};

use instance::{one_line, Host, Live, Sandbox};
use world::Exports;

/// The memory cap of an instance unless set: 64 MiB.
pub const DEFAULT_MAX_MEMORY: usize = 64 << 20;

/// What each instance of a component may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of linear memory per instance (`--wasm-max-memory`).
    max_memory: usize,
}

impl Default for Limits {
    /// [`DEFAULT_MAX_MEMORY`].
    fn default() -> Self {
        Limits {
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

impl Limits {
    /// Caps the linear memory of each instance at `bytes`.
    pub fn with_max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }

    /// The memory cap of each instance, in bytes.
    pub fn max_memory(&self) -> usize {
        self.max_memory
    }
}

/// Parses a memory size for `--wasm-max-memory`: bytes, or a number with a unit `KiB`, `MiB`,
/// `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000), such as `64MiB`.
///
/// ```
/// assert_eq!(fibcache_wasm::parse_size("64MiB"), Ok(64 << 20));
/// assert_eq!(fibcache_wasm::parse_size("1500"), Ok(1500));
/// assert!(fibcache_wasm::parse_size("0").is_err());
/// ```
///
/// # Errors
/// A message naming the accepted forms when `text` is none of them, zero, or too large.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{text:?} is not a size (e.g. 64MiB, 512KiB, 1048576)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is not a positive size (e.g. 64MiB, 512KiB, 1048576)"))
}

/// A component that could not be loaded: its path and why, on one line.
#[derive(Debug, thiserror::Error)]
#[error("cannot load WebAssembly plugin {path}: {reason}")]
pub struct LoadError {
    path: PathBuf,
    reason: String,
}

impl LoadError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        LoadError {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// The file that failed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why, without the path.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A compiled, linked component: what every cache of its backends instantiates.
pub(crate) struct Plugin {
    pre: InstancePre<Sandbox>,
    exports: Exports,
    max_memory: usize,
}

/// The current version of one component file, shared by the factories and caches of its
/// backends, so that a reload reaches every cache without the registry changing.
pub(crate) struct Slot {
    current: Mutex<(u64, Arc<Plugin>)>,
    /// A copy of the version in `current`, read by every call without taking the lock.
    version: AtomicU64,
    /// Each backend opened so far with the configuration it was last opened with: a reload
    /// opens them in the new version before swapping it in.
    opened: Mutex<Vec<(String, cache::GuestConfig)>>,
}

impl Slot {
    fn new(plugin: Plugin) -> Slot {
        Slot {
            current: Mutex::new((0, Arc::new(plugin))),
            version: AtomicU64::new(0),
            opened: Mutex::new(Vec::new()),
        }
    }

    /// Records that the backend `name` was opened with `config`.
    pub(crate) fn record_open(&self, name: &str, config: &cache::GuestConfig) {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        match opened.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = config.clone(),
            None => opened.push((name.to_owned(), config.clone())),
        }
    }

    /// Each backend opened so far, with the configuration it was last opened with.
    pub(crate) fn opened(&self) -> Vec<(String, cache::GuestConfig)> {
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current version's number, cheaply.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current version and its number.
    pub(crate) fn current(&self) -> (u64, Arc<Plugin>) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (current.0, current.1.clone())
    }

    fn swap(&self, plugin: Plugin) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = (current.0 + 1, Arc::new(plugin));
        self.version.store(current.0, Ordering::Release);
    }
}

/// How long loading may run the guest's `backends` function.
pub(crate) const LOAD_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A backend a component offers, as its `backends` function lists it.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
struct Info {
    name: String,
    summary: String,
}

/// Loads each component in `paths` and adds its backends to `registry`, marked
/// [`Origin::Wasm`] with the path as given. The returned [`Plugins`] reloads them.
///
/// # Errors
/// The first file that cannot be read, is not a component, is a component of another world or
/// of an incompatible version of `fibcache:cache`, imports more than WASI, traps or runs past
/// its limit when asked for its backends, names none, or names one the registry already has.
pub fn load_plugins(
    paths: &[PathBuf],
    registry: &mut Registry,
    limits: &Limits,
) -> Result<Plugins, LoadError> {
    let mut plugins = Plugins {
        host: None,
        limits: limits.clone(),
        files: Vec::new(),
    };
    for path in paths {
        let fail = |reason: String| LoadError::new(path, reason);
        let host = plugins.host().map_err(|e| LoadError::new(path, e))?;
        let (bytes, hash) = read(path).map_err(fail)?;
        let (plugin, infos) = compile(host, &bytes, limits).map_err(fail)?;
        let slot = Arc::new(Slot::new(plugin));
        let origin = Origin::Wasm {
            path: path.display().to_string(),
        };
        let mut names = Vec::new();
        for info in infos {
            let slot = slot.clone();
            let name = info.name.clone();
            let factory: fibcache_core::registry::DynFactory = Arc::new(move |config| {
                let slot = slot.clone();
                let name = name.clone();
                Box::pin(async move {
                    let cache = WasmCache::open(slot, &name, config).await?;
                    Ok(Arc::new(cache) as Arc<dyn fibcache_core::Cache>)
                })
            });
            names.push(info.name.clone());
            registry
                .add(Backend::new(
                    info.name,
                    info.summary,
                    origin.clone(),
                    factory,
                ))
                .map_err(|e| fail(e.to_string()))?;
        }
        plugins.files.push(reload::Loaded {
            path: path.clone(),
            hash,
            names,
            slot,
        });
    }
    Ok(plugins)
}

/// Reads the component file at `path`: its content and the content's hash.
fn read(path: &Path) -> Result<(Vec<u8>, ContentHash), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let hash = ContentHash::of(&bytes);
    Ok((bytes, hash))
}

/// Compiles and checks the component `bytes`, and lists its backends.
fn compile(host: &Host, bytes: &[u8], limits: &Limits) -> Result<(Plugin, Vec<Info>), String> {
    let component = Component::new(&host.engine, bytes)
        .map_err(|e| format!("not a valid WebAssembly component: {}", one_line(&e)))?;
    let exports = Exports::of(&component, &host.engine)?;
    let pre = host
        .linker
        .instantiate_pre(&component)
        .map_err(|e| format!("it needs more than the sandbox offers: {}", one_line(&e)))?;
    let mut live = Live::new(pre.clone(), limits.max_memory);
    let infos = live
        .call(
            &exports.backends,
            (),
            LOAD_LIMIT,
            |(infos,): (Vec<Info>,)| infos,
        )
        .map_err(|fault| format!("asking for its backends: {fault}"))?;
    if infos.is_empty() {
        return Err("it names no backend (its `backends` list is empty)".into());
    }
    if let Some(bad) = infos
        .iter()
        .find(|info| info.name.is_empty() || info.name.contains(['+', ' ']))
    {
        return Err(format!("it names a backend {:?}", bad.name));
    }
    let plugin = Plugin {
        pre,
        exports,
        max_memory: limits.max_memory,
    };
    Ok((plugin, infos))
}
