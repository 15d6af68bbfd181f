//! Unit tests of the host side: handshakes and tables a plugin may get wrong.

use super::*;
use crate::plugin::guest::{ExportedCrate, Table};

struct Fixture;

impl ExportedCrate for Fixture {
    const NAME: &'static str = "host-test";
    const VERSION: &'static str = "0.0.0";
}

/// What the host says about a handshake, as a plugin library would export it.
fn check(handshake: &'static Handshake) -> Result<Checked, Refusal> {
    // SAFETY: a static of this test binary.
    unsafe { check_handshake(std::ptr::from_ref(handshake).cast(), "fixture.so") }
}

#[test]
fn a_handshake_of_this_build_is_accepted() {
    static GOOD: Handshake = Handshake::of::<Fixture>();
    let checked = check(&GOOD).unwrap();
    assert_eq!(checked.krate, "host-test");
    assert_eq!(checked.api.size, size_of::<PluginApi>());
}

#[test]
fn another_abi_version_is_refused_even_with_this_core_version() {
    static NEXT: Handshake = Handshake::of::<Fixture>().abi_version(ABI_VERSION + 1);
    let err = check(&NEXT).unwrap_err();
    let Refusal::Incompatible {
        plugin_abi,
        plugin_core,
        ..
    } = &err
    else {
        panic!("expected Incompatible, got {err:?}");
    };
    assert_eq!(*plugin_abi, ABI_VERSION + 1);
    assert_eq!(plugin_core, crate::VERSION);
}

#[test]
fn a_function_table_smaller_than_the_mandatory_part_is_refused() {
    static SHORT: PluginApi = PluginApi {
        size: 3 * size_of::<usize>(),
        ..Table::<Fixture>::API
    };
    static HANDSHAKE: Handshake = Handshake::new("host-test", "0.0.0", &SHORT);
    let err = check(&HANDSHAKE).unwrap_err();
    assert!(
        matches!(err, Refusal::TableTooSmall { size: 24, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "plugin `fixture.so` has a function table of 24 bytes, fewer than the {} of \
             plugin ABI {ABI_VERSION}; rebuild it with `export_plugin!` against \
             fibcache-core {}",
            PluginApi::MANDATORY,
            crate::VERSION
        )
    );
}

#[test]
fn a_symbol_without_the_magic_value_is_not_a_plugin() {
    static NOT_MAGIC: [u64; 8] = [7; 8];
    // SAFETY: a static of 64 bytes, aligned as a handshake is.
    let err = unsafe { check_handshake(NOT_MAGIC.as_ptr().cast(), "x.so") }.unwrap_err();
    assert!(matches!(err, Refusal::NotAPlugin { .. }), "{err:?}");
}

#[test]
fn another_core_version_of_this_abi_is_accepted() {
    static OTHER_CORE: Handshake = Handshake::of::<Fixture>().core_version("0.1.0");
    let checked = check(&OTHER_CORE).unwrap();
    assert_eq!(checked.core, "0.1.0");
}

#[test]
fn a_fixture_cannot_claim_panic_unwind() {
    static ABORT: Handshake = Handshake::of::<Fixture>().panic_unwind(false);
    static STILL_ABORT: Handshake = Handshake::of::<Fixture>()
        .panic_unwind(false)
        .panic_unwind(true);
    for handshake in [&ABORT, &STILL_ABORT] {
        let err = check(handshake).unwrap_err();
        assert!(matches!(err, Refusal::PanicAbort { .. }), "{err:?}");
    }
}

unsafe extern "C" fn too_many() -> usize {
    1 << 60
}

#[test]
fn a_backend_count_past_the_bound_is_refused_before_anything_is_allocated() {
    static API: PluginApi = PluginApi {
        backend_count: too_many,
        ..Table::<Fixture>::API
    };
    let err = list(&API, "fixture.so").unwrap_err();
    assert!(matches!(err, Refusal::Malformed { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "plugin `fixture.so` is malformed: it exports 1152921504606846976 backends, \
             more than the {MAX_BACKENDS} a plugin may; fix the plugin and rebuild it"
        )
    );
}

unsafe extern "C" fn one() -> usize {
    1
}

/// A name that claims 2^40 bytes at an address where none can be read.
unsafe extern "C" fn huge_name(_index: usize, out: *mut BackendInfo) -> Status {
    let info = BackendInfo {
        name: RStr::from_raw_parts(std::ptr::dangling(), 1 << 40),
        summary: RStr::EMPTY,
    };
    // SAFETY: the host passes a writable `BackendInfo`.
    unsafe { out.write(info) };
    Status::OK
}

#[test]
fn a_name_longer_than_the_bound_is_refused_unread() {
    static API: PluginApi = PluginApi {
        backend_count: one,
        backend_info: huge_name,
        ..Table::<Fixture>::API
    };
    let err = list(&API, "fixture.so").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the name of its backend #0 is 1099511627776 bytes long"),
        "{text}"
    );
}
