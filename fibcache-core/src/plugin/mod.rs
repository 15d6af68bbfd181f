//! The C-ABI boundary between the fibcache server and cache backends loaded from shared
//! libraries: both of its sides, and every `unsafe` line of the project.
//!
//! A plugin is a `cdylib` that carries its own copy of every crate it uses: its own `inventory`
//! registry, its own tokio (with no runtime until it makes one), its own `tracing` dispatcher,
//! possibly its own allocator, and code from a compiler whose Rust layouts the host cannot
//! know. So nothing Rust-specific crosses: only `#[repr(C)]` data and `extern "C"` functions.
//! The host wraps each plugin backend in a [`Cache`](crate::Cache) of its own and adds it to
//! the same [`Registry`](crate::Registry) as the built-in ones.
//!
//! This module is the only place in the workspace allowed `unsafe` code: the FFI types, the
//! guest functions [`export_plugin!`](crate::export_plugin) exports, and the host loader all
//! live here, so that the invariants below are kept, and reviewed, in one place.
//!
//! # Writing a plugin
//! Write an ordinary backend with [`register_backend!`](crate::register_backend), add one
//! [`export_plugin!`](crate::export_plugin) line (its documentation shows a whole plugin), and
//! build the crate as a `cdylib` (`crate-type = ["cdylib"]`) against `fibcache-core` with the
//! `plugin` feature; `examples/memcache_plugin.rs` and `examples/rediscache_plugin.rs` in the
//! repository are complete ones. The export covers exactly the backends registered by the
//! crate that invokes the macro (`CARGO_PKG_NAME`); backends of linked dependencies, such as
//! `nop` or `memory`, which sit in the library's own `inventory` too, are not re-exported.
//!
//! # Loading plugins
//! [`load_plugins`] adds the backends of each library to a [`Registry`](crate::Registry), or
//! says with a [`LoadError`] why a library was refused. The server calls it for `--plugin`.
//!
//! # The protocol
//! 1. The host `dlopen`s the library and reads the static `fibcache_plugin_handshake` before
//!    calling anything. Its head is frozen for every ABI version: a magic value, the
//!    [`ABI_VERSION`], and the `fibcache-core` version the plugin was built with. The host
//!    reads the rest of the handshake (the plugin crate, its panic strategy, the function
//!    table) only if the ABI version is its own.
//! 2. The host calls the table's `init` once, passing a host table: where the plugin's
//!    `tracing` events go and the most verbose level the host wants.
//! 3. The host lists the backends with `backend_count` and `backend_info`, and creates
//!    instances with `create`, passing the [`Config`](crate::Config) as a C struct.
//! 4. `get` and `set` run an operation on an instance; `release` frees one. Each answers
//!    through a completion callback with a status: OK, ABSENT (a `get` with no value), FAILED
//!    ([`ErrorKind::Backend`](crate::ErrorKind::Backend)), UNAVAILABLE
//!    ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable)), CONFIG
//!    ([`ErrorKind::Config`](crate::ErrorKind::Config)) or PANICKED; any other status is a
//!    failure.
//! 5. The optional capabilities of [`Cache`](crate::Cache) cross as optional entries of the
//!    function table: `capabilities` says, once per instance, which of them the instance
//!    offers ([`Expiry`](crate::Expiry), [`Claims`](crate::Claims)); `remaining`, `claim`,
//!    `renew` and `release_claim` run their operations like `get`. The host's cache offers a
//!    capability only when the table has its entries and the instance says yes, so a plugin
//!    without them loads and offers none.
//!
//! # Why one version gate
//! The ABI version is the only thing a host checks: it changes whenever anything that
//! crosses changes, and nothing else decides whether a plugin can work. The `fibcache-core`
//! version a plugin was built with is in the handshake too, for the log line (`core=`) and to
//! name the fix in an error, but does not gate: a plugin built against another
//! `fibcache-core` that speaks the same ABI loads, and one that speaks another ABI is refused
//! whatever its core version. A second, semver gate on the core version would refuse plugins
//! that work (a core release that changes nothing at the boundary) and accept none that the
//! ABI gate refuses.
//!
//! # How the ABI grows
//! The function table, the host table and the config struct each begin with `size`, the
//! size of the struct as its writer built it. A reader requires the mandatory part of ABI
//! version 2, copies whatever else the writer wrote up to the end of the struct it knows, and
//! reads every entry the writer did not write as zero.
//! - **A capability added later is an appended, nullable entry** (an
//!   `Option<unsafe extern "C" fn ...>`, or a field whose 0 means "absent"), used only when it
//!   is present: **no ABI bump**. An older plugin leaves it out and keeps loading; a newer one
//!   is read up to what this host knows.
//! - **A change to an existing entry is an ABI bump**: its type, its meaning, its place, or
//!   anything in the frozen head. A host refuses a plugin of any other ABI version, naming
//!   both versions. A table smaller than the mandatory part is refused too.
//!
//! # Ownership and threads
//! - Everything the caller passes (strings, the config, the host table) is **borrowed for the
//!   duration of the call**; everything a completion callback receives is borrowed for the
//!   duration of the callback. Each side copies what it keeps, so no memory is ever freed by
//!   the side that did not allocate it. The one exception is an instance: allocated by the
//!   plugin, handed to the host as an opaque pointer, and freed by the plugin when the host
//!   calls `release`.
//! - Operations complete through a callback that the plugin calls **exactly once**, from a
//!   thread of the plugin's own tokio runtime (or inline, before the call returns, when the
//!   plugin refuses the arguments). The host turns the callback into a oneshot channel and
//!   never blocks a thread waiting for it.
//! - **A call never blocks the host's thread.** Each call that starts an operation only
//!   copies its arguments and spawns the operation on the plugin's runtime, so it returns at
//!   once whatever the backend does: a backend that blocks (`std::thread::sleep` in `get`)
//!   blocks a thread of its own runtime, never an async worker of the server, and the
//!   server's `--cache-timeout` answers the request. The guest side explains the choice and
//!   what it costs. When every thread of the plugin's runtime is stuck, calls still return at
//!   once and queue there; each times out in the host, which then skips the cache for a
//!   moment. Past 4096 unanswered operations on one instance, the host refuses new ones at
//!   once (as unavailable) instead of queuing more.
//! - **Untrusted counts and lengths are bounded** before the host allocates or copies
//!   anything for them: the number of backends, their names and summaries, the crate name
//!   and versions of the handshake, a log event, an error message (cut), and a value (longer
//!   than the instance's [`Config::max_value_len`](crate::Config::max_value_len), when set, it
//!   is refused unread, as a failure of the backend).
//! - Every exported function catches panics; a panic becomes the PANICKED status with the
//!   panic message and location, never an unwind across the boundary. The plugin does not log
//!   such a panic itself: the host reports it once, as the operation's error (the server logs
//!   it with its other cache failures, throttled).
//!
//! # What a plugin must match, and what is checked at load
//! - **Checked**: that the file exists, that the platform's loader accepts it, that it has the
//!   handshake symbol, the magic value, the same [`ABI_VERSION`], that it was built with
//!   `panic = "unwind"` (with `abort`, a panic in the plugin would abort the server, so it is
//!   refused), that its function table has at least the mandatory entries, that it exports at
//!   least one backend and at most [`MAX_BACKENDS`], that names, summaries and versions are
//!   within their bounds, and that no backend name is taken.
//! - **Not required**: the same `rustc`, nor the same `fibcache-core`. Only C-ABI types cross,
//!   so a plugin built by another compiler, against another `fibcache-core`, works as long as
//!   it speaks the same plugin ABI.
//! - **Not checked** (cannot be, by a loader): what the library's initialisers do when
//!   `dlopen` runs them, whether a symbol named `fibcache_plugin_handshake` in a foreign
//!   library is large enough for the magic value to be read, and whether the plugin keeps the
//!   rules of this module (answering exactly once, pointers that point where they say, not
//!   blocking in its exported functions, which a plugin written with `export_plugin!` never
//!   does). The guarantee that a call never blocks the host comes from the plugin's copy of
//!   this module: a plugin built with fibcache-core 0.2 speaks the same ABI and loads, but
//!   its guest side polls each operation once on the caller's thread, so a backend of it that
//!   blocks can block the server; rebuilding it against this version removes that. A plugin runs in the server's process with its privileges: load only libraries
//!   you trust.
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
//!
//! # Module layout
//! `abi` holds every type and constant that crosses (`abi::capability`: the optional
//! capabilities); `guest` the functions a plugin exports (`guest::reply`: answering exactly
//! once, and panics; `log`: forwarding its `tracing` events); `host` the loader and its
//! checks; `proxy` the host's `Cache` over a plugin instance.

mod abi;
mod guest;
mod host;
mod load_error;
mod log;
mod proxy;
mod reload;

pub use abi::ABI_VERSION;
pub use host::{load_plugins, MAX_BACKENDS, MAX_NAME_LEN, MAX_SUMMARY_LEN, MAX_VERSION_LEN};
pub use load_error::{LoadError, LoadErrorKind};
pub use reload::{Plugins, MAX_RELOADS};

// Named by the expansion of `export_plugin!` in the plugin crate, and by nothing else.
#[doc(hidden)]
pub use abi::Handshake;
#[doc(hidden)]
pub use guest::ExportedCrate;

/// Exports the backends registered by this crate, so that a host built with
/// `--features dynamic` can load this `cdylib` with `--plugin`.
///
/// Write it once, in the crate whose [`register_backend!`](crate::register_backend) lines
/// should be exported (only those are: backends of dependencies are not). See
/// [`plugin`](crate::plugin) for the protocol and what a plugin must match.
///
/// The expansion needs no `unsafe` in the invoking crate, which may say
/// `#![forbid(unsafe_code)]`: it names a type of its own and the handshake static, whose
/// `export_name` attribute `rustc` does not lint inside the expansion of another crate's
/// macro.
///
/// # Example
/// The whole of a plugin crate's `src/lib.rs`, with `crate-type = ["cdylib"]` in its
/// `Cargo.toml` and `fibcache-core` with the `plugin` feature as a dependency:
/// ```no_run
/// #![forbid(unsafe_code)]
///
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
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "plugin")))]
macro_rules! export_plugin {
    () => {
        $crate::export_plugin!(@export);
    };
    // Hidden from the prose above on purpose, as `#[doc(hidden)]` would hide it: for test
    // fixtures only. `export_plugin!(@fixture abi_version = 1, core_version = "0.1.0")` (any
    // of `abi_version = u32`, `core_version = &'static str`, `panic_unwind = false`) exports a
    // handshake that claims another ABI version, another core version or `panic = "abort"`,
    // so that tests can show what a host does with it. It can only get a plugin refused (the
    // ABI version, the panic strategy) or change what the log shows (the core version): no
    // claim makes a host trust a plugin more.
    (@fixture $($claim:ident = $value:expr),+ $(,)?) => {
        $crate::export_plugin!(@export $($claim = $value),+);
    };
    (@export $($claim:ident = $value:expr),*) => {
        const _: () = {
            struct __FibcacheExported;

            impl $crate::plugin::ExportedCrate for __FibcacheExported {
                const NAME: &'static str = ::std::env!("CARGO_PKG_NAME");
                const VERSION: &'static str = ::std::env!("CARGO_PKG_VERSION");
            }

            #[unsafe(export_name = "fibcache_plugin_handshake")]
            static __FIBCACHE_PLUGIN_HANDSHAKE: $crate::plugin::Handshake =
                $crate::plugin::Handshake::of::<__FibcacheExported>()$(.$claim($value))*;
        };
    };
}
