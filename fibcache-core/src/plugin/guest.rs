//! The plugin side of the boundary: the `extern "C"` functions behind the handshake that
//! [`export_plugin!`](crate::export_plugin) writes.
//!
//! Each plugin carries its own copy of this module. It owns a small tokio runtime, started by
//! `init`, because the plugin's tokio is not the host's: a future of the plugin can only be
//! driven by a runtime of the plugin's own copy.
//!
//! # Every operation runs on the plugin's runtime, never on the caller's thread
//! An operation (`create`, `get`, `set`, and the capabilities' `remaining`, `claim`, `renew`,
//! `release_claim`) copies its arguments, spawns its future onto the plugin's runtime and
//! returns: the host's thread, an async worker of the server, is back at once whatever the
//! backend does. Polling the future once inline first would save a synchronous backend the
//! thread hop, but the first poll is the backend's own code, and a backend that blocks there
//! (`std::thread::sleep`, a blocking client, a lock held elsewhere; none of which
//! `#![forbid(unsafe_code)]` rules out) would block the server's worker, where no timer of
//! the host can interrupt it. The hop costs a spawn and two wake-ups per operation (one of a
//! plugin thread, one of the waiting host task): an in-memory hit through a plugin goes from
//! well under a microsecond to microseconds or tens of them, the more where threads are
//! parked and cores are shared (`benches/plugin.rs` measures it). That is the price of the
//! guarantee; a server whose hits must be cheapest puts the built-in `memory` tier in front
//! of a plugin.
//!
//! A backend that blocks therefore blocks a thread of its own runtime. When both are
//! blocked, the operations queue on the runtime, the host's calls still return at once, and
//! the host's time limit answers each waiting request (the server then skips the cache for a
//! moment, so only a few operations a second join the queue). The host never waits for the
//! plugin.
//!
//! What this cannot cover, as no loader can: a plugin whose exported functions themselves
//! block, which a plugin written with `export_plugin!` never does. `capabilities`,
//! `backend_count` and `backend_info` run on the caller's thread, at load and once per
//! instance, and only call the cache's `expiry()` and `claims()` or read the registrations.
//!
//! Invariants: every function here catches panics and answers its `done` exactly once (a
//! [`Reply`] that is dropped unsent answers a failure), and copies what it keeps of the
//! host's arguments before it returns or defers anything. How panics are reported: see
//! [`reply`].

use std::ffi::c_void;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::size_of;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Runtime;

use super::abi::{
    answer_of_bool, read_extensible, remaining_to_text, BackendInfo, Capabilities, Done,
    Extensible, FfiConfig, FfiDuration, Handshake, HostApi, Instance, PluginApi, RStr, Status,
    ABI_VERSION,
};
use super::log;
use crate::registry::{Descriptor, Registration};
use crate::{Cache, Error};
use reply::{guarded, install_panic_hook, take, CatchUnwind, Reply};

mod reply;
#[cfg(test)]
mod tests;

/// The crate whose backends a plugin exports: `export_plugin!` implements it for a type of
/// its own, because the `init` of the function table needs the crate's name and a function
/// pointer cannot carry it.
#[doc(hidden)]
pub trait ExportedCrate: 'static {
    /// The crate's `CARGO_PKG_NAME`.
    const NAME: &'static str;
    /// The crate's `CARGO_PKG_VERSION`.
    const VERSION: &'static str;
}

impl Handshake {
    /// The handshake of a plugin that exports the backends of the crate `P`; written by
    /// `export_plugin!`.
    #[doc(hidden)]
    pub const fn of<P: ExportedCrate>() -> Handshake {
        Handshake::new(P::NAME, P::VERSION, &Table::<P>::API)
    }
}

/// Where the function table of the crate `P` lives: an associated constant, so that the
/// handshake can point to it as a `'static`.
pub(super) struct Table<P>(PhantomData<P>);

impl<P: ExportedCrate> Table<P> {
    pub(super) const API: PluginApi = PluginApi {
        size: size_of::<PluginApi>(),
        init: init::<P>,
        backend_count,
        backend_info,
        create,
        get,
        set,
        release,
        capabilities: Some(capabilities),
        remaining: Some(remaining),
        claim: Some(claim),
        renew: Some(renew),
        release_claim: Some(release_claim),
    };
}

/// The backends this library exports, sorted by name; fixed by the first `init`.
static EXPORTED: OnceLock<Vec<&'static Descriptor>> = OnceLock::new();

fn exported() -> &'static [&'static Descriptor] {
    EXPORTED.get().map(Vec::as_slice).unwrap_or(&[])
}

/// `init` for the plugin crate `P`: picks the registrations of that crate, installs the log
/// forwarding and the panic hook, and answers through `done`.
///
/// # Safety
/// `host` must be valid for the call; `done` must be callable with `ctx`; the
/// [`HostApi::log_ctx`] must stay valid for as long as the process runs.
unsafe extern "C" fn init<P: ExportedCrate>(host: *const HostApi, ctx: *mut c_void, done: Done) {
    guarded(Reply { ctx, done }, |slot| {
        // SAFETY: the caller guarantees `host` for the duration of this call.
        let host = match unsafe { read_extensible(host) } {
            Ok(host) => host,
            Err(size) => {
                let message = too_small("host table", size, HostApi::MANDATORY);
                return take(slot).send(Status::FAILED, &message, std::ptr::null());
            }
        };
        EXPORTED.get_or_init(|| {
            let mut mine: Vec<_> = Registration::all()
                .filter(|reg| reg.krate() == P::NAME)
                .collect();
            mine.sort_by_key(|reg| reg.name());
            mine
        });
        // SAFETY: the caller guarantees the log context for as long as the process runs.
        unsafe { log::install(&host) };
        install_panic_hook();
        // Started here, at load, so that no operation pays for it (or fails on it).
        runtime();
        take(slot).send(Status::OK, "", std::ptr::null());
    });
}

/// Why a struct the host wrote cannot be read.
fn too_small(what: &str, size: usize, mandatory: usize) -> String {
    format!(
        "the host's {what} has {size} bytes, fewer than the {mandatory} of plugin ABI \
         {ABI_VERSION}; the host is broken"
    )
}

unsafe extern "C" fn backend_count() -> usize {
    catch_unwind(|| exported().len()).unwrap_or(0)
}

unsafe extern "C" fn backend_info(index: usize, out: *mut BackendInfo) -> Status {
    catch_unwind(AssertUnwindSafe(|| match exported().get(index) {
        Some(reg) => {
            let info = BackendInfo {
                name: RStr::new(reg.name()),
                summary: RStr::new(reg.summary()),
            };
            // SAFETY: the host passes a pointer to a writable `BackendInfo`.
            unsafe { out.write(info) };
            Status::OK
        }
        None => Status::FAILED,
    }))
    .unwrap_or(Status::PANICKED)
}

unsafe extern "C" fn create(index: usize, config: *const FfiConfig, ctx: *mut c_void, done: Done) {
    guarded(Reply { ctx, done }, |slot| {
        // SAFETY: the host passes a config valid for the duration of this call; it is
        // copied here, before anything is deferred.
        let config = match unsafe { read_extensible(config) } {
            // SAFETY: as above, for the strings it points to.
            Ok(config) => unsafe { config.to_config() },
            Err(size) => {
                let message = too_small("config", size, FfiConfig::MANDATORY);
                return take(slot).send(Status::FAILED, &message, std::ptr::null());
            }
        };
        let Some(reg) = exported().get(index) else {
            let message = format!("the plugin has no backend #{index}");
            return take(slot).send(Status::FAILED, &message, std::ptr::null());
        };
        let factory = reg.factory();
        let reply = take(slot);
        drop(runtime().spawn(async move {
            match CatchUnwind(factory(&config)).await {
                Ok(Ok(cache)) => {
                    let instance = Box::into_raw(Box::new(cache)).cast::<Instance>();
                    reply.send(Status::OK, "", instance);
                }
                Ok(Err(err)) => reply.fail(&err),
                Err(panic) => reply.panicked(&panic),
            }
        }));
    });
}

unsafe extern "C" fn get(instance: *const Instance, key: RStr<'_>, ctx: *mut c_void, done: Done) {
    guarded(Reply { ctx, done }, |slot| {
        // SAFETY: the host passes an instance it has not released, and a key valid for the
        // call; both are copied (an `Arc` clone, a `String`) before anything is deferred.
        let (cache, key) = unsafe { (cache_of(instance).clone(), owned(key)) };
        let Some(key) = key else {
            return take(slot).send(Status::FAILED, "key is not UTF-8", std::ptr::null());
        };
        spawn(take(slot), async move {
            Ok(match cache.get(&key).await? {
                Some(value) => (Status::OK, value),
                None => (Status::ABSENT, String::new()),
            })
        });
    });
}

unsafe extern "C" fn set(
    instance: *const Instance,
    key: RStr<'_>,
    value: RStr<'_>,
    ttl: FfiDuration,
    ctx: *mut c_void,
    done: Done,
) {
    guarded(Reply { ctx, done }, |slot| {
        // SAFETY: as in `get`; the strings are copied before anything is deferred.
        let (cache, key, value) = unsafe { (cache_of(instance).clone(), owned(key), owned(value)) };
        let (Some(key), Some(value)) = (key, value) else {
            let message = "key or value is not UTF-8";
            return take(slot).send(Status::FAILED, message, std::ptr::null());
        };
        spawn(take(slot), async move {
            cache.set(&key, &value, ttl.into()).await?;
            Ok((Status::OK, String::new()))
        });
    });
}

unsafe extern "C" fn capabilities(instance: *const Instance) -> Capabilities {
    // SAFETY: the host passes an instance it has not released.
    let cache = unsafe { cache_of(instance) };
    // A panic in `expiry()` or `claims()` offers nothing; it is logged by the panic hook.
    catch_unwind(AssertUnwindSafe(|| Capabilities::of(&**cache))).unwrap_or(Capabilities::NONE)
}

unsafe extern "C" fn remaining(
    instance: *const Instance,
    key: RStr<'_>,
    ctx: *mut c_void,
    done: Done,
) {
    guarded(Reply { ctx, done }, |slot| {
        // SAFETY: as in `get`.
        let (cache, key) = unsafe { (cache_of(instance).clone(), owned(key)) };
        let Some(key) = key else {
            return take(slot).send(Status::FAILED, "key is not UTF-8", std::ptr::null());
        };
        spawn(take(slot), async move {
            let expiry = cache.expiry().ok_or_else(|| not_offered("expiry"))?;
            Ok(match expiry.remaining(&key).await? {
                Some(left) => (Status::OK, remaining_to_text(left)),
                None => (Status::ABSENT, String::new()),
            })
        });
    });
}

/// A claim operation: `claim`, `renew` or `release`.
#[derive(Clone, Copy)]
enum ClaimOp {
    Claim(FfiDuration),
    Renew(FfiDuration),
    Release,
}

unsafe extern "C" fn claim(
    instance: *const Instance,
    key: RStr<'_>,
    token: RStr<'_>,
    ttl: FfiDuration,
    ctx: *mut c_void,
    done: Done,
) {
    // SAFETY: forwarded from the host, under the same contract.
    unsafe {
        claim_op(
            instance,
            key,
            token,
            ClaimOp::Claim(ttl),
            Reply { ctx, done },
        )
    }
}

unsafe extern "C" fn renew(
    instance: *const Instance,
    key: RStr<'_>,
    token: RStr<'_>,
    ttl: FfiDuration,
    ctx: *mut c_void,
    done: Done,
) {
    // SAFETY: as in `claim`.
    unsafe {
        claim_op(
            instance,
            key,
            token,
            ClaimOp::Renew(ttl),
            Reply { ctx, done },
        )
    }
}

unsafe extern "C" fn release_claim(
    instance: *const Instance,
    key: RStr<'_>,
    token: RStr<'_>,
    ctx: *mut c_void,
    done: Done,
) {
    // SAFETY: as in `claim`.
    unsafe { claim_op(instance, key, token, ClaimOp::Release, Reply { ctx, done }) }
}

/// Runs one claim operation on the instance's [`Claims`](crate::Claims).
///
/// # Safety
/// As for `get`: an instance the host has not released, strings valid for the call.
unsafe fn claim_op(
    instance: *const Instance,
    key: RStr<'_>,
    token: RStr<'_>,
    op: ClaimOp,
    reply: Reply,
) {
    guarded(reply, |slot| {
        // SAFETY: see the function's contract; everything is copied before it is deferred.
        let (cache, key, token) = unsafe { (cache_of(instance).clone(), owned(key), owned(token)) };
        let (Some(key), Some(token)) = (key, token) else {
            let message = "key or token is not UTF-8";
            return take(slot).send(Status::FAILED, message, std::ptr::null());
        };
        spawn(take(slot), async move {
            let claims = cache.claims().ok_or_else(|| not_offered("claims"))?;
            let yes = match op {
                ClaimOp::Claim(ttl) => claims.claim(&key, &token, ttl.into()).await?,
                ClaimOp::Renew(ttl) => claims.renew(&key, &token, ttl.into()).await?,
                ClaimOp::Release => claims.release(&key, &token).await?,
            };
            Ok((answer_of_bool(yes), String::new()))
        });
    });
}

/// The failure of an operation of a capability that the instance does not offer (a host that
/// did not ask, or ignored the answer).
fn not_offered(capability: &str) -> Error {
    Error::backend(
        "plugin",
        format!("this instance does not offer the `{capability}` capability"),
    )
}

/// An owned copy of a string the host passed, or `None` when it is not UTF-8.
///
/// # Safety
/// `s` must be valid for the call.
unsafe fn owned(s: RStr<'_>) -> Option<String> {
    // SAFETY: see the function's contract.
    unsafe { s.to_str() }.map(str::to_owned)
}

unsafe extern "C" fn release(instance: *const Instance) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` came from `Box::into_raw` in `create`, and the host releases each
    // instance once, after its last call.
    let cache = unsafe { Box::from_raw(instance.cast::<Arc<dyn Cache>>().cast_mut()) };
    // Dropped on the runtime, like any other of the backend's code: a client's `Drop` may
    // block, or need the runtime it was made in (a connection's task). A panic there is
    // logged by the panic hook; there is nobody else left to tell.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        drop(runtime().spawn(async move { drop(cache) }))
    }));
}

/// The cache behind an instance pointer.
///
/// # Safety
/// `instance` must come from `create` and not be released.
unsafe fn cache_of<'a>(instance: *const Instance) -> &'a Arc<dyn Cache> {
    // SAFETY: see the function's contract.
    unsafe { &*instance.cast::<Arc<dyn Cache>>() }
}

/// The plugin's runtime: two workers, enough for the I/O of a cache client; the computation
/// happens in the host.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fibcache-plugin")
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot start the plugin's tokio runtime: {err}"))
    })
}

/// Runs `op` on the plugin's runtime and answers `reply` with what it returns: a status and
/// its text, an error, or the panic that ended it. Returns at once.
fn spawn(reply: Reply, op: impl Future<Output = crate::Result<(Status, String)>> + Send + 'static) {
    drop(runtime().spawn(async move {
        match CatchUnwind(Box::pin(op)).await {
            Ok(Ok((status, text))) => reply.send(status, &text, std::ptr::null()),
            Ok(Err(err)) => reply.fail(&err),
            Err(panic) => reply.panicked(&panic),
        }
    }));
}
