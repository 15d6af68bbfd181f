//! Unit tests of the host's cache over a plugin: answers a plugin may get wrong, and the
//! capabilities a table and an instance offer.

use super::*;
use crate::plugin::abi::Extensible;
use crate::plugin::abi::Instance;
use crate::plugin::guest::{ExportedCrate, Table};

struct Fixture;

impl ExportedCrate for Fixture {
    const NAME: &'static str = "proxy-test";
    const VERSION: &'static str = "0.0.0";
}

/// An instance pointer that nothing here dereferences.
fn fake_instance() -> *const Instance {
    std::ptr::dangling()
}

static RELEASED: AtomicUsize = AtomicUsize::new(0);

/// Counts releases; only [`an_instance_nobody_can_use_is_released_once`] uses it.
unsafe extern "C" fn count_release(_instance: *const Instance) {
    RELEASED.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn ignore_release(_instance: *const Instance) {}

#[test]
fn an_instance_nobody_can_use_is_released_once() {
    static API: PluginApi = PluginApi {
        release: count_release,
        ..Table::<Fixture>::API
    };
    let not_utf8 = [b'o', 0xff, b'k'];
    let answers = [
        // A successful `create` whose text is not UTF-8: refused as a failure.
        (Status::OK, RStr::from_raw_parts(not_utf8.as_ptr(), 3)),
        // A failed `create` that still hands over an instance.
        (Status::FAILED, RStr::new("no")),
        // A successful `create` with text longer than any the host copies.
        (
            Status::OK,
            RStr::from_raw_parts(std::ptr::dangling(), MAX_TEXT_LEN + 1),
        ),
    ];
    for (round, (status, text)) in answers.into_iter().enumerate() {
        let (ctx, mut rx) = completion(&API, Expect::Instance, None);
        // SAFETY: a fresh completion; `text` is readable, or longer than any bound.
        unsafe { on_done(ctx, status, text, fake_instance()) };
        let outcome = rx.try_recv().expect("answered");
        assert_ne!(outcome.status, Status::OK, "{}", outcome.text);
        assert!(outcome.instance.0.is_null());
        assert_eq!(RELEASED.load(Ordering::SeqCst), round + 1);
    }
    // A `create` nobody waits for any more.
    let (ctx, rx) = completion(&API, Expect::Instance, None);
    drop(rx);
    // SAFETY: a fresh completion.
    unsafe { on_done(ctx, Status::OK, RStr::EMPTY, fake_instance()) };
    assert_eq!(RELEASED.load(Ordering::SeqCst), 4);
    // An instance in the answer of a `get` is not the host's to release.
    let (ctx, _rx) = completion(&API, Expect::Value(19), None);
    // SAFETY: a fresh completion.
    unsafe { on_done(ctx, Status::FAILED, RStr::new("no"), fake_instance()) };
    assert_eq!(RELEASED.load(Ordering::SeqCst), 4);
}

#[test]
fn a_value_longer_than_the_bound_is_refused_unread() {
    // 64 MiB at an address where not one byte can be read: reading any would crash.
    let huge = RStr::from_raw_parts(std::ptr::dangling(), 64 << 20);
    // SAFETY: nothing is read of a text longer than the bound.
    let (status, text) = unsafe { copy_answer(Status::OK, huge, Expect::Value(19)) };
    assert_eq!(status, Status::FAILED);
    assert_eq!(
        text,
        "the plugin answered a value of 67108864 bytes, longer than the 19 this cache accepts"
    );
    // SAFETY: a readable static.
    let fits = unsafe { copy_answer(Status::OK, RStr::new("6765"), Expect::Value(19)) };
    assert_eq!(fits, (Status::OK, "6765".to_owned()));
    // A failure's message is cut, not refused.
    let long = "x".repeat(MAX_TEXT_LEN * 2);
    // SAFETY: as above.
    let (status, text) =
        unsafe { copy_answer(Status::FAILED, RStr::new(&long), Expect::Value(19)) };
    assert_eq!(status, Status::FAILED);
    assert_eq!(text.len(), MAX_TEXT_LEN + '…'.len_utf8());
}

unsafe extern "C" fn offers_everything(_instance: *const Instance) -> Capabilities {
    Capabilities::with_entries(true, true)
}

fn cache_over(api: &'static PluginApi) -> PluginCache {
    let live = Live {
        api,
        instance: InstancePtr(fake_instance()),
        version: 0,
        in_flight: Arc::default(),
    };
    let capabilities = live.ask_capabilities();
    PluginCache {
        slot: Arc::new(Slot::new(api, vec!["fixture".to_owned()])),
        name: Arc::from("fixture"),
        config: Config::default(),
        max_value_len: 19,
        capabilities,
        live: Mutex::new(Arc::new(live)),
        moving: AtomicBool::new(false),
        refused: AtomicU64::new(NO_VERSION),
    }
}

#[test]
fn a_capability_is_offered_only_with_its_entries_and_the_instances_yes() {
    static WITHOUT_ENTRIES: PluginApi = PluginApi {
        size: PluginApi::MANDATORY,
        release: ignore_release,
        capabilities: None,
        remaining: None,
        claim: None,
        renew: None,
        release_claim: None,
        ..Table::<Fixture>::API
    };
    let old = cache_over(&WITHOUT_ENTRIES);
    assert!(old.expiry().is_none() && old.claims().is_none());

    static NO_RENEW: PluginApi = PluginApi {
        release: ignore_release,
        capabilities: Some(offers_everything),
        renew: None,
        ..Table::<Fixture>::API
    };
    let partial = cache_over(&NO_RENEW);
    assert!(partial.expiry().is_some());
    assert!(partial.claims().is_none(), "claims need all three entries");

    static EVERYTHING: PluginApi = PluginApi {
        release: ignore_release,
        capabilities: Some(offers_everything),
        ..Table::<Fixture>::API
    };
    let full = cache_over(&EVERYTHING);
    assert!(full.expiry().is_some() && full.claims().is_some());
}

/// A `get` that never answers: the plugin keeps its `ctx` and calls nobody.
unsafe extern "C" fn never_answers(
    _instance: *const Instance,
    _key: RStr<'_>,
    _ctx: *mut c_void,
    _done: crate::plugin::abi::Done,
) {
}

#[tokio::test]
async fn past_the_bound_of_unanswered_operations_calls_are_refused_at_once() {
    static STUCK: PluginApi = PluginApi {
        release: ignore_release,
        capabilities: None,
        get: never_answers,
        ..Table::<Fixture>::API
    };
    let cache = cache_over(&STUCK);
    let waiting: Vec<_> = (0..MAX_IN_FLIGHT).map(|_| cache.get("fib:1")).collect();
    // Each future started its operation at its first poll; none is answered.
    let mut waiting: Vec<_> = waiting.into_iter().map(Box::pin).collect();
    for get in &mut waiting {
        let polled = futures_poll_once(get).await;
        assert!(polled.is_none());
    }
    let err = cache.get("fib:1").await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(err.backend_name(), "fixture");
    let why = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        why.as_deref(),
        Some("the plugin has not answered 4096 operations")
    );
    // An operation given up on leaves the count only when the plugin answers it; here, never.
    drop(waiting);
    assert!(cache.get("fib:1").await.is_err());
}

/// Polls `fut` once; `Some` with its output if that finished it.
async fn futures_poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *fut).poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
