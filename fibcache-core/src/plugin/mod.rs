//! The C-ABI boundary between the fibcache server and cache backends loaded from shared
//! libraries.
//!
//! A plugin is a `cdylib` that carries its own copy of every crate it uses: its own `inventory`
//! registry, its own tokio (with no runtime until it makes one), its own `tracing` dispatcher,
//! possibly its own allocator, and code from a compiler whose Rust layouts the host cannot
//! know. So nothing Rust-specific crosses: only the `#[repr(C)]` types of this module and
//! `extern "C"` functions. The host wraps each plugin backend in a [`Cache`](crate::Cache) of
//! its own and adds it to the same [`Registry`](crate::Registry) as the built-in ones.
//!
//! # Writing a plugin
//! Write an ordinary backend with [`register_backend!`](crate::register_backend), add one
//! [`export_plugin!`](crate::export_plugin) line (its documentation shows a whole plugin), and
//! build the crate as a `cdylib` (`crate-type = ["cdylib"]`); `examples/memcache_plugin.rs`
//! and `examples/rediscache_plugin.rs` in the repository are complete ones. The export covers exactly the backends registered by the crate that invokes the macro
//! (`CARGO_PKG_NAME`); backends of linked dependencies, such as `nop` or `memory`, which sit in
//! the library's own `inventory` too, are not re-exported.
//!
//! # The protocol
//! 1. The host `dlopen`s the library and reads the static [`HANDSHAKE_SYMBOL`] before calling
//!    anything. Its [`HandshakeHead`] is frozen for every ABI version: the [`MAGIC`] value,
//!    the [`ABI_VERSION`], and the `fibcache-core` version the plugin was built with. The host
//!    reads the rest of the [`Handshake`] only if the ABI version is its own.
//! 2. The host calls [`PluginApi::init`] once, passing a [`HostApi`]: where the plugin's
//!    `tracing` events go and the most verbose level the host wants.
//! 3. The host lists the backends with [`PluginApi::backend_count`] and
//!    [`PluginApi::backend_info`], and creates instances with [`PluginApi::create`].
//! 4. [`PluginApi::get`] and [`PluginApi::set`] run an operation on an instance;
//!    [`PluginApi::release`] frees one.
//!
//! # Ownership and threads
//! - Everything the caller passes ([`RStr`]s, [`FfiConfig`], [`HostApi`]) is **borrowed for
//!   the duration of the call**; everything a [`Done`] callback receives is borrowed for the
//!   duration of the callback. Each side copies what it keeps, so no memory is ever freed by
//!   the side that did not allocate it. The one exception is an [`Instance`]: allocated by the
//!   plugin, handed to the host as an opaque pointer, and freed by the plugin when the host
//!   calls [`PluginApi::release`].
//! - Operations complete through a [`Done`] callback that the plugin calls **exactly once**,
//!   from any thread: inline, before the call returns, when the operation finishes at its first
//!   poll (a synchronous backend never leaves the calling thread), or later from a thread of
//!   the plugin's own tokio runtime. The host turns the callback into a oneshot channel and
//!   never blocks a thread waiting for it.
//! - Every exported function catches panics; a panic becomes [`Status::PANICKED`] with the
//!   panic message, never an unwind across the boundary.
//!
//! # What a plugin must match, and what is checked at load
//! - **Checked**: that the file exists, that the platform's loader accepts it, that it has the
//!   handshake symbol, the magic value, the same [`ABI_VERSION`], a semver-compatible
//!   `fibcache-core` version (same major, or same minor below 1.0), that it was built with
//!   `panic = "unwind"` (with `abort`, a panic in the plugin would abort the server, so it is
//!   refused), that it exports at least one backend, and that no backend name is taken.
//! - **Not required**: the same `rustc`. Only C-ABI types cross, so a plugin built by another
//!   compiler version works as long as it speaks the same plugin ABI.
//! - **Not checked** (cannot be, by a loader): what the library's initialisers do when
//!   `dlopen` runs them, whether a symbol named [`HANDSHAKE_SYMBOL`] in a foreign library is
//!   large enough for the magic value to be read, and whether the plugin keeps the rules of
//!   this module (answering exactly once, valid UTF-8, not blocking the caller). A plugin runs
//!   in the server's process with its privileges: load only libraries you trust.
//! - **Never unloaded**: a loaded library stays mapped until the process exits. Unloading
//!   would need proof that no thread, task, callback or thread-local destructor of the plugin
//!   can still run, which its own tokio runtime makes impractical; the host leaks the handle.
//!
//! # Why static composition is the default
//! A backend compiled in is checked by the compiler against the exact `Cache` trait, inlined,
//! shares the server's runtime and subscriber, and cannot be built for another ABI. A plugin
//! pays for its independence: a copy of tokio and `std` per library (megabytes), a copy of
//! every key and value at the boundary, and trust in a file chosen at run time. Use plugins
//! when a backend must ship separately from the server; otherwise add a Cargo feature.

use std::ffi::c_void;
use std::marker::{PhantomData, PhantomPinned};
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::Config;

#[doc(hidden)]
pub mod guest;
mod log;

/// The version of this boundary. Bump it whenever any `#[repr(C)]` type or `extern "C"`
/// signature of this module changes; a host refuses plugins of any other version.
pub const ABI_VERSION: u32 = 2;

/// The first bytes of every [`Handshake`]: proof that the symbol is a fibcache handshake.
pub const MAGIC: [u8; 16] = *b"fibcache-plugin\0";

/// The name of the static [`Handshake`] every plugin exports.
pub const HANDSHAKE_SYMBOL: &str = "fibcache_plugin_handshake";

/// A borrowed UTF-8 string: a pointer and a length, valid for as long as the call (or the
/// static) it comes from.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RStr {
    /// The first byte; may be null when `len` is 0.
    pub ptr: *const u8,
    /// The length in bytes.
    pub len: usize,
}

impl RStr {
    /// The empty string.
    pub const EMPTY: RStr = RStr {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows `s`; the result must not outlive it.
    pub const fn new(s: &str) -> RStr {
        RStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The bytes it points to.
    ///
    /// # Safety
    /// `ptr` must point to `len` initialised bytes that stay valid and unchanged for `'a`
    /// (or `len` must be 0).
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr..ptr+len` is valid for `'a`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The string it points to, or `None` when the bytes are not UTF-8.
    ///
    /// # Safety
    /// As for [`RStr::as_bytes`].
    pub unsafe fn to_str<'a>(self) -> Option<&'a str> {
        // SAFETY: forwarded to the caller.
        std::str::from_utf8(unsafe { self.as_bytes() }).ok()
    }

    /// An owned copy, with invalid UTF-8 replaced by U+FFFD.
    ///
    /// # Safety
    /// As for [`RStr::as_bytes`].
    pub unsafe fn to_string_lossy(self) -> String {
        // SAFETY: forwarded to the caller.
        String::from_utf8_lossy(unsafe { self.as_bytes() }).into_owned()
    }
}

/// A [`Duration`] with the same range: whole seconds and nanoseconds below one second.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfiDuration {
    /// Whole seconds.
    pub secs: u64,
    /// Nanoseconds, below 1 000 000 000.
    pub nanos: u32,
}

impl From<Duration> for FfiDuration {
    fn from(d: Duration) -> Self {
        FfiDuration {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

impl From<FfiDuration> for Duration {
    fn from(d: FfiDuration) -> Self {
        // Saturates instead of panicking on a value a buggy peer sent with nanos >= 1e9.
        Duration::from_secs(d.secs).saturating_add(Duration::from_nanos(u64::from(d.nanos)))
    }
}

/// How an operation ended, as the `status` of a [`Done`] callback.
///
/// A plain integer rather than a Rust `enum`, because a value outside the known ones must be
/// representable: the host treats an unknown status as a failure.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// Success. For `get`, the text is the value; for `create`, the instance is set.
    pub const OK: Status = Status(0);
    /// A `get` found no value (`Ok(None)`).
    pub const ABSENT: Status = Status(1);
    /// The backend failed; the text says why (becomes [`Error::Backend`](crate::Error::Backend)).
    pub const FAILED: Status = Status(3);
    /// The store could not be reached; the text says why (becomes
    /// [`Error::Unavailable`](crate::Error::Unavailable)).
    pub const UNAVAILABLE: Status = Status(6);
    /// The configuration is wrong; the text says what to change (becomes
    /// [`Error::Config`](crate::Error::Config)).
    pub const CONFIG: Status = Status(4);
    /// The plugin panicked; the text is the panic message.
    pub const PANICKED: Status = Status(5);
}

/// An instance of a plugin backend, opaque to the host: created by [`PluginApi::create`],
/// freed by [`PluginApi::release`].
#[repr(C)]
pub struct Instance {
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
pub type Done =
    unsafe extern "C" fn(ctx: *mut c_void, status: Status, text: RStr, instance: *const Instance);

/// A named backend setting set explicitly in the host's [`Config`] (see
/// [`Config::with_var`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FfiVar {
    /// The setting's name, such as `REDIS_URL`.
    pub name: RStr,
    /// Its value.
    pub value: RStr,
}

/// A [`Config`] as it crosses the boundary; borrowed for the duration of
/// [`PluginApi::create`].
///
/// Only the explicitly set variables cross: for the others, the plugin's
/// [`Config::var`] reads the process environment, which it shares with the host.
#[repr(C)]
#[derive(Debug)]
pub struct FfiConfig {
    /// [`Config::capacity`].
    pub capacity: usize,
    /// [`Config::op_timeout`].
    pub op_timeout: FfiDuration,
    /// The explicit variables, `vars_len` of them.
    pub vars: *const FfiVar,
    /// How many variables `vars` points to.
    pub vars_len: usize,
}

/// A [`Config`] borrowed as an [`FfiConfig`]: holds the variable array the `FfiConfig`
/// points into.
#[derive(Debug)]
pub struct ConfigView<'a> {
    ffi: FfiConfig,
    _vars: Vec<FfiVar>,
    _config: PhantomData<&'a Config>,
}

impl<'a> ConfigView<'a> {
    /// Borrows `config`.
    pub fn new(config: &'a Config) -> Self {
        let vars: Vec<FfiVar> = config
            .explicit_vars()
            .map(|(name, value)| FfiVar {
                name: RStr::new(name),
                value: RStr::new(value),
            })
            .collect();
        let ffi = FfiConfig {
            capacity: config.capacity().get(),
            op_timeout: config.op_timeout().into(),
            vars: vars.as_ptr(),
            vars_len: vars.len(),
        };
        ConfigView {
            ffi,
            _vars: vars,
            _config: PhantomData,
        }
    }

    /// The `FfiConfig`, valid while `self` lives.
    pub fn as_ffi(&self) -> *const FfiConfig {
        &self.ffi
    }
}

impl FfiConfig {
    /// An owned [`Config`] with the same settings.
    ///
    /// # Safety
    /// Every pointer in `self` must be valid as documented on the fields.
    pub unsafe fn to_config(&self) -> Config {
        let mut config = Config::default().with_op_timeout(self.op_timeout.into());
        if let Some(capacity) = NonZeroUsize::new(self.capacity) {
            config = config.with_capacity(capacity);
        }
        let vars: &[FfiVar] = if self.vars_len == 0 || self.vars.is_null() {
            &[]
        } else {
            // SAFETY: the caller guarantees `vars` points to `vars_len` entries.
            unsafe { std::slice::from_raw_parts(self.vars, self.vars_len) }
        };
        for var in vars {
            // SAFETY: as above, each entry's strings are valid.
            let (name, value) =
                unsafe { (var.name.to_string_lossy(), var.value.to_string_lossy()) };
            config = config.with_var(name, value);
        }
        config
    }
}

/// Log levels as they cross the boundary (`tracing`'s, numbered by verbosity).
pub mod level {
    /// Nothing is forwarded.
    pub const OFF: u32 = 0;
    /// `ERROR`.
    pub const ERROR: u32 = 1;
    /// `WARN`.
    pub const WARN: u32 = 2;
    /// `INFO`.
    pub const INFO: u32 = 3;
    /// `DEBUG`.
    pub const DEBUG: u32 = 4;
    /// `TRACE`.
    pub const TRACE: u32 = 5;
}

/// One `tracing` event of the plugin, formatted; borrowed for the duration of the log callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LogRecord {
    /// One of [`level`]'s constants (never `OFF`).
    pub level: u32,
    /// The event's target in the plugin, such as `memcache_plugin`.
    pub target: RStr,
    /// The message followed by the other fields as ` key=value`.
    pub message: RStr,
    /// The source file, or empty.
    pub file: RStr,
    /// The source line, or 0.
    pub line: u32,
}

/// The host's log sink: called for each enabled event, from any thread of the plugin.
pub type LogFn = unsafe extern "C" fn(ctx: *mut c_void, record: *const LogRecord);

/// What the host gives the plugin at [`PluginApi::init`]; borrowed for the duration of the
/// call (the plugin copies the fields).
#[repr(C)]
#[derive(Debug)]
pub struct HostApi {
    /// The host's [`ABI_VERSION`].
    pub abi_version: u32,
    /// The most verbose [`level`] the host wants to receive.
    pub max_level: u32,
    /// Passed back to `log`; must stay valid for as long as the process runs.
    pub log_ctx: *mut c_void,
    /// Where the plugin's events go; `None` drops them.
    pub log: Option<LogFn>,
}

/// A backend a plugin exports; the strings are static in the plugin.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BackendInfo {
    /// The name it is selected by.
    pub name: RStr,
    /// Its one-line summary.
    pub summary: RStr,
}

/// The functions of a plugin, reached through [`Handshake::api`].
///
/// Each `ctx` is the host's and is passed back, untouched, to `done`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginApi {
    /// Sets the plugin up; called once, before anything below. Answers through `done`
    /// before it returns.
    pub init: unsafe extern "C" fn(host: *const HostApi, ctx: *mut c_void, done: Done),
    /// How many backends the plugin exports.
    pub backend_count: unsafe extern "C" fn() -> usize,
    /// Writes the backend `index` to `out`; [`Status::OK`] or [`Status::FAILED`] for an index
    /// out of range.
    pub backend_info: unsafe extern "C" fn(index: usize, out: *mut BackendInfo) -> Status,
    /// Creates an instance of the backend `index` from `config`.
    pub create:
        unsafe extern "C" fn(index: usize, config: *const FfiConfig, ctx: *mut c_void, done: Done),
    /// Reads `key`: [`Status::OK`] with the value, [`Status::ABSENT`],
    /// or a failure.
    pub get:
        unsafe extern "C" fn(instance: *const Instance, key: RStr, ctx: *mut c_void, done: Done),
    /// Stores `value` under `key` for `ttl`.
    pub set: unsafe extern "C" fn(
        instance: *const Instance,
        key: RStr,
        value: RStr,
        ttl: FfiDuration,
        ctx: *mut c_void,
        done: Done,
    ),
    /// Frees an instance; operations already started on it still complete.
    pub release: unsafe extern "C" fn(instance: *const Instance),
}

/// The part of the [`Handshake`] that every ABI version keeps, so that any host can tell any
/// plugin which versions it speaks.
#[repr(C)]
#[derive(Debug)]
pub struct HandshakeHead {
    /// Always [`MAGIC`].
    pub magic: [u8; 16],
    /// The plugin's [`ABI_VERSION`].
    pub abi_version: u32,
    /// The version of the `fibcache-core` the plugin was built with.
    pub core_version: RStr,
}

/// The static a plugin exports as [`HANDSHAKE_SYMBOL`]; written by
/// [`export_plugin!`](crate::export_plugin).
#[repr(C)]
#[derive(Debug)]
pub struct Handshake {
    /// Read first, and alone until its ABI version is known to match.
    pub head: HandshakeHead,
    /// The plugin crate's `CARGO_PKG_NAME`.
    pub plugin_crate: RStr,
    /// The plugin crate's `CARGO_PKG_VERSION`.
    pub plugin_version: RStr,
    /// 1 when the plugin was built with `panic = "unwind"` (so panics can be caught), 0 with
    /// `abort`.
    pub panic_unwind: u8,
    /// The plugin's functions.
    pub api: *const PluginApi,
}

// SAFETY: a `Handshake` is immutable static data whose pointers point to other immutable
// statics (string literals and the `PluginApi` of the same library).
unsafe impl Sync for Handshake {}

impl Handshake {
    /// A handshake for the crate `plugin_crate`; used by [`export_plugin!`](crate::export_plugin).
    #[doc(hidden)]
    pub const fn new(
        abi_version: u32,
        plugin_crate: &'static str,
        plugin_version: &'static str,
        panic_unwind: bool,
        api: &'static PluginApi,
    ) -> Self {
        Handshake {
            head: HandshakeHead {
                magic: MAGIC,
                abi_version,
                core_version: RStr::new(crate::VERSION),
            },
            plugin_crate: RStr::new(plugin_crate),
            plugin_version: RStr::new(plugin_version),
            panic_unwind: panic_unwind as u8,
            api,
        }
    }
}

/// Whether a plugin built with `fibcache-core` `plugin` can be loaded by a host built with
/// `host`: the same major version, or below 1.0 the same minor version (Cargo's rule).
pub fn core_versions_compatible(plugin: &str, host: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
    match (parts(plugin), parts(host)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// Exports the backends registered by this crate, so that a host built with
/// `--features dynamic` can load this `cdylib` with `--plugin`.
///
/// Write it once, in the crate whose [`register_backend!`](crate::register_backend) lines
/// should be exported (only those are: backends of dependencies are not). See
/// [`plugin`](crate::plugin) for the protocol and what a plugin must match.
///
/// # Example
/// The whole of a plugin crate's `src/lib.rs`, with `crate-type = ["cdylib"]` in its
/// `Cargo.toml` and `fibcache-core` with the `plugin` feature as a dependency:
/// ```no_run
/// use std::time::Duration;
/// use fibcache_core::{async_trait, export_plugin, register_backend, Cache, Config, Result};
///
/// struct Forgetful;
///
/// #[async_trait]
/// impl Cache for Forgetful {
///     async fn get(&self, _key: &str) -> Result<Option<String>> {
///         Ok(None)
///     }
///     async fn set(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// async fn create(_config: &Config) -> Result<Forgetful> {
///     Ok(Forgetful)
/// }
///
/// register_backend! {
///     name: "forgetful",
///     summary: "forgets everything, from a plugin",
///     factory: create,
/// }
///
/// export_plugin!();
/// # fn main() {}
/// ```
///
/// (An `@abi_version N` form exists only so that a test fixture can claim another ABI
/// version; a plugin that uses it is refused by every host.)
#[macro_export]
macro_rules! export_plugin {
    () => {
        $crate::export_plugin!(@abi_version $crate::plugin::ABI_VERSION);
    };
    (@abi_version $abi:expr) => {
        const _: () = {
            unsafe extern "C" fn __fibcache_plugin_init(
                host: *const $crate::plugin::HostApi,
                ctx: *mut ::std::ffi::c_void,
                done: $crate::plugin::Done,
            ) {
                // SAFETY: the host's obligations for `init` are passed on unchanged.
                unsafe {
                    $crate::plugin::guest::init(::std::env!("CARGO_PKG_NAME"), host, ctx, done)
                }
            }

            static __FIBCACHE_PLUGIN_API: $crate::plugin::PluginApi =
                $crate::plugin::guest::api(__fibcache_plugin_init);

            #[unsafe(export_name = "fibcache_plugin_handshake")]
            pub static __FIBCACHE_PLUGIN_HANDSHAKE: $crate::plugin::Handshake =
                $crate::plugin::Handshake::new(
                    $abi,
                    ::std::env!("CARGO_PKG_NAME"),
                    ::std::env!("CARGO_PKG_VERSION"),
                    ::std::cfg!(panic = "unwind"),
                    &__FIBCACHE_PLUGIN_API,
                );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_versions_follow_cargo_compatibility() {
        assert!(core_versions_compatible("0.1.0", "0.1.7"));
        assert!(!core_versions_compatible("0.1.0", "0.2.0"));
        assert!(core_versions_compatible("1.2.0", "1.9.3"));
        assert!(!core_versions_compatible("1.2.0", "2.0.0"));
        assert!(core_versions_compatible("0.3.1-rc.1", "0.3.0"));
        assert!(!core_versions_compatible("garbage", "0.1.0"));
    }

    #[test]
    fn durations_cross_exactly() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(300),
            Duration::new(15, 999_999_999),
            Duration::MAX,
        ] {
            assert_eq!(Duration::from(FfiDuration::from(d)), d);
        }
    }

    #[test]
    fn a_config_crosses_with_its_explicit_vars() {
        let config = Config::default()
            .with_capacity(NonZeroUsize::new(77).unwrap())
            .with_op_timeout(Duration::from_millis(1500))
            .with_var("REDIS_URL", "redis://127.0.0.1:1")
            .with_var("EMPTY", "");
        let view = ConfigView::new(&config);
        // SAFETY: `view` is alive and points into `config`.
        let back = unsafe { (*view.as_ffi()).to_config() };
        assert_eq!(format!("{back:?}"), format!("{config:?}"));
        assert_eq!(
            back.var("REDIS_URL").as_deref(),
            Some("redis://127.0.0.1:1")
        );
        assert_eq!(back.explicit_vars().count(), 2);
    }

    /// The layout of ABI version 2 on 64-bit targets. A change here without an
    /// [`ABI_VERSION`] bump would make old plugins misread: this test is the reminder.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_abi_layout_is_that_of_version_2() {
        use std::mem::{offset_of, size_of};
        assert_eq!(ABI_VERSION, 2);
        assert_eq!(offset_of!(HandshakeHead, abi_version), 16);
        assert_eq!(offset_of!(HandshakeHead, core_version), 24);
        assert_eq!(size_of::<HandshakeHead>(), 40);
        assert_eq!(size_of::<Handshake>(), 88);
        assert_eq!(size_of::<PluginApi>(), 7 * 8);
        assert_eq!(size_of::<HostApi>(), 24);
        assert_eq!(size_of::<FfiConfig>(), 40);
        assert_eq!(size_of::<LogRecord>(), 64);
    }
}
