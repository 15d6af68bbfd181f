//! The plugin side of the boundary: the `extern "C"` functions behind the handshake that
//! [`export_plugin!`](crate::export_plugin) writes.
//!
//! Each plugin carries its own copy of this module. It owns a small tokio runtime, created the
//! first time an operation needs one, because the plugin's tokio is not the host's: a future
//! of the plugin can only be driven by a runtime of the plugin's own copy.
//!
//! An operation is polled once, inline, on the caller's thread inside that runtime's context;
//! only if it is not finished then is it spawned onto the runtime. A synchronous backend
//! therefore answers before the call returns, with no thread hop, and an asynchronous one
//! (Redis) goes on in the plugin while the host's worker is free.
//!
//! Invariants: every function here catches panics and answers its `done` exactly once (a
//! [`Reply`] that is dropped unsent answers a failure), and copies what it keeps of the
//! host's arguments before it returns or defers anything.
//!
//! # Panics are reported once, by the host
//! A panic inside an operation ([`catch`]) is answered as [`Status::PANICKED`] with its message
//! and location, and the host reports it like any other failure of the backend: for a cache
//! call, through the server's cache guard, which logs one warning a second with the number
//! held back. So the panic hook this module installs stays silent about such a panic; it only
//! hands the location to [`catch`]. Logging it here as well would write one line per panic
//! (a backend that panics on every `get` wrote tens of thousands a second) beside the host's
//! throttled one, and two places would each think they were responsible. The hook logs, as an
//! ERROR event forwarded to the host, only the panics that no reply carries: those outside an
//! operation (a task the backend spawned on the plugin's runtime, a backend's `Drop` in
//! `release`, `backend_count`, `backend_info`) and the rare one that unwinds through a reply
//! before the message could be put in it. Those are not throttled. A panic that the backend
//! catches itself inside an operation is not logged at all, as it is not a failure.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{size_of, ManuallyDrop};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use tokio::runtime::Runtime;

use super::abi::{
    read_extensible, BackendInfo, Done, Extensible, FfiConfig, FfiDuration, Handshake, HostApi,
    Instance, PluginApi, RStr, Status, ABI_VERSION,
};
use super::log;
use crate::registry::{Descriptor, Registration};
use crate::{Cache, Error};

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

thread_local! {
    /// Whether a panic on this thread now is caught by [`catch`] and answered to the host.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of the last panic [`catch`] is about to catch on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Routes the plugin's panic messages (its own `std`'s hook) to the host instead of writing
/// them to stderr behind the host's back: a panic that [`catch`] answers is left to the host
/// (see the module documentation), any other is logged as an ERROR event.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let mut text = panic_message(info.payload());
            if let Some(at) = info.location() {
                text = format!("{text} (at {at})");
            }
            // `try_with`: a panic while the thread's locals are being destroyed is logged.
            if CATCHING.try_with(Cell::get).unwrap_or(false) {
                let _ = CAUGHT.try_with(|caught| *caught.borrow_mut() = Some(text));
            } else {
                log_panic(&text);
            }
        }));
    });
}

/// Logs a panic that no reply carries to the host.
fn log_panic(text: &str) {
    tracing::error!(target: "fibcache::plugin::panic", "the plugin panicked: {text}");
}

/// Runs `f`, turning a panic into the text a [`Status::PANICKED`] reply carries: its message
/// and, when the hook saw it, where it happened. The hook does not log such a panic.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let _ = CAUGHT.try_with(|caught| caught.borrow_mut().take());
    let outer = CATCHING.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.set(outer);
    result.map_err(|payload| {
        CAUGHT
            .try_with(|caught| caught.borrow_mut().take())
            .ok()
            .flatten()
            .unwrap_or_else(|| panic_message(&*payload))
    })
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
        let runtime = runtime();
        let reply = take(slot);
        drive(runtime, async move {
            match CatchUnwind(factory(&config)).await {
                Ok(Ok(cache)) => {
                    let instance = Box::into_raw(Box::new(cache)).cast::<Instance>();
                    reply.send(Status::OK, "", instance);
                }
                Ok(Err(err)) => reply.fail(&err),
                Err(panic) => reply.panicked(&panic),
            }
        });
    });
}

unsafe extern "C" fn get(instance: *const Instance, key: RStr, ctx: *mut c_void, done: Done) {
    guarded(Reply { ctx, done }, |slot| {
        // SAFETY: the host passes an instance it has not released, and a key valid for the
        // call; both are copied (an `Arc` clone, a `String`) before anything is deferred.
        let (cache, key) = unsafe { (cache_of(instance).clone(), key.to_str()) };
        let Some(key) = key.map(str::to_owned) else {
            return take(slot).send(Status::FAILED, "key is not UTF-8", std::ptr::null());
        };
        let runtime = runtime();
        let reply = take(slot);
        drive(runtime, async move {
            match CatchUnwind(cache.get(&key)).await {
                Ok(Ok(Some(value))) => reply.send(Status::OK, &value, std::ptr::null()),
                Ok(Ok(None)) => reply.send(Status::ABSENT, "", std::ptr::null()),
                Ok(Err(err)) => reply.fail(&err),
                Err(panic) => reply.panicked(&panic),
            }
        });
    });
}

unsafe extern "C" fn set(
    instance: *const Instance,
    key: RStr,
    value: RStr,
    ttl: FfiDuration,
    ctx: *mut c_void,
    done: Done,
) {
    guarded(Reply { ctx, done }, |slot| {
        // SAFETY: as in `get`; the strings are copied before anything is deferred.
        let (cache, key, value) =
            unsafe { (cache_of(instance).clone(), key.to_str(), value.to_str()) };
        let (Some(key), Some(value)) = (key.map(str::to_owned), value.map(str::to_owned)) else {
            let message = "key or value is not UTF-8";
            return take(slot).send(Status::FAILED, message, std::ptr::null());
        };
        let runtime = runtime();
        let reply = take(slot);
        drive(runtime, async move {
            match CatchUnwind(cache.set(&key, &value, ttl.into())).await {
                Ok(Ok(())) => reply.send(Status::OK, "", std::ptr::null()),
                Ok(Err(err)) => reply.fail(&err),
                Err(panic) => reply.panicked(&panic),
            }
        });
    });
}

unsafe extern "C" fn release(instance: *const Instance) {
    if instance.is_null() {
        return;
    }
    // A panic in a backend's `Drop` is swallowed: there is nobody left to tell.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // Dropping a client may need the runtime it was made in (a connection's task).
        let _context = runtime().enter();
        // SAFETY: `instance` came from `Box::into_raw` in `create`, and the host releases
        // each instance once, after its last call.
        drop(unsafe { Box::from_raw(instance.cast::<Arc<dyn Cache>>().cast_mut()) });
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

/// Polls `task` once on this thread inside `runtime`'s context, and spawns it there only if
/// it is not finished.
///
/// The first poll uses a no-op waker: if the task is pending, the spawned task polls it again
/// at once with a real waker, so a wake-up that happened in between is not lost.
fn drive(runtime: &'static Runtime, task: impl Future<Output = ()> + Send + 'static) {
    let _context = runtime.enter();
    let mut task = Box::pin(task);
    let mut cx = Context::from_waker(Waker::noop());
    if task.as_mut().poll(&mut cx).is_pending() {
        drop(runtime.spawn(task));
    }
}

/// The host's completion callback for one operation; answers exactly once.
///
/// Sending consumes it; dropping it unsent (the task was dropped, or a panic unwound through
/// it) answers with a failure instead, so the host never waits forever.
struct Reply {
    ctx: *mut c_void,
    done: Done,
}

// SAFETY: the protocol lets the plugin call `done` with `ctx` from any thread.
unsafe impl Send for Reply {}

impl Reply {
    fn send(self, status: Status, text: &str, instance: *const Instance) {
        let this = ManuallyDrop::new(self);
        // SAFETY: `done` and `ctx` are the host's, called once (the `Drop` is skipped), with a
        // text borrowed for the duration of the call.
        unsafe { (this.done)(this.ctx, status, RStr::new(text), instance) }
    }

    fn fail(self, err: &Error) {
        let (status, text) = Status::of_error(err);
        self.send(status, &text, std::ptr::null());
    }

    fn panicked(self, text: &str) {
        self.send(Status::PANICKED, text, std::ptr::null());
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        let (status, text) = if std::thread::panicking() {
            (Status::PANICKED, "the plugin panicked")
        } else {
            (
                Status::FAILED,
                "the plugin dropped the operation before it finished",
            )
        };
        // SAFETY: as in `send`; reached only when `send` was not.
        unsafe { (self.done)(self.ctx, status, RStr::new(text), std::ptr::null()) }
    }
}

/// Runs `body` with the reply in a slot, answering [`Status::PANICKED`] with the message if it
/// panics before taking the reply out.
fn guarded(reply: Reply, body: impl FnOnce(&mut Option<Reply>)) {
    let mut slot = Some(reply);
    if let Err(text) = catch(|| body(&mut slot)) {
        match slot.take() {
            Some(reply) => reply.panicked(&text),
            // The reply was out and answered without the message as it was dropped: nobody
            // else will report this panic.
            None => log_panic(&text),
        }
    }
}

fn take(slot: &mut Option<Reply>) -> Reply {
    slot.take().expect("the reply is taken once")
}

/// A future that turns a panic while polling `F` into an `Err` with the text a
/// [`Status::PANICKED`] reply carries (see [`catch`]).
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch(|| Pin::new(inner).poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    struct Fixture;

    impl ExportedCrate for Fixture {
        const NAME: &'static str = "guest-test";
        const VERSION: &'static str = "0.0.0";
    }

    /// Where [`record`] puts an answer.
    type Answer = Mutex<Option<(Status, String)>>;

    /// A `done` that keeps the answer in the [`Answer`] `ctx` points to.
    unsafe extern "C" fn record(ctx: *mut c_void, status: Status, text: RStr, _: *const Instance) {
        // SAFETY: the tests pass an `Answer` that outlives the call, and a text valid for it.
        let (answer, text) = unsafe { (&*ctx.cast::<Answer>(), text.to_string_lossy()) };
        *answer.lock().unwrap() = Some((status, text));
    }

    /// What a host that wrote only a `size` of 8 bytes gets back from `call`.
    fn answer_to_a_struct_of_8_bytes(call: impl FnOnce(*const usize, *mut c_void)) -> String {
        let size: usize = 8;
        let answer = Answer::default();
        call(&size, std::ptr::from_ref(&answer).cast_mut().cast());
        let (status, text) = answer.into_inner().unwrap().expect("answered");
        assert_eq!(status, Status::FAILED, "{text}");
        text
    }

    #[test]
    fn a_host_table_smaller_than_the_mandatory_part_is_refused() {
        let text = answer_to_a_struct_of_8_bytes(|host, ctx| {
            // SAFETY: a readable `size` that says nothing else is there; `ctx` is an `Answer`.
            unsafe { init::<Fixture>(host.cast(), ctx, record) }
        });
        let expected = format!(
            "host table has 8 bytes, fewer than the {}",
            HostApi::MANDATORY
        );
        assert!(text.contains(&expected), "{text}");
    }

    #[test]
    fn a_config_smaller_than_the_mandatory_part_is_refused() {
        let text = answer_to_a_struct_of_8_bytes(|config, ctx| {
            // SAFETY: as above.
            unsafe { create(0, config.cast(), ctx, record) }
        });
        let expected = format!(
            "config has 8 bytes, fewer than the {}",
            FfiConfig::MANDATORY
        );
        assert!(text.contains(&expected), "{text}");
    }
}
