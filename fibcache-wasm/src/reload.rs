//! Reloading: [`Plugins::reload`] reads every component file again and swaps in the new
//! version of each one whose content changed.
//!
//! The swap is one pointer in the file's slot: a cache moves to the new version between two
//! calls (a call in flight finishes on the version it started on), on a fresh instance, so
//! the old version is freed once its last instance is. The registry does not change, so a new
//! version must serve the same backend names with the same optional capabilities, and open
//! every backend in use with the configuration it was opened with; one that does not, or that
//! fails to load, leaves the old version serving. Reloads of one
//! [`Plugins`] never interleave: `reload` takes `&mut self`.

use std::path::PathBuf;
use std::sync::Arc;

use fibcache_core::reload::{ContentHash, LoadedFile, Reload, ReloadOutcome};

use crate::instance::{Host, Live};
use crate::{compile, read, Limits, Slot, LOAD_LIMIT};

/// The components [`load_plugins`](crate::load_plugins) loaded, kept to reload them.
pub struct Plugins {
    /// Made with the first component, so that a process without any starts no thread.
    pub(crate) host: Option<Host>,
    pub(crate) limits: Limits,
    pub(crate) files: Vec<Loaded>,
}

/// One component file and where its current version lives.
pub(crate) struct Loaded {
    pub path: PathBuf,
    /// Of the content last loaded: an unchanged file is not compiled again.
    pub hash: ContentHash,
    /// Its backends, which a new version must keep.
    pub names: Vec<String>,
    pub slot: Arc<Slot>,
}

impl Plugins {
    /// The shared engine and linker, made on first use.
    pub(crate) fn host(&mut self) -> Result<&Host, String> {
        if self.host.is_none() {
            self.host = Some(Host::new()?);
        }
        Ok(self.host.as_ref().expect("just made"))
    }

    /// How many component files are loaded.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no component file is loaded.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Each component file with the hash of the version serving now.
    pub fn loaded(&self) -> Vec<LoadedFile> {
        self.files
            .iter()
            .map(|file| LoadedFile::new(&file.path, "wasm", file.hash))
            .collect()
    }

    /// Reads every file again; swaps in each changed one that loads, keeps its backends and
    /// capabilities, and opens each backend already in use with the configuration it was
    /// opened with (so that a version that refuses it never serves). Blocks while it compiles (tens of milliseconds a component): call it
    /// off the async workers.
    pub fn reload(&mut self) -> Vec<Reload> {
        let Some(host) = self.host.as_ref() else {
            return Vec::new();
        };
        let limits = &self.limits;
        self.files
            .iter_mut()
            .map(|file| Reload {
                path: file.path.clone(),
                outcome: reload_one(host, limits, file),
            })
            .collect()
    }
}

fn reload_one(host: &Host, limits: &Limits, file: &mut Loaded) -> ReloadOutcome {
    let (bytes, hash) = match read(&file.path) {
        Ok((_, hash)) if hash == file.hash => return ReloadOutcome::Unchanged,
        Ok(read) => read,
        Err(reason) => return ReloadOutcome::Failed(reason),
    };
    let (plugin, infos) = match compile(host, &bytes, limits) {
        Ok(compiled) => compiled,
        Err(reason) => return ReloadOutcome::Failed(reason),
    };
    let mut names: Vec<&str> = infos.iter().map(|info| info.name.as_str()).collect();
    let mut old: Vec<&str> = file.names.iter().map(String::as_str).collect();
    names.sort_unstable();
    old.sort_unstable();
    if names != old {
        return ReloadOutcome::Failed(format!(
            "it now serves {} instead of {}; restart to change the backends",
            names.join(", "),
            old.join(", ")
        ));
    }
    let (_, current) = file.slot.current();
    let capabilities =
        |p: &crate::Plugin| (p.exports.remaining.is_some(), p.exports.claims.is_some());
    if capabilities(&plugin) != capabilities(&current) {
        return ReloadOutcome::Failed(
            "it changes which optional capabilities (expiry, claims) it exports; restart to \
             apply"
                .to_owned(),
        );
    }
    for (name, config) in file.slot.opened() {
        let mut trial = Live::new(plugin.pre.clone(), plugin.max_memory);
        let opened = trial.call(
            &plugin.exports.open,
            (name.clone(), config),
            LOAD_LIMIT,
            |(result,): (std::result::Result<(), String>,)| result,
        );
        let refused = match opened {
            Ok(Ok(())) => continue,
            Ok(Err(refused)) => refused,
            Err(fault) => fault.to_string(),
        };
        return ReloadOutcome::Failed(format!(
            "its new version does not open the backend {name} in use: {refused}"
        ));
    }
    file.slot.swap(plugin);
    file.hash = hash;
    ReloadOutcome::Reloaded
}
