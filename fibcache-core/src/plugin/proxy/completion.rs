//! The completion of plugin operations: the `ctx` and `done` callback each operation gets,
//! which copy the plugin's answer within its bounds and hand it to the waiting future through
//! a oneshot channel (see the invariants in the documentation of [`super`]).

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::MAX_IN_FLIGHT;
use crate::plugin::abi::{Instance, PluginApi, RStr, Status};

/// The longest text of an answer that is not a value (an error message, a remaining
/// lifetime) the host copies; a longer one is cut.
pub(in crate::plugin) const MAX_TEXT_LEN: usize = 4096;

/// What a plugin answered through its `done` callback, copied.
pub(in crate::plugin) struct Outcome {
    pub(in crate::plugin) status: Status,
    pub(in crate::plugin) text: String,
    pub(super) instance: InstancePtr,
}

/// What an operation may answer besides its status: this decides what [`on_done`] copies and
/// keeps.
#[derive(Clone, Copy, Debug)]
pub(in crate::plugin) enum Expect {
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
pub(in crate::plugin) fn completion(
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
pub(in crate::plugin) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more operation in `count`, unless [`MAX_IN_FLIGHT`] already are.
    pub(super) fn enter(count: &Arc<AtomicUsize>) -> Option<InFlight> {
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
pub(in crate::plugin) unsafe extern "C" fn on_done(
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
pub(super) unsafe fn copy_answer(
    status: Status,
    text: RStr<'_>,
    expect: Expect,
) -> (Status, String) {
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
pub(super) struct InstancePtr(pub(super) *const Instance);

// SAFETY: an instance is the plugin's `Arc<dyn Cache>`, which is `Send + Sync`; the protocol
// allows calls on it from any thread, at the same time.
unsafe impl Send for InstancePtr {}
// SAFETY: as above.
unsafe impl Sync for InstancePtr {}
