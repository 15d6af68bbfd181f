//! The host's [`Cache`] for a backend of a loaded plugin: each call goes through the plugin's
//! function table and comes back through a completion callback.
//!
//! A plugin operation completes through [`on_done`], which this module turns into a oneshot
//! channel, so an async worker of the server awaits it like any other future and never blocks
//! on a plugin.
//!
//! Invariants: every `ctx` handed to the plugin is a fresh [`Pending`] that [`on_done`] frees
//! exactly once (the plugin answers each operation once); an instance is released exactly
//! once, by the [`PluginCache`] that owns it or, when nobody waits for its `create` any more,
//! by [`on_done`].

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::abi::{ConfigView, Instance, PluginApi, RStr, Status};
use crate::registry::DynFactory;
use crate::{async_trait, Cache, Config, Error, Result};

/// The registry factory of the backend `index` of a plugin whose functions are `api`.
pub(super) fn factory(api: &'static PluginApi, index: usize, name: &str) -> DynFactory {
    let backend = Arc::new(PluginBackend {
        api,
        index,
        name: Arc::from(name),
    });
    Arc::new(move |config| {
        let backend = backend.clone();
        Box::pin(async move { backend.create(config).await })
    })
}

/// What a plugin answered through its `done` callback, copied.
pub(super) struct Outcome {
    pub(super) status: Status,
    pub(super) text: String,
    instance: InstancePtr,
}

/// The `ctx` of one operation: where to send its outcome.
struct Pending {
    tx: oneshot::Sender<Outcome>,
    /// To release an instance that arrives after its `create` was given up.
    api: &'static PluginApi,
}

/// A fresh `ctx` for [`on_done`] and the receiver of its outcome.
pub(super) fn completion(api: &'static PluginApi) -> (*mut c_void, oneshot::Receiver<Outcome>) {
    let (tx, rx) = oneshot::channel();
    let ctx = Box::into_raw(Box::new(Pending { tx, api }));
    (ctx.cast(), rx)
}

/// The `done` callback of every operation: copies the answer and sends it to the waiting
/// future. Runs on whichever thread the plugin completes on; never blocks.
pub(super) unsafe extern "C" fn on_done(
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
    async fn create(&self, config: &Config) -> Result<Arc<dyn Cache>> {
        let rx = {
            let view = ConfigView::new(config);
            let (ctx, rx) = completion(self.api);
            // SAFETY: the config view outlives the call; `ctx` is a fresh completion.
            unsafe { (self.api.create)(self.index, view.as_ffi(), ctx, on_done) };
            rx
        };
        let outcome = rx.await.map_err(|_| vanished(&self.name))?;
        if outcome.status != Status::OK {
            return Err(outcome.status.into_error(&self.name, outcome.text));
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
}

/// The error of an operation whose `done` was dropped without being called.
fn vanished(name: &str) -> Error {
    Error::backend(name, "the plugin dropped an operation without answering")
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
    async fn call(&self, start: impl FnOnce(*mut c_void)) -> Result<Outcome> {
        let (ctx, rx) = completion(self.api);
        start(ctx);
        let outcome = rx.await.map_err(|_| vanished(&self.name))?;
        if outcome.status == Status::OK || outcome.status == Status::ABSENT {
            Ok(outcome)
        } else {
            Err(outcome.status.into_error(&self.name, outcome.text))
        }
    }
}

#[async_trait]
impl Cache for PluginCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let outcome = self
            .call(|ctx| {
                // SAFETY: the instance is alive (released only in `drop`), the key outlives
                // the call, and `ctx` is a fresh completion.
                unsafe { (self.api.get)(self.instance.0, RStr::new(key), ctx, on_done) }
            })
            .await?;
        Ok((outcome.status == Status::OK).then_some(outcome.text))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
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
