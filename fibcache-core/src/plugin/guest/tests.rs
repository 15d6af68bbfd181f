//! Unit tests of the guest side: what a plugin answers a broken host.

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
