//! Loading `--plugin` files (shared libraries with `dynamic`, `.wasm` components with `wasm`)
//! and reloading the components on SIGHUP.

use std::path::PathBuf;

use fibcache_core::Registry;

use super::{startup, Args};
use crate::App;

/// The WebAssembly components loaded, kept to reload them on SIGHUP (nothing without `wasm`).
#[cfg(feature = "wasm")]
pub(super) type Reloadable = fibcache_wasm::Plugins;
#[cfg(not(feature = "wasm"))]
pub(super) type Reloadable = ();

/// Loads every `--plugin`: `.wasm` files as WebAssembly components, others as shared
/// libraries; either kind without its feature is a start-up error naming the feature.
pub(super) fn load_plugins(args: &Args, registry: &mut Registry) -> anyhow::Result<Reloadable> {
    let (wasm, native): (Vec<PathBuf>, Vec<PathBuf>) = args
        .plugins
        .iter()
        .cloned()
        .partition(|path| path.extension().is_some_and(|ext| ext == "wasm"));
    load_native(&native, registry)?;
    load_wasm(args, &wasm, registry)
}

#[cfg(feature = "dynamic")]
fn load_native(plugins: &[PathBuf], registry: &mut Registry) -> anyhow::Result<()> {
    fibcache_core::plugin::load_plugins(plugins, registry).map_err(startup)
}

#[cfg(not(feature = "dynamic"))]
fn load_native(plugins: &[PathBuf], _registry: &mut Registry) -> anyhow::Result<()> {
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
) -> anyhow::Result<Reloadable> {
    let limits = fibcache_wasm::Limits::default().with_max_memory(args.wasm_max_memory);
    fibcache_wasm::load_plugins(plugins, registry, &limits).map_err(startup)
}

#[cfg(not(feature = "wasm"))]
fn load_wasm(
    _args: &Args,
    plugins: &[PathBuf],
    _registry: &mut Registry,
) -> anyhow::Result<Reloadable> {
    match plugins.first() {
        None => Ok(()),
        Some(path) => Err(startup(format!(
            "cannot load WebAssembly plugin {}: this binary was built without WebAssembly \
             support; rebuild with `--features wasm`",
            path.display()
        ))),
    }
}

/// On each SIGHUP, reloads every WebAssembly component whose file changed (off the async
/// workers), logging and counting each file's outcome. Reloads run one after another: a
/// SIGHUP that arrives during one is queued (signals arriving meanwhile count as one).
#[cfg(all(feature = "wasm", unix))]
pub(super) fn reload_on_sighup(
    mut plugins: fibcache_wasm::Plugins,
    app: App,
) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    if plugins.is_empty() {
        return None;
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
            tracing::info!(
                signal = "SIGHUP",
                files = plugins.len(),
                "reloading plugins"
            );
            let reloaded = tokio::task::spawn_blocking(move || {
                let reloads = plugins.reload();
                (plugins, reloads)
            })
            .await;
            let Ok((back, reloads)) = reloaded else {
                tracing::error!("a plugin reload panicked; SIGHUP no longer reloads");
                return;
            };
            plugins = back;
            for reload in reloads {
                app.metrics().plugin_reloaded(reload.outcome.label());
                let path = reload.path.display();
                match reload.outcome {
                    fibcache_wasm::ReloadOutcome::Failed(reason) => tracing::warn!(
                        %path, cause = %reason, "plugin not reloaded; the old version serves"
                    ),
                    outcome => tracing::info!(%path, outcome = outcome.label(), "plugin reload"),
                }
            }
        }
    }))
}

#[cfg(not(all(feature = "wasm", unix)))]
pub(super) fn reload_on_sighup(
    _plugins: Reloadable,
    _app: App,
) -> Option<tokio::task::JoinHandle<()>> {
    None
}
