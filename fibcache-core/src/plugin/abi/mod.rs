//! Every type and constant that crosses the plugin boundary, and nothing else.
//!
//! These are the only things a host and a plugin built by different compilers, against
//! different copies of this crate, can agree on: `#[repr(C)]` structs of integers, pointers
//! and `extern "C"` function pointers, and plain integers standing for enums (so that a value
//! outside the known ones stays representable instead of being undefined behaviour).
//!
//! # Invariants
//! - [`HandshakeHead`] is frozen: every ABI version starts its handshake with it, so any host
//!   can read any plugin's versions.
//! - [`PluginApi`], [`HostApi`] and [`FfiConfig`] begin with `size`, the size of the struct as
//!   its writer built it. A reader copies them with [`read_extensible`]: it requires the mandatory
//!   part ([`Extensible::MANDATORY`]), takes what the writer wrote of the rest, and reads every
//!   entry the writer did not write as zero: `None` for an optional function, 0 for a number.
//! - An entry appended later must therefore be valid as all-zero bytes (an
//!   `Option<unsafe extern "C" fn ...>` or an integer whose 0 means "absent"), and adding one
//!   needs no [`ABI_VERSION`] bump. Changing or removing an existing entry, or anything else
//!   in this module, does; the layout test at the end is the reminder.
//! - A reader takes whole entries only: a `size` that ends inside an entry (half a function
//!   pointer) covers the entries before it, and the cut one reads as zero.
//! - Strings are [`RStr`]s: borrowed, with the lifetime the documentation of each use gives.
//! - Every count and length a plugin writes is checked against a bound before the host
//!   allocates or copies anything for it (see `host` and `proxy`).

use std::ffi::c_void;
use std::marker::{PhantomData, PhantomPinned};
use std::mem::{offset_of, size_of, MaybeUninit};

pub(crate) use capability::{answer_of_bool, remaining_from_text, remaining_to_text, Capabilities};
pub(crate) use value::{ConfigView, FfiConfig, FfiDuration, FfiLevel, RStr, Status};

mod capability;
mod value;

/// The version of this boundary. Bump it whenever an existing `#[repr(C)]` type, constant or
/// `extern "C"` signature of the plugin ABI changes; appending an optional entry to an
/// extensible table does not need a bump. A host refuses plugins of any other version.
pub const ABI_VERSION: u32 = 2;

/// The first bytes of every [`Handshake`]: proof that the symbol is a fibcache handshake.
pub(crate) const MAGIC: [u8; 16] = *b"fibcache-plugin\0";

/// The name of the static [`Handshake`] every plugin exports; `export_plugin!` spells it out,
/// as an attribute cannot name a constant.
pub(crate) const HANDSHAKE_SYMBOL: &str = "fibcache_plugin_handshake";

/// A struct that begins with `size: usize` and may gain entries at its end (see the module
/// documentation).
///
/// # Safety
/// The implementing type is `#[repr(C)]`, its first field is `size: usize`, its first
/// [`MANDATORY`](Extensible::MANDATORY) bytes hold every entry a reader needs, every entry
/// after them is valid when all its bytes are zero, and
/// [`OPTIONAL_ENDS`](Extensible::OPTIONAL_ENDS) lists where each of those entries ends.
pub(crate) unsafe trait Extensible: Sized {
    /// The bytes every writer of this ABI version writes: up to the end of the last entry
    /// that is not optional.
    const MANDATORY: usize;
    /// Where each optional entry ends (its offset plus its size), in order: a reader copies
    /// an optional entry only when the writer's `size` covers all of it.
    const OPTIONAL_ENDS: &'static [usize] = &[];
}

/// Copies the extensible struct at `ptr`, which its writer built with `size` bytes: the entries
/// `size` does not wholly cover read as zero, and bytes beyond the ones this reader knows are
/// left.
///
/// # Errors
/// The writer's `size`, when it is smaller than [`Extensible::MANDATORY`].
///
/// # Safety
/// `ptr` must point to a readable `usize`, and, when that value is at least `MANDATORY`, to
/// that many readable bytes written as a `T` of this ABI version (or a later one that only
/// appended entries).
pub(crate) unsafe fn read_extensible<T: Extensible>(ptr: *const T) -> Result<T, usize> {
    // SAFETY: the caller guarantees the leading `usize`; it is read unaligned, as the writer
    // may be buggy.
    let size = unsafe { ptr.cast::<usize>().read_unaligned() };
    if size < T::MANDATORY {
        return Err(size);
    }
    let whole = T::OPTIONAL_ENDS
        .iter()
        .copied()
        .filter(|&end| end <= size)
        .fold(T::MANDATORY, usize::max);
    let mut out = MaybeUninit::<T>::zeroed();
    // SAFETY: the caller guarantees `size` readable bytes, and `whole` is at most `size` and
    // at most `size_of::<T>()`; it ends where an entry ends, so every entry is either copied
    // whole or left zero, which `T: Extensible` makes valid.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), out.as_mut_ptr().cast::<u8>(), whole);
        Ok(out.assume_init())
    }
}

/// An instance of a plugin backend, opaque to the host: created by [`PluginApi::create`],
/// freed by [`PluginApi::release`].
#[repr(C)]
pub(crate) struct Instance {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// The completion callback of an operation; the plugin calls it exactly once.
///
/// `ctx` is the pointer the host passed with the operation. `text` is the value (for a
/// successful `get`) or a message (for a failure), borrowed for the duration of the callback.
/// `instance` is the new instance for a successful `create`, null otherwise. The callback may
/// run on any thread, before or after the call that started the operation returns; it must not
/// block and must not unwind.
pub(crate) type Done = unsafe extern "C" fn(
    ctx: *mut c_void,
    status: Status,
    text: RStr<'_>,
    instance: *const Instance,
);

/// One `tracing` event of the plugin, formatted; borrowed for the duration of the log callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogRecord<'a> {
    /// The event's level (never "off").
    pub(crate) level: FfiLevel,
    /// The event's target in the plugin, such as `memcache_plugin`.
    pub(crate) target: RStr<'a>,
    /// The message followed by the other fields as ` key=value`.
    pub(crate) message: RStr<'a>,
}

/// The host's log sink: called for each enabled event, from any thread of the plugin.
pub(crate) type LogFn = unsafe extern "C" fn(ctx: *mut c_void, record: *const LogRecord<'_>);

/// What the host gives the plugin at [`PluginApi::init`]; borrowed for the duration of the
/// call, and read with [`read_extensible`] (the plugin copies the fields).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct HostApi {
    /// The size of this struct as the host built it.
    pub(crate) size: usize,
    /// The most verbose level the host wants to receive.
    pub(crate) max_level: FfiLevel,
    /// Passed back to `log`; must stay valid for as long as the process runs.
    pub(crate) log_ctx: *mut c_void,
    /// Where the plugin's events go; `None` drops them.
    pub(crate) log: Option<LogFn>,
}

// SAFETY: `#[repr(C)]`, begins with `size`, and every entry is mandatory.
unsafe impl Extensible for HostApi {
    const MANDATORY: usize = size_of::<HostApi>();
}

/// A backend a plugin exports; the strings are static in the plugin.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct BackendInfo {
    /// The name it is selected by.
    pub(crate) name: RStr<'static>,
    /// Its one-line summary.
    pub(crate) summary: RStr<'static>,
}

/// [`PluginApi::capabilities`].
pub(crate) type CapabilitiesFn = unsafe extern "C" fn(instance: *const Instance) -> Capabilities;

/// [`PluginApi::remaining`].
pub(crate) type RemainingFn =
    unsafe extern "C" fn(instance: *const Instance, key: RStr<'_>, ctx: *mut c_void, done: Done);

/// [`PluginApi::claim`] and [`PluginApi::renew`].
pub(crate) type ClaimFn = unsafe extern "C" fn(
    instance: *const Instance,
    key: RStr<'_>,
    token: RStr<'_>,
    ttl: FfiDuration,
    ctx: *mut c_void,
    done: Done,
);

/// [`PluginApi::release_claim`].
pub(crate) type ReleaseClaimFn = unsafe extern "C" fn(
    instance: *const Instance,
    key: RStr<'_>,
    token: RStr<'_>,
    ctx: *mut c_void,
    done: Done,
);

/// The functions of a plugin, reached through [`Handshake::api`] and read with
/// [`read_extensible`].
///
/// Each `ctx` is the host's and is passed back, untouched, to `done`. Every operation on an
/// instance returns at once: the work, and the answer through `done`, happen on the plugin's
/// own runtime (see `guest`).
///
/// The optional capabilities of [`Cache`](crate::Cache) are the optional entries after
/// `release`: the host offers [`Expiry`](crate::Expiry) for an instance only when the table
/// has `capabilities` and `remaining` and the instance's `capabilities` says so, and
/// [`Claims`](crate::Claims) likewise with `claim`, `renew` and `release_claim`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct PluginApi {
    /// The size of this struct as the plugin built it.
    pub(crate) size: usize,
    /// Sets the plugin up; called once, before anything below. Answers through `done`
    /// before it returns.
    pub(crate) init: unsafe extern "C" fn(host: *const HostApi, ctx: *mut c_void, done: Done),
    /// How many backends the plugin exports.
    pub(crate) backend_count: unsafe extern "C" fn() -> usize,
    /// Writes the backend `index` to `out`; [`Status::OK`] or [`Status::FAILED`] for an index
    /// out of range.
    pub(crate) backend_info: unsafe extern "C" fn(index: usize, out: *mut BackendInfo) -> Status,
    /// Creates an instance of the backend `index` from `config`.
    pub(crate) create:
        unsafe extern "C" fn(index: usize, config: *const FfiConfig, ctx: *mut c_void, done: Done),
    /// Reads `key`: [`Status::OK`] with the value, [`Status::ABSENT`], or a failure.
    pub(crate) get: unsafe extern "C" fn(
        instance: *const Instance,
        key: RStr<'_>,
        ctx: *mut c_void,
        done: Done,
    ),
    /// Stores `value` under `key` for `ttl`.
    pub(crate) set: unsafe extern "C" fn(
        instance: *const Instance,
        key: RStr<'_>,
        value: RStr<'_>,
        ttl: FfiDuration,
        ctx: *mut c_void,
        done: Done,
    ),
    /// Frees an instance; operations already started on it still complete.
    pub(crate) release: unsafe extern "C" fn(instance: *const Instance),
    /// Which optional capabilities an instance offers; called once per instance, after its
    /// `create`, and answers at once.
    pub(crate) capabilities: Option<CapabilitiesFn>,
    /// [`Expiry::remaining`](crate::Expiry::remaining) of `key`: [`Status::ABSENT`], or
    /// [`Status::OK`] with the time left (see [`remaining_to_text`]).
    pub(crate) remaining: Option<RemainingFn>,
    /// [`Claims::claim`](crate::Claims::claim): [`Status::OK`] when claimed,
    /// [`Status::ABSENT`] when someone else holds the key.
    pub(crate) claim: Option<ClaimFn>,
    /// [`Claims::renew`](crate::Claims::renew): [`Status::OK`] when renewed,
    /// [`Status::ABSENT`] when the claim is not `token`'s.
    pub(crate) renew: Option<ClaimFn>,
    /// [`Claims::release`](crate::Claims::release) (`ttl` is not passed): [`Status::OK`] when
    /// released, [`Status::ABSENT`] when the claim was not `token`'s.
    pub(crate) release_claim: Option<ReleaseClaimFn>,
}

/// Where the optional entry `$field` of `$table`, of type `$ty`, ends.
macro_rules! end_of {
    ($table:ty, $field:ident, $ty:ty) => {
        offset_of!($table, $field) + size_of::<$ty>()
    };
}

// SAFETY: `#[repr(C)]`, begins with `size`; the mandatory part ends after `release`, the last
// entry of ABI version 2 as it first shipped, and every entry after it is an `Option` of a
// function pointer, `None` as zero.
unsafe impl Extensible for PluginApi {
    const MANDATORY: usize = end_of!(PluginApi, release, unsafe extern "C" fn(*const Instance));
    const OPTIONAL_ENDS: &'static [usize] = &[
        end_of!(PluginApi, capabilities, Option<CapabilitiesFn>),
        end_of!(PluginApi, remaining, Option<RemainingFn>),
        end_of!(PluginApi, claim, Option<ClaimFn>),
        end_of!(PluginApi, renew, Option<ClaimFn>),
        end_of!(PluginApi, release_claim, Option<ReleaseClaimFn>),
    ];
}

/// The part of the [`Handshake`] that every ABI version keeps, so that any host can tell any
/// plugin which versions it speaks.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct HandshakeHead {
    /// Always [`MAGIC`].
    pub(crate) magic: [u8; 16],
    /// The plugin's [`ABI_VERSION`].
    pub(crate) abi_version: u32,
    /// The version of the `fibcache-core` the plugin was built with: for the log and the
    /// messages only, as the ABI version alone decides whether a plugin is loaded.
    pub(crate) core_version: RStr<'static>,
}

/// The static a plugin exports as `fibcache_plugin_handshake`; written by
/// [`export_plugin!`](crate::export_plugin).
#[repr(C)]
#[derive(Debug)]
pub struct Handshake {
    /// Read first, and alone until its ABI version is known to match.
    pub(crate) head: HandshakeHead,
    /// The plugin crate's `CARGO_PKG_NAME`.
    pub(crate) plugin_crate: RStr<'static>,
    /// The plugin crate's `CARGO_PKG_VERSION`.
    pub(crate) plugin_version: RStr<'static>,
    /// 1 when the plugin was built with `panic = "unwind"` (so panics can be caught), 0 with
    /// `abort`.
    pub(crate) panic_unwind: u8,
    /// The plugin's functions.
    pub(crate) api: *const PluginApi,
}

// SAFETY: a `Handshake` is immutable static data whose pointers point to other immutable
// statics (string literals and the `PluginApi` of the same library).
unsafe impl Sync for Handshake {}

impl Handshake {
    /// The handshake of a plugin of this ABI version whose functions are `api`.
    pub(crate) const fn new(
        plugin_crate: &'static str,
        plugin_version: &'static str,
        api: &'static PluginApi,
    ) -> Self {
        Handshake {
            head: HandshakeHead {
                magic: MAGIC,
                abi_version: ABI_VERSION,
                core_version: RStr::new(crate::VERSION),
            },
            plugin_crate: RStr::new(plugin_crate),
            plugin_version: RStr::new(plugin_version),
            // Every crate of one build shares its panic strategy, so this crate's is the
            // plugin's.
            panic_unwind: cfg!(panic = "unwind") as u8,
            api,
        }
    }

    // The setters below serve the test fixtures (see `export_plugin!`). Each can only make a
    // plugin refused, or change what the log shows: none can claim what the plugin does not
    // have.

    /// Claims another ABI version, which every host of this ABI refuses.
    #[doc(hidden)]
    pub const fn abi_version(mut self, abi_version: u32) -> Self {
        self.head.abi_version = abi_version;
        self
    }

    /// Claims another `fibcache-core` version: shown in the log and in messages only.
    #[doc(hidden)]
    pub const fn core_version(mut self, core_version: &'static str) -> Self {
        self.head.core_version = RStr::new(core_version);
        self
    }

    /// With `false`, claims `panic = "abort"`, which every host refuses. `true` changes
    /// nothing: only the build's own panic strategy can make a plugin claim `unwind`.
    #[doc(hidden)]
    pub const fn panic_unwind(mut self, panic_unwind: bool) -> Self {
        if !panic_unwind {
            self.panic_unwind = 0;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An extensible struct of a later ABI: `extra` was appended, optional.
    #[repr(C)]
    struct Grown {
        size: usize,
        base: u32,
        extra: Option<extern "C" fn() -> u32>,
    }

    // SAFETY: `#[repr(C)]`, begins with `size`, and `extra` is valid as zero (`None`).
    unsafe impl Extensible for Grown {
        const MANDATORY: usize = offset_of!(Grown, extra);
        const OPTIONAL_ENDS: &'static [usize] =
            &[end_of!(Grown, extra, Option<extern "C" fn() -> u32>)];
    }

    extern "C" fn seven() -> u32 {
        7
    }

    #[test]
    fn a_reader_takes_what_the_writer_wrote_and_zero_for_the_rest() {
        let full = Grown {
            size: size_of::<Grown>(),
            base: 1,
            extra: Some(seven),
        };
        // SAFETY: `full` is a whole `Grown`.
        let read = unsafe { read_extensible(&full) }.unwrap();
        assert_eq!(read.extra.map(|f| f()), Some(7));

        // An older writer: its struct ends before `extra`, which reads as absent.
        let older = Grown {
            size: Grown::MANDATORY,
            ..full
        };
        // SAFETY: as above (and more bytes are readable than `size` says).
        let read = unsafe { read_extensible(&older) }.unwrap();
        assert_eq!(read.base, 1);
        assert!(read.extra.is_none());

        let broken = Grown { size: 4, ..older };
        // SAFETY: as above.
        assert_eq!(unsafe { read_extensible(&broken) }.err(), Some(4));
    }

    #[test]
    fn a_size_that_ends_inside_an_entry_copies_none_of_it() {
        for cut in 1..size_of::<Option<extern "C" fn() -> u32>>() {
            let torn = Grown {
                size: Grown::MANDATORY + cut,
                base: 1,
                extra: Some(seven),
            };
            // SAFETY: `torn` is a whole `Grown`, more than its `size` says.
            let read = unsafe { read_extensible(&torn) }.unwrap();
            assert!(read.extra.is_none(), "{cut} bytes of a pointer were copied");
            assert_eq!(read.base, 1);
        }
        let larger = Grown {
            size: size_of::<Grown>() + 100,
            base: 1,
            extra: Some(seven),
        };
        // SAFETY: `read_extensible` copies no more than the `Grown` it knows.
        let read = unsafe { read_extensible(&larger) }.unwrap();
        assert_eq!(read.extra.map(|f| f()), Some(7));
    }

    /// The layout of ABI version 2 on 64-bit targets. A change here without an
    /// [`ABI_VERSION`] bump would make old plugins misread: this test is the reminder.
    /// (Appending an optional entry to an extensible struct changes its size but not its
    /// `MANDATORY` part, and needs no bump.)
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_abi_layout_is_that_of_version_2() {
        assert_eq!(ABI_VERSION, 2);
        assert_eq!(offset_of!(HandshakeHead, abi_version), 16);
        assert_eq!(offset_of!(HandshakeHead, core_version), 24);
        assert_eq!(size_of::<HandshakeHead>(), 40);
        assert_eq!(size_of::<Handshake>(), 88);
        assert_eq!(offset_of!(Handshake, api), 80);
        assert_eq!(PluginApi::MANDATORY, 8 * 8);
        assert_eq!(offset_of!(PluginApi, release), 7 * 8);
        // The optional capabilities, appended without a version bump.
        assert_eq!(offset_of!(PluginApi, capabilities), 8 * 8);
        assert_eq!(offset_of!(PluginApi, remaining), 9 * 8);
        assert_eq!(offset_of!(PluginApi, claim), 10 * 8);
        assert_eq!(offset_of!(PluginApi, renew), 11 * 8);
        assert_eq!(offset_of!(PluginApi, release_claim), 12 * 8);
        assert_eq!(
            PluginApi::OPTIONAL_ENDS,
            [9 * 8, 10 * 8, 11 * 8, 12 * 8, 13 * 8]
        );
        assert_eq!(size_of::<PluginApi>(), 13 * 8);
        assert_eq!(size_of::<Capabilities>(), 4);
        assert_eq!(HostApi::MANDATORY, 32);
        assert_eq!(offset_of!(HostApi, log), 24);
        assert_eq!(FfiConfig::MANDATORY, 48);
        // `max_value_len`: optional, so no version bump.
        assert_eq!(size_of::<FfiConfig>(), 56);
        assert_eq!(FfiConfig::OPTIONAL_ENDS, [56]);
        assert_eq!(size_of::<LogRecord>(), 40);
        assert_eq!(size_of::<BackendInfo>(), 32);
        assert_eq!(size_of::<FfiDuration>(), 16);
        assert_eq!(size_of::<Status>(), 4);
        assert_eq!(size_of::<FfiLevel>(), 4);
    }
}
