//! Loading `--plugin` files (shared libraries with `dynamic`, `.wasm` components with `wasm`),
//! naming each in `fibcache_plugin_info`, and reloading them on SIGHUP.

use std::path::PathBuf;

use fibcache_core::Registry;

use super::{startup, Args};
use crate::App;

/// The plugins loaded, of either kind, kept to reload them on SIGHUP.
#[derive(Default)]
pub(super) struct Reloadable {
    #[cfg(feature = "dynamic")]
    native: fibcache_core::plugin::Plugins,
    #[cfg(feature = "wasm")]
    wasm: Option<fibcache_wasm::Plugins>,
}

impl Reloadable {
    #[cfg(all(any(feature = "dynamic", feature = "wasm"), unix))]
    fn is_empty(&self) -> bool {
        #[allow(unused_mut)]
        let mut empty = true;
        #[cfg(feature = "dynamic")]
        {
            empty &= self.native.is_empty();
        }
        #[cfg(feature = "wasm")]
        {
            empty &= self
                .wasm
                .as_ref()
                .is_none_or(fibcache_wasm::Plugins::is_empty);
        }
        empty
    }

    /// Every plugin file loaded, with the hash of the version serving.
    #[cfg(any(feature = "dynamic", feature = "wasm"))]
    fn loaded(&self) -> Vec<fibcache_core::reload::LoadedFile> {
        #[allow(unused_mut)]
        let mut loaded = Vec::new();
        #[cfg(feature = "dynamic")]
        loaded.extend(self.native.loaded());
        #[cfg(feature = "wasm")]
        if let Some(wasm) = &self.wasm {
            loaded.extend(wasm.loaded());
        }
        loaded
    }

    /// Reads every file again and swaps in each changed one that loads (see the README's
    /// "Reloading"): native libraries first, then components, each off the async workers.
    #[cfg(all(any(feature = "dynamic", feature = "wasm"), unix))]
    async fn reload(&mut self) -> Vec<fibcache_core::reload::Reload> {
        #[allow(unused_mut)]
        let mut reloads = Vec::new();
        #[cfg(feature = "dynamic")]
        reloads.extend(self.native.reload().await);
        #[cfg(feature = "wasm")]
        if let Some(mut wasm) = self.wasm.take() {
            match tokio::task::spawn_blocking(move || {
                let reloads = wasm.reload();
                (wasm, reloads)
            })
            .await
            {
                Ok((back, wasm_reloads)) => {
                    self.wasm = Some(back);
                    reloads.extend(wasm_reloads);
                }
                Err(_) => tracing::error!(
                    "a WebAssembly reload panicked; SIGHUP no longer reloads components"
                ),
            }
        }
        reloads
    }
}

/// Loads every `--plugin`: `.wasm` files as WebAssembly components, others as shared
/// libraries; either kind without its feature is a start-up error naming the feature.
pub(super) fn load_plugins(args: &Args, registry: &mut Registry) -> anyhow::Result<Reloadable> {
    let (wasm, native): (Vec<PathBuf>, Vec<PathBuf>) = args
        .plugins
        .iter()
        .cloned()
        .partition(|path| path.extension().is_some_and(|ext| ext == "wasm"));
    #[allow(unused_mut)]
    let mut reloadable = Reloadable::default();
    load_native(&native, registry, &mut reloadable)?;
    load_wasm(args, &wasm, registry, &mut reloadable)?;
    Ok(reloadable)
}

#[cfg(feature = "dynamic")]
fn load_native(
    plugins: &[PathBuf],
    registry: &mut Registry,
    reloadable: &mut Reloadable,
) -> anyhow::Result<()> {
    reloadable.native = fibcache_core::plugin::load_plugins(plugins, registry).map_err(startup)?;
    Ok(())
}

#[cfg(not(feature = "dynamic"))]
fn load_native(
    plugins: &[PathBuf],
    _registry: &mut Registry,
    _reloadable: &mut Reloadable,
) -> anyhow::Result<()> {
    match plugins.first() {
        None => Ok(()),
        Some(path) => Err(startup(format!(
            "cannot load plugin {}: this binary was built without plugin support; rebuild with \
             `--features dynamic`",
            path.display()
        ))),
    }
}

#[cfg(feature = "wasm")]
fn load_wasm(
    args: &Args,
    plugins: &[PathBuf],
    registry: &mut Registry,
    reloadable: &mut Reloadable,
) -> anyhow::Result<()> {
    let limits = fibcache_wasm::Limits::default().with_max_memory(args.wasm_max_memory);
    let loaded = fibcache_wasm::load_plugins(plugins, registry, &limits).map_err(startup)?;
    reloadable.wasm = Some(loaded);
    Ok(())
}

#[cfg(not(feature = "wasm"))]
fn load_wasm(
    _args: &Args,
    plugins: &[PathBuf],
    _registry: &mut Registry,
    _reloadable: &mut Reloadable,
) -> anyhow::Result<()> {
    match plugins.first() {
        None => Ok(()),
        Some(path) => Err(startup(format!(
            "cannot load WebAssembly plugin {}: this binary was built without WebAssembly \
             support; rebuild with `--features wasm`",
            path.display()
        ))),
    }
}

/// Names `file` in `fibcache_plugin_info` while it is `serving`, or removes its series.
#[cfg(any(feature = "dynamic", feature = "wasm"))]
fn name(app: &App, file: &fibcache_core::reload::LoadedFile, serving: bool) {
    let path = file.path().display().to_string();
    let sha256 = file.hash().to_string();
    app.metrics()
        .plugin_serving(file.kind(), &path, &sha256, serving);
}

/// Names each loaded plugin in `fibcache_plugin_info`, then on each SIGHUP reloads every
/// plugin file whose content changed (off the async workers), logging and counting each
/// file's outcome and renaming what changed. Reloads run one after another: a SIGHUP that
/// arrives during one is queued (signals arriving meanwhile count as one).
#[cfg(all(any(feature = "dynamic", feature = "wasm"), unix))]
pub(super) fn reload_on_sighup(
    mut plugins: Reloadable,
    app: App,
) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    if plugins.is_empty() {
        return None;
    }
    let mut loaded = plugins.loaded();
    for file in &loaded {
        name(&app, file, true);
    }
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(err) => {
            tracing::warn!(cause = %err, "cannot listen for SIGHUP; plugins will not reload");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(signal = "SIGHUP", files = loaded.len(), "reloading plugins");
            for reload in plugins.reload().await {
                app.metrics().plugin_reloaded(reload.outcome.label());
                let path = reload.path.display();
                match reload.outcome {
                    fibcache_core::reload::ReloadOutcome::Failed(reason) => tracing::warn!(
                        %path, cause = %reason, "plugin not reloaded; the old version serves"
                    ),
                    outcome => tracing::info!(%path, outcome = outcome.label(), "plugin reload"),
                }
            }
            let now = plugins.loaded();
            for file in loaded.iter().filter(|file| !now.contains(file)) {
                name(&app, file, false);
            }
            for file in now.iter().filter(|file| !loaded.contains(file)) {
                name(&app, file, true);
            }
            loaded = now;
        }
    }))
}

/// Without a plugin feature (or off Unix) nothing reloads; the loaded plugins are still named.
#[cfg(not(all(any(feature = "dynamic", feature = "wasm"), unix)))]
pub(super) fn reload_on_sighup(
    _plugins: Reloadable,
    _app: App,
) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(any(feature = "dynamic", feature = "wasm"))]
    for file in _plugins.loaded() {
        name(&_app, &file, true);
    }
    None
}
