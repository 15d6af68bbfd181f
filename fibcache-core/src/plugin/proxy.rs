//! The host's [`Cache`] for a backend of a loaded plugin: each call goes through the plugin's
//! function table and comes back through a completion callback.
//!
//! A plugin operation completes through [`on_done`], which this module turns into a oneshot
//! channel, so an async worker of the server awaits it like any other future and never blocks
//! on a plugin: the call that starts an operation returns at once (the plugin runs it on its
//! own runtime, see `guest`), and the answer arrives as a wake-up, which the server's time
//! limit can race.
//!
//! The optional capabilities cross too: a [`PluginCache`] offers [`Expiry`] and [`Claims`]
//! when the plugin's table has their entries and the instance says it offers them, asked once
//! when it is created. After a reload (see [`super::reload`]) a [`PluginCache`] moves to the
//! new version at its next call, on a fresh instance offering the same capabilities.
//!
//! Invariants:
//! - Every `ctx` handed to the plugin is a fresh `Pending` (of [`completion`](mod@completion)) that
//!   [`on_done`] frees exactly once (the plugin answers each operation once).
//! - An instance is released exactly once: by the [`Live`] that holds it, when the last call
//!   started on it is done (the cache moved on, or was dropped), or, when nobody can use it
//!   (its `create` was given up, or answered with a failure or with text that is not UTF-8),
//!   by [`on_done`]. An instance pointer in the answer of any other
//!   operation is ignored: it is not known to be fresh.
//! - What an answer carries is checked against a bound before it is copied: a value longer
//!   than the instance's [`Config::max_value_len`] is refused as a failure of the backend
//!   without being read, and any other text is cut to
//!   [`MAX_TEXT_LEN`](completion::MAX_TEXT_LEN).
//! - At most [`MAX_IN_FLIGHT`] operations of one instance are unanswered at once. A plugin
//!   whose runtime is stuck gets operations that the host has long given up on (timed out)
//!   queued on that runtime; past the bound, the host refuses new ones at once as
//!   unavailable ([`Error::unavailable`]) instead of queuing more, so a plugin stuck for
//!   good costs a bounded amount of memory.

mod completion;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::abi::{remaining_from_text, Capabilities, ConfigView, PluginApi, RStr, Status};
use super::reload::{Slot, Version};
use crate::registry::DynFactory;
use crate::{async_trait, Cache, Claims, Config, Error, Expiry, Result};
pub(super) use completion::{completion, on_done, Expect};
#[cfg(test)]
use completion::{copy_answer, MAX_TEXT_LEN};
use completion::{InFlight, InstancePtr, Outcome};

/// The most operations of one instance that may wait for the plugin's answer at once.
pub(super) const MAX_IN_FLIGHT: usize = 4096;

/// The registry factory of the backend `name` of the plugin file whose current version is in
/// `slot`.
pub(super) fn factory(slot: Arc<Slot>, name: &str) -> DynFactory {
    let backend = Arc::new(PluginBackend {
        slot,
        name: Arc::from(name),
    });
    Arc::new(move |config| {
        let backend = backend.clone();
        Box::pin(async move { backend.create(config).await })
    })
}

/// One backend of a loaded plugin; what its registry factory calls.
struct PluginBackend {
    slot: Arc<Slot>,
    name: Arc<str>,
}

impl PluginBackend {
    async fn create(&self, config: &Config) -> Result<Arc<dyn Cache>> {
        let version = self.slot.current();
        let live = open(&version, &self.name, config).await?;
        let capabilities = live.ask_capabilities();
        self.slot.record_created(&self.name, config, capabilities);
        Ok(Arc::new(PluginCache {
            slot: self.slot.clone(),
            name: self.name.clone(),
            config: config.clone(),
            max_value_len: config.max_value_len().map_or(usize::MAX, |max| max.get()),
            capabilities,
            live: Mutex::new(Arc::new(live)),
            moving: AtomicBool::new(false),
            refused: AtomicU64::new(NO_VERSION),
        }))
    }
}

/// Creates an instance of the backend `name` of `version` with `config`.
pub(super) async fn open(version: &Version, name: &str, config: &Config) -> Result<Live> {
    let api = version.api;
    let index = version
        .index_of(name)
        .ok_or_else(|| Error::backend(name, "this version of the plugin does not export it"))?;
    let rx = {
        let view = ConfigView::new(config);
        let (ctx, rx) = completion(api, Expect::Instance, None);
        // SAFETY: the config view outlives the call; `ctx` is a fresh completion.
        unsafe { (api.create)(index, view.as_ffi(), ctx, on_done) };
        rx
    };
    let outcome = rx.await.map_err(|_| vanished(name))?;
    if outcome.status != Status::OK {
        return Err(outcome.status.into_error(name, outcome.text));
    }
    if outcome.instance.0.is_null() {
        return Err(Error::backend(name, "the plugin created no instance"));
    }
    Ok(Live {
        api,
        instance: outcome.instance,
        version: version.number,
        in_flight: Arc::default(),
    })
}

/// The error of an operation whose `done` was dropped without being called.
fn vanished(name: &str) -> Error {
    Error::backend(name, "the plugin dropped an operation without answering")
}

/// No version: what [`PluginCache::refused`] holds until a version is refused.
const NO_VERSION: u64 = u64::MAX;

/// A plugin backend as a host [`Cache`]: an instance of the plugin file's current version,
/// moved to a newer one (a fresh instance) when a reload swaps one in.
struct PluginCache {
    slot: Arc<Slot>,
    /// The registered name, for errors.
    name: Arc<str>,
    /// What the instance was created with, to create one of a newer version.
    config: Config,
    /// [`Config::max_value_len`] of the instance (`usize::MAX` without one): a longer value
    /// is refused before it is copied.
    max_value_len: usize,
    /// What the first instance offers and the table can carry; asked once, as the `Cache`
    /// methods that tell are synchronous. A version whose instance offers other capabilities
    /// is not moved to.
    capabilities: Capabilities,
    /// The instance calls start on; one in flight keeps the instance it started on.
    live: Mutex<Arc<Live>>,
    /// Set while one call creates the instance of a newer version; the others go on with the
    /// current one meanwhile.
    moving: AtomicBool,
    /// A version this cache could not move to (its instance failed or offers other
    /// capabilities): not tried again.
    refused: AtomicU64,
}

/// One instance of one version of a plugin, released when the last call holding it is done.
pub(super) struct Live {
    api: &'static PluginApi,
    instance: InstancePtr,
    /// The number of the version it is an instance of.
    version: u64,
    /// How many operations wait for the plugin's answer (see [`MAX_IN_FLIGHT`]).
    in_flight: Arc<AtomicUsize>,
}

impl Live {
    /// The capabilities the instance says it offers, of those whose entries the table has.
    pub(super) fn ask_capabilities(&self) -> Capabilities {
        let api = self.api;
        let Some(ask) = api.capabilities else {
            return Capabilities::NONE;
        };
        let entries = Capabilities::with_entries(
            api.remaining.is_some(),
            api.claim.is_some() && api.renew.is_some() && api.release_claim.is_some(),
        );
        // SAFETY: the instance is alive; the function answers at once.
        unsafe { ask(self.instance.0) }.and(entries)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // SAFETY: released once, after the last call holding it; operations still running in
        // the plugin hold their own reference to the backend.
        unsafe { (self.api.release)(self.instance.0) };
    }
}

/// Clears a flag when dropped.
struct Clear<'a>(&'a AtomicBool);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl PluginCache {
    /// The instance to start a call on: the current one, or first one of the file's newest
    /// version if a reload swapped one in since (see the type's documentation).
    async fn live(&self) -> Arc<Live> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let newest = self.slot.version();
        if live.version == newest
            || self.refused.load(Ordering::Acquire) == newest
            || self.moving.swap(true, Ordering::AcqRel)
        {
            return live;
        }
        let _moving = Clear(&self.moving);
        let version = self.slot.current();
        let moved = match open(&version, &self.name, &self.config).await {
            Ok(fresh) if fresh.ask_capabilities() == self.capabilities => Ok(Arc::new(fresh)),
            Ok(_) => Err("its instance offers other optional capabilities".to_owned()),
            Err(err) => Err(err.chain()),
        };
        match moved {
            Ok(fresh) => {
                *self.live.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                fresh
            }
            Err(why) => {
                self.refused.store(version.number, Ordering::Release);
                tracing::warn!(
                    backend = %self.name, cause = %why,
                    "cannot move to the plugin's new version; the old one serves"
                );
                live
            }
        }
    }

    /// Runs one operation on `live`: `start` calls the plugin with a fresh `ctx` and returns
    /// at once; the answer is awaited without blocking the thread.
    async fn call(
        &self,
        live: &Live,
        expect: Expect,
        start: impl FnOnce(*mut c_void),
    ) -> Result<Outcome> {
        let in_flight = InFlight::enter(&live.in_flight).ok_or_else(|| {
            Error::unavailable(
                &*self.name,
                format!("the plugin has not answered {MAX_IN_FLIGHT} operations"),
            )
        })?;
        let (ctx, rx) = completion(live.api, expect, Some(in_flight));
        start(ctx);
        let outcome = rx.await.map_err(|_| vanished(&self.name))?;
        if outcome.status == Status::OK || outcome.status == Status::ABSENT {
            Ok(outcome)
        } else {
            Err(outcome.status.into_error(&self.name, outcome.text))
        }
    }

    /// Runs a claim operation; `Ok(true)` when the plugin answered [`Status::OK`].
    async fn claim_op(&self, live: &Live, start: impl FnOnce(*mut c_void)) -> Result<bool> {
        let outcome = self.call(live, Expect::Nothing, start).await?;
        Ok(outcome.status == Status::OK)
    }
}

#[async_trait]
impl Cache for PluginCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let live = self.live().await;
        let outcome = self
            .call(&live, Expect::Value(self.max_value_len), |ctx| {
                // SAFETY: the instance is alive (`live` holds it), the key outlives the call,
                // and `ctx` is a fresh completion.
                unsafe { (live.api.get)(live.instance.0, RStr::new(key), ctx, on_done) }
            })
            .await?;
        Ok((outcome.status == Status::OK).then_some(outcome.text))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let live = self.live().await;
        self.call(&live, Expect::Nothing, |ctx| {
            // SAFETY: as in `get`.
            unsafe {
                (live.api.set)(
                    live.instance.0,
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

    fn expiry(&self) -> Option<&dyn Expiry> {
        self.capabilities.expiry().then_some(self)
    }

    fn claims(&self) -> Option<&dyn Claims> {
        self.capabilities.claims().then_some(self)
    }
}

/// The entry of an optional capability, which [`Live::ask_capabilities`] saw present before
/// offering it (and every version a cache moves to offers the same).
fn entry<F>(entry: Option<F>, name: &str) -> Result<F> {
    entry.ok_or_else(|| Error::backend(name, "the plugin lacks an entry of this capability"))
}

#[async_trait]
impl Expiry for PluginCache {
    async fn remaining(&self, key: &str) -> Result<Option<Duration>> {
        let live = self.live().await;
        let remaining = entry(live.api.remaining, &self.name)?;
        let outcome = self
            .call(&live, Expect::Nothing, |ctx| {
                // SAFETY: as in `get`.
                unsafe { remaining(live.instance.0, RStr::new(key), ctx, on_done) }
            })
            .await?;
        if outcome.status != Status::OK {
            return Ok(None);
        }
        remaining_from_text(&outcome.text).map(Some).ok_or_else(|| {
            Error::backend(
                &*self.name,
                "the plugin answered a remaining lifetime that is not a number of nanoseconds",
            )
        })
    }
}

#[async_trait]
impl Claims for PluginCache {
    async fn claim(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let live = self.live().await;
        let claim = entry(live.api.claim, &self.name)?;
        self.claim_op(&live, |ctx| {
            // SAFETY: as in `get`; the token outlives the call too.
            unsafe {
                claim(
                    live.instance.0,
                    RStr::new(key),
                    RStr::new(token),
                    ttl.into(),
                    ctx,
                    on_done,
                )
            }
        })
        .await
    }

    async fn renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let live = self.live().await;
        let renew = entry(live.api.renew, &self.name)?;
        self.claim_op(&live, |ctx| {
            // SAFETY: as in `claim`.
            unsafe {
                renew(
                    live.instance.0,
                    RStr::new(key),
                    RStr::new(token),
                    ttl.into(),
                    ctx,
                    on_done,
                )
            }
        })
        .await
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool> {
        let live = self.live().await;
        let release = entry(live.api.release_claim, &self.name)?;
        self.claim_op(&live, |ctx| {
            // SAFETY: as in `claim`.
            unsafe {
                release(
                    live.instance.0,
                    RStr::new(key),
                    RStr::new(token),
                    ctx,
                    on_done,
                )
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests;
