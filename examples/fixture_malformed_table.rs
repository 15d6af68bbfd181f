//! Test fixture: a plugin written without `export_plugin!`, by hand against the C ABI as a
//! foreign or hostile library could be, whose `backend_count` says it has 2^60 backends, so
//! that the tests can show the host checks a count before it allocates anything for it (one
//! line and exit status 2, not a "capacity overflow" panic). Not an example to follow: it
//! repeats the layout of plugin ABI 2, which only `fibcache_core::plugin` should spell out.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_malformed_table
//! cargo run --features dynamic -- --plugin target/debug/examples/libfixture_malformed_table.so
//! ```

use std::ffi::c_void;
use std::mem::size_of;

/// `fibcache_core::plugin`'s `RStr`: a pointer and a length.
#[repr(C)]
struct RStr {
    ptr: *const u8,
    len: usize,
}

impl RStr {
    const fn new(s: &'static str) -> RStr {
        RStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }
}

type Done =
    unsafe extern "C" fn(ctx: *mut c_void, status: u32, text: RStr, instance: *const c_void);

/// The mandatory part of the function table of plugin ABI 2; none past `backend_count` is
/// ever called, as the host refuses the count first.
#[repr(C)]
struct Api {
    size: usize,
    init: unsafe extern "C" fn(host: *const c_void, ctx: *mut c_void, done: Done),
    backend_count: unsafe extern "C" fn() -> usize,
    unused: [usize; 5],
}

#[repr(C)]
struct Handshake {
    magic: [u8; 16],
    abi_version: u32,
    core_version: RStr,
    plugin_crate: RStr,
    plugin_version: RStr,
    panic_unwind: u8,
    api: *const Api,
}

// SAFETY: immutable static data pointing to other statics.
unsafe impl Sync for Handshake {}

unsafe extern "C" fn init(_host: *const c_void, ctx: *mut c_void, done: Done) {
    // SAFETY: the host's callback, called once with its context: status 0 is OK.
    unsafe { done(ctx, 0, RStr::new(""), std::ptr::null()) }
}

unsafe extern "C" fn backend_count() -> usize {
    1 << 60
}

static API: Api = Api {
    size: size_of::<Api>(),
    init,
    backend_count,
    unused: [0; 5],
};

#[unsafe(export_name = "fibcache_plugin_handshake")]
static HANDSHAKE: Handshake = Handshake {
    magic: *b"fibcache-plugin\0",
    abi_version: fibcache_core::plugin::ABI_VERSION,
    core_version: RStr::new(fibcache_core::VERSION),
    plugin_crate: RStr::new(env!("CARGO_PKG_NAME")),
    plugin_version: RStr::new(env!("CARGO_PKG_VERSION")),
    panic_unwind: 1,
    api: &API,
};
