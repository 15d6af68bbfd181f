//! Reloading native plugins: [`Plugins::reload`] reads every library file again and swaps in
//! the new version of each one whose content changed.
//!
//! - **The swap.** Each file's backends reach its current version through one [`Slot`]; the
//!   registry does not change. A reload puts the new version in the slot; each cache moves to
//!   it on its next call, on a fresh instance of the new version created with the cache's own
//!   configuration (a call in flight finishes on the instance it started on, which is released
//!   when its last call returns).
//! - **Checked first.** The new version is loaded and checked as at start-up (handshake, ABI
//!   version, `init`, the backend list), must export the same backend names, and must create
//!   an instance of every backend in use with the configuration that backend was created with,
//!   offering the same optional capabilities. Otherwise the old version keeps serving.
//! - **Never unloaded.** A library cannot be unloaded safely (see the module documentation of
//!   the host), and every version is loaded from a private copy of the file, removed once
//!   mapped (the loader maps a path only once). Each new content therefore keeps
//!   one more copy of the library mapped, with its runtime's threads, for the rest of the
//!   process. A content mapped before (swapping back to an earlier version) is reused, at no
//!   cost; at most [`MAX_RELOADS`] new contents of one file are mapped, and past that a reload
//!   of a new content fails, saying so, until a restart. A content that failed is not tried
//!   again until the file changes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::abi::{Capabilities, PluginApi};
use super::host;
use super::proxy;
use crate::reload::{ContentHash, LoadedFile, Reload, ReloadOutcome};
use crate::Config;

/// The most new contents of one native plugin file a process loads after start-up (each keeps
/// a copy of the library mapped; see the module documentation).
pub const MAX_RELOADS: usize = 8;

/// How long a reload waits for the new version to create an instance of a backend in use.
const TRIAL_LIMIT: Duration = Duration::from_secs(5);

/// One loaded version of a plugin file.
pub(super) struct Version {
    /// 0 for the version loaded at start-up, then one more for each reload.
    pub(super) number: u64,
    pub(super) api: &'static PluginApi,
    /// Its backends, in its order (the `index` of `create`).
    pub(super) names: Vec<String>,
}

impl Version {
    /// The index of the backend `name` in this version.
    pub(super) fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// The current version of one plugin file, shared by the factories and caches of its
/// backends.
pub(super) struct Slot {
    current: Mutex<Arc<Version>>,
    /// A copy of the current version's number, read by every call without the lock.
    version: AtomicU64,
    /// Each backend created so far, with the configuration it was last created with and the
    /// capabilities its instance offered: a reload creates each in the new version first.
    created: Mutex<Vec<(String, Config, Capabilities)>>,
}

impl Slot {
    pub(super) fn new(api: &'static PluginApi, names: Vec<String>) -> Slot {
        Slot {
            current: Mutex::new(Arc::new(Version {
                number: 0,
                api,
                names,
            })),
            version: AtomicU64::new(0),
            created: Mutex::new(Vec::new()),
        }
    }

    /// The current version's number, cheaply.
    pub(super) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current version.
    pub(super) fn current(&self) -> Arc<Version> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records that the backend `name` was created with `config`, offering `capabilities`.
    pub(super) fn record_created(&self, name: &str, config: &Config, capabilities: Capabilities) {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        let entry = (name.to_owned(), config.clone(), capabilities);
        match created.iter_mut().find(|(n, _, _)| n == name) {
            Some(slot) => *slot = entry,
            None => created.push(entry),
        }
    }

    fn created(&self) -> Vec<(String, Config, Capabilities)> {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn swap(&self, api: &'static PluginApi, names: Vec<String>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let number = current.number + 1;
        *current = Arc::new(Version { number, api, names });
        self.version.store(number, Ordering::Release);
    }
}

/// The native plugins [`load_plugins`](super::load_plugins) loaded, kept to reload them.
#[derive(Default)]
pub struct Plugins {
    pub(super) files: Vec<File>,
}

/// One library file and where its current version lives.
pub(super) struct File {
    pub(super) path: PathBuf,
    /// Of the content serving: an unchanged file is not loaded again.
    pub(super) hash: ContentHash,
    /// A content that failed to load and why: not loaded again while the file has it.
    pub(super) failed: Option<(ContentHash, String)>,
    /// Every content of the file mapped so far (the first at start-up), to swap back to one
    /// at no cost (see [`MAX_RELOADS`]).
    pub(super) mapped: Vec<Mapped>,
    /// How many copies reloads have given the loader, refused ones included (each stays
    /// mapped; see [`MAX_RELOADS`]).
    pub(super) copies: usize,
    pub(super) slot: Arc<Slot>,
}

/// One content of a plugin file, mapped: its hash, functions and backends.
pub(super) struct Mapped {
    pub(super) hash: ContentHash,
    pub(super) api: &'static PluginApi,
    pub(super) names: Vec<String>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.loaded()).finish()
    }
}

impl Plugins {
    /// How many plugin files are loaded.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no plugin file is loaded.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Each plugin file with the hash of the version serving now.
    pub fn loaded(&self) -> Vec<LoadedFile> {
        self.files
            .iter()
            .map(|file| LoadedFile::new(&file.path, "native", file.hash))
            .collect()
    }

    /// Reads every file again and swaps in each changed one that loads, exports the same
    /// backends, and creates an instance of each backend in use with its configuration and
    /// capabilities (see the module documentation). Loading runs on tokio's blocking threads.
    pub async fn reload(&mut self) -> Vec<Reload> {
        let mut reloads = Vec::with_capacity(self.files.len());
        for file in &mut self.files {
            let outcome = reload_one(file).await;
            reloads.push(Reload {
                path: file.path.clone(),
                outcome,
            });
        }
        reloads
    }
}

/// What loading a file's content found.
enum Read {
    Unchanged,
    /// The content and its hash.
    Changed(Vec<u8>, ContentHash),
}

async fn reload_one(file: &mut File) -> ReloadOutcome {
    let path = file.path.clone();
    let serving = file.hash;
    let read = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
        Ok(bytes) => {
            let hash = ContentHash::of(&bytes);
            Ok(if hash == serving {
                Read::Unchanged
            } else {
                Read::Changed(bytes, hash)
            })
        }
        Err(err) => Err(format!("cannot read it: {err}")),
    })
    .await;
    let (bytes, hash) = match read {
        Ok(Ok(Read::Unchanged)) => return ReloadOutcome::Unchanged,
        Ok(Ok(Read::Changed(bytes, hash))) => (bytes, hash),
        Ok(Err(reason)) => return ReloadOutcome::Failed(reason),
        Err(_) => return ReloadOutcome::Failed("reading it panicked".to_owned()),
    };
    if let Some((failed, reason)) = &file.failed {
        if *failed == hash {
            return ReloadOutcome::Failed(format!("unchanged since it failed: {reason}"));
        }
    }
    let outcome = swap_in(file, bytes, hash).await;
    match &outcome {
        Ok(()) => {
            file.hash = hash;
            file.failed = None;
            ReloadOutcome::Reloaded
        }
        Err(reason) => {
            file.failed = Some((hash, reason.clone()));
            ReloadOutcome::Failed(reason.clone())
        }
    }
}

/// Loads `bytes` (whose hash is `hash`) as the new version of `file`, or finds it mapped
/// already, checks it, and swaps it in.
async fn swap_in(file: &mut File, bytes: Vec<u8>, hash: ContentHash) -> Result<(), String> {
    let (api, names) = match file.mapped.iter().find(|mapped| mapped.hash == hash) {
        Some(mapped) => (mapped.api, mapped.names.clone()),
        None => {
            if file.copies >= MAX_RELOADS {
                return Err(format!(
                    "{MAX_RELOADS} new versions of it were loaded already, the most for a \
                     native plugin (each keeps a copy of the library mapped); restart to load \
                     another"
                ));
            }
            file.copies += 1;
            let shown = file.path.display().to_string();
            let (api, backends) = tokio::task::spawn_blocking(move || {
                host::open_copy(&bytes, &shown)
                    .map_err(|refusal| super::LoadError::from(refusal).to_string())
            })
            .await
            .map_err(|_| "loading it panicked".to_owned())??;
            let names: Vec<String> = backends.into_iter().map(|(name, _)| name).collect();
            file.mapped.push(Mapped {
                hash,
                api,
                names: names.clone(),
            });
            (api, names)
        }
    };
    let current = file.slot.current();
    let (mut new, mut old) = (names.clone(), current.names.clone());
    new.sort_unstable();
    old.sort_unstable();
    if new != old {
        return Err(format!(
            "it now exports {} instead of {}; restart to change the backends",
            new.join(", "),
            old.join(", ")
        ));
    }
    let trial = Version {
        number: current.number + 1,
        api,
        names: names.clone(),
    };
    for (name, config, capabilities) in file.slot.created() {
        let created = tokio::time::timeout(TRIAL_LIMIT, proxy::open(&trial, &name, &config)).await;
        let live = match created {
            Ok(Ok(live)) => live,
            Ok(Err(err)) => {
                return Err(format!(
                    "its new version does not create the backend {name} in use: {}",
                    err.chain()
                ))
            }
            Err(_) => {
                return Err(format!(
                    "its new version did not create the backend {name} within {TRIAL_LIMIT:?}"
                ))
            }
        };
        if live.ask_capabilities() != capabilities {
            return Err(format!(
                "its new version offers other optional capabilities for {name} (expiry, \
                 claims); restart to apply"
            ));
        }
    }
    file.slot.swap(api, names);
    Ok(())
}
