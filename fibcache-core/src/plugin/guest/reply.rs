//! Answering the host exactly once, whatever happens: the [`Reply`] of an operation, and
//! what becomes of a panic in the plugin.
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
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::plugin::abi::{Done, Instance, RStr, Status};
use crate::Error;

thread_local! {
    /// Whether a panic on this thread now is caught by [`catch`] and answered to the host.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of the last panic [`catch`] is about to catch on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Routes the plugin's panic messages (its own `std`'s hook) to the host instead of writing
/// them to stderr behind the host's back: a panic that [`catch`] answers is left to the host
/// (see the module documentation), any other is logged as an ERROR event.
pub(super) fn install_panic_hook() {
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

/// The host's completion callback for one operation; answers exactly once.
///
/// Sending consumes it; dropping it unsent (the task was dropped, or a panic unwound through
/// it) answers with a failure instead, so the host never waits forever.
pub(super) struct Reply {
    pub(super) ctx: *mut c_void,
    pub(super) done: Done,
}

// SAFETY: the protocol lets the plugin call `done` with `ctx` from any thread.
unsafe impl Send for Reply {}

impl Reply {
    pub(super) fn send(self, status: Status, text: &str, instance: *const Instance) {
        let this = ManuallyDrop::new(self);
        // SAFETY: `done` and `ctx` are the host's, called once (the `Drop` is skipped), with a
        // text borrowed for the duration of the call.
        unsafe { (this.done)(this.ctx, status, RStr::new(text), instance) }
    }

    pub(super) fn fail(self, err: &Error) {
        let (status, text) = Status::of_error(err);
        self.send(status, &text, std::ptr::null());
    }

    pub(super) fn panicked(self, text: &str) {
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
pub(super) fn guarded(reply: Reply, body: impl FnOnce(&mut Option<Reply>)) {
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

pub(super) fn take(slot: &mut Option<Reply>) -> Reply {
    slot.take().expect("the reply is taken once")
}

/// A future that turns a panic while polling `F` into an `Err` with the text a
/// [`Status::PANICKED`] reply carries (see [`catch`]).
pub(super) struct CatchUnwind<F>(pub(super) F);

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
