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
//! when it is created.
//!
//! Invariants:
//! - Every `ctx` handed to the plugin is a fresh [`Pending`] that [`on_done`] frees exactly
//!   once (the plugin answers each operation once).
//! - An instance is released exactly once: by the [`PluginCache`] that owns it or, when
//!   nobody can use it (its `create` was given up, or answered with a failure or with text
//!   that is not UTF-8), by [`on_done`]. An instance pointer in the answer of any other
//!   operation is ignored: it is not known to be fresh.
//! - What an answer carries is checked against a bound before it is copied: a value longer
//!   than the instance's [`Config::max_value_len`] is refused as a failure of the backend
//!   without being read, and any other text is cut to [`MAX_TEXT_LEN`].
//! - At most [`MAX_IN_FLIGHT`] operations of one instance are unanswered at once. A plugin
//!   whose runtime is stuck gets operations that the host has long given up on (timed out)
//!   queued on that runtime; past the bound, the host refuses new ones at once as
//!   unavailable ([`Error::unavailable`]) instead of queuing more, so a plugin stuck for
//!   good costs a bounded amount of memory.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::abi::{
    remaining_from_text, Capabilities, ConfigView, Instance, PluginApi, RStr, Status,
};
use crate::registry::DynFactory;
use crate::{async_trait, Cache, Claims, Config, Error, Expiry, Result};

/// The longest text of an answer that is not a value (an error message, a remaining
/// lifetime) the host copies; a longer one is cut.
pub(super) const MAX_TEXT_LEN: usize = 4096;

/// The most operations of one instance that may wait for the plugin's answer at once.
pub(super) const MAX_IN_FLIGHT: usize = 4096;

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

/// What an operation may answer besides its status: this decides what [`on_done`] copies and
/// keeps.
#[derive(Clone, Copy, Debug)]
pub(super) enum Expect {
    /// A value of at most this many bytes (`get`).
    Value(usize),
    /// A new instance (`create`).
    Instance,
    /// Nothing but a short text (every other operation).
    Nothing,
}

/// The `ctx` of one operation: where to send its outcome.
struct Pending {
    tx: oneshot::Sender<Outcome>,
    /// To release an instance that nobody will use.
    api: &'static PluginApi,
    expect: Expect,
    /// The instance's count of unanswered operations, which this one is in until answered.
    _in_flight: Option<InFlight>,
}

/// A fresh `ctx` for [`on_done`] and the receiver of its outcome.
pub(super) fn completion(
    api: &'static PluginApi,
    expect: Expect,
    in_flight: Option<InFlight>,
) -> (*mut c_void, oneshot::Receiver<Outcome>) {
    let (tx, rx) = oneshot::channel();
    let pending = Pending {
        tx,
        api,
        expect,
        _in_flight: in_flight,
    };
    (Box::into_raw(Box::new(pending)).cast(), rx)
}

/// One operation counted among an instance's unanswered ones, until it is dropped.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more operation in `count`, unless [`MAX_IN_FLIGHT`] already are.
    fn enter(count: &Arc<AtomicUsize>) -> Option<InFlight> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .ok()?;
        Some(InFlight(count.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The `done` callback of every operation: copies the answer and sends it to the waiting
/// future. Runs on whichever thread the plugin completes on; never blocks.
pub(super) unsafe extern "C" fn on_done(
    ctx: *mut c_void,
    status: Status,
    text: RStr<'_>,
    instance: *const Instance,
) {
    // SAFETY: `ctx` comes from `completion` and the plugin calls `done` once per operation.
    let pending = unsafe { Box::from_raw(ctx.cast::<Pending>()) };
    // SAFETY: `text` is valid for the duration of this call.
    let (status, text) = unsafe { copy_answer(status, text, pending.expect) };
    let fresh = match pending.expect {
        Expect::Instance => instance,
        Expect::Value(_) | Expect::Nothing => std::ptr::null(),
    };
    let outcome = Outcome {
        status,
        text,
        instance: InstancePtr(if status == Status::OK {
            fresh
        } else {
            std::ptr::null()
        }),
    };
    let unwanted = match pending.tx.send(outcome) {
        // A failed `create` (or one whose text was refused) cannot hand its instance over.
        Ok(()) if status != Status::OK => fresh,
        Ok(()) => std::ptr::null(),
        // Nobody waits any more (the `create` future was dropped).
        Err(unsent) => unsent.instance.0,
    };
    if !unwanted.is_null() {
        // SAFETY: a fresh instance of this plugin that nobody else holds.
        unsafe { (pending.api.release)(unwanted) };
    }
}

/// The status and text of an answer, copied within their bounds: the text of a success (a
/// value) must be UTF-8 and no longer than `expect` allows, or the answer becomes a failure
/// and nothing is copied; the message of a failure is cut to [`MAX_TEXT_LEN`].
///
/// # Safety
/// `text` must be valid for the call.
unsafe fn copy_answer(status: Status, text: RStr<'_>, expect: Expect) -> (Status, String) {
    if status != Status::OK {
        // SAFETY: forwarded to the caller; at most `MAX_TEXT_LEN` bytes are read.
        return (status, unsafe { text.to_string_truncated(MAX_TEXT_LEN) });
    }
    let max = match expect {
        Expect::Value(max) => max,
        Expect::Instance | Expect::Nothing => MAX_TEXT_LEN,
    };
    // SAFETY: forwarded to the caller; nothing is read when the text is too long.
    match unsafe { text.bytes_within(max) }.map(std::str::from_utf8) {
        Ok(Ok(text)) => (status, text.to_owned()),
        Ok(Err(_)) => (
            Status::FAILED,
            "the plugin answered with text that is not UTF-8".to_owned(),
        ),
        Err(len) => (
            Status::FAILED,
            format!(
                "the plugin answered a value of {len} bytes, longer than the {max} this cache \
                 accepts"
            ),
        ),
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
            let (ctx, rx) = completion(self.api, Expect::Instance, None);
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
        let mut cache = PluginCache {
            api: self.api,
            instance: outcome.instance,
            name: self.name.clone(),
            max_value_len: config.max_value_len().map_or(usize::MAX, |max| max.get()),
            capabilities: Capabilities::NONE,
            in_flight: Arc::default(),
        };
        cache.capabilities = cache.ask_capabilities();
        Ok(Arc::new(cache))
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
    /// [`Config::max_value_len`] of the instance (`usize::MAX` without one): a longer value
    /// is refused before it is copied.
    max_value_len: usize,
    /// What the instance offers and the table can carry; asked once, at creation, as the
    /// `Cache` methods that tell are synchronous.
    capabilities: Capabilities,
    /// How many operations wait for the plugin's answer (see [`MAX_IN_FLIGHT`]).
    in_flight: Arc<AtomicUsize>,
}

impl PluginCache {
    /// The capabilities the instance says it offers, of those whose entries the table has.
    fn ask_capabilities(&self) -> Capabilities {
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

    /// Runs one operation: `start` calls the plugin with a fresh `ctx` and returns at once; the
    /// answer is awaited without blocking the thread.
    async fn call(&self, expect: Expect, start: impl FnOnce(*mut c_void)) -> Result<Outcome> {
        let in_flight = InFlight::enter(&self.in_flight).ok_or_else(|| {
            Error::unavailable(
                &*self.name,
                format!("the plugin has not answered {MAX_IN_FLIGHT} operations"),
            )
        })?;
        let (ctx, rx) = completion(self.api, expect, Some(in_flight));
        start(ctx);
        let outcome = rx.await.map_err(|_| vanished(&self.name))?;
        if outcome.status == Status::OK || outcome.status == Status::ABSENT {
            Ok(outcome)
        } else {
            Err(outcome.status.into_error(&self.name, outcome.text))
        }
    }

    /// Runs a claim operation; `Ok(true)` when the plugin answered [`Status::OK`].
    async fn claim_op(&self, start: impl FnOnce(*mut c_void)) -> Result<bool> {
        let outcome = self.call(Expect::Nothing, start).await?;
        Ok(outcome.status == Status::OK)
    }
}

#[async_trait]
impl Cache for PluginCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let outcome = self
            .call(Expect::Value(self.max_value_len), |ctx| {
                // SAFETY: the instance is alive (released only in `drop`), the key outlives
                // the call, and `ctx` is a fresh completion.
                unsafe { (self.api.get)(self.instance.0, RStr::new(key), ctx, on_done) }
            })
            .await?;
        Ok((outcome.status == Status::OK).then_some(outcome.text))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        self.call(Expect::Nothing, |ctx| {
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

    fn expiry(&self) -> Option<&dyn Expiry> {
        self.capabilities.expiry().then_some(self)
    }

    fn claims(&self) -> Option<&dyn Claims> {
        self.capabilities.claims().then_some(self)
    }
}

/// The entry of an optional capability, which [`PluginCache::ask_capabilities`] saw present
/// before offering it.
fn entry<F>(entry: Option<F>, name: &str) -> Result<F> {
    entry.ok_or_else(|| Error::backend(name, "the plugin lacks an entry of this capability"))
}

#[async_trait]
impl Expiry for PluginCache {
    async fn remaining(&self, key: &str) -> Result<Option<Duration>> {
        let remaining = entry(self.api.remaining, &self.name)?;
        let outcome = self
            .call(Expect::Nothing, |ctx| {
                // SAFETY: as in `get`.
                unsafe { remaining(self.instance.0, RStr::new(key), ctx, on_done) }
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
        let claim = entry(self.api.claim, &self.name)?;
        self.claim_op(|ctx| {
            // SAFETY: as in `get`; the token outlives the call too.
            unsafe {
                claim(
                    self.instance.0,
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
        let renew = entry(self.api.renew, &self.name)?;
        self.claim_op(|ctx| {
            // SAFETY: as in `claim`.
            unsafe {
                renew(
                    self.instance.0,
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
        let release = entry(self.api.release_claim, &self.name)?;
        self.claim_op(|ctx| {
            // SAFETY: as in `claim`.
            unsafe {
                release(
                    self.instance.0,
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

impl Drop for PluginCache {
    fn drop(&mut self) {
        // SAFETY: released once, after the last call through this wrapper; operations still
        // running in the plugin hold their own reference to the backend.
        unsafe { (self.api.release)(self.instance.0) };
    }
}

#[cfg(test)]
mod tests;
