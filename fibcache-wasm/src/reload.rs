//! Reloading: [`Plugins::reload`] reads every component file again and swaps in the new
//! version of each one whose content changed.
//!
//! The swap is one pointer in the file's slot: a cache moves to the new version between two
//! calls (a call in flight finishes on the version it started on), on a fresh instance, so
//! the old version is freed once its last instance is. The registry does not change, so a new
//! version must serve the same backend names with the same optional capabilities; one that
//! does not, or that fails to load, leaves the old version serving. Reloads of one
//! [`Plugins`] never interleave: `reload` takes `&mut self`.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::instance::Host;
use crate::{compile, Limits, Slot};

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
    pub digest: u64,
    /// Its backends, which a new version must keep.
    pub names: Vec<String>,
    pub slot: Arc<Slot>,
}

/// What a reload did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// The content is what was loaded last: nothing done.
    Unchanged,
    /// The new version was loaded, checked and swapped in.
    Reloaded,
    /// The new version was refused (the reason, one line); the old one still serves.
    Failed(String),
}

impl ReloadOutcome {
    /// `unchanged`, `reloaded` or `failed`: the `outcome` label of a reload counter.
    pub fn label(&self) -> &'static str {
        match self {
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Reloaded => "reloaded",
            ReloadOutcome::Failed(_) => "failed",
        }
    }
}

/// One file's reload.
#[derive(Debug, Clone)]
pub struct Reload {
    /// The file as given to [`load_plugins`](crate::load_plugins).
    pub path: PathBuf,
    /// What happened.
    pub outcome: ReloadOutcome,
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

    /// Reads every file again; swaps in each changed one that loads and keeps its backends
    /// and capabilities. Blocks while it compiles (tens of milliseconds a component): call it
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
    match std::fs::read(&file.path) {
        Ok(bytes) if digest(&bytes) == file.digest => return ReloadOutcome::Unchanged,
        Ok(_) => {}
        Err(err) => return ReloadOutcome::Failed(format!("cannot read it: {err}")),
    }
    let (plugin, infos, digest) = match compile(host, Path::new(&file.path), limits) {
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
    file.slot.swap(plugin);
    file.digest = digest;
    ReloadOutcome::Reloaded
}

/// The digest of a file's content, to tell a changed file from an unchanged one (not a
/// security check: the file is trusted to be what the operator put there).
pub(crate) fn digest(bytes: &[u8]) -> u64 {
    // `new()` has fixed keys: the same content gives the same digest within the process.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}
