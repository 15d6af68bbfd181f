//! The values that cross inside the tables of [`super`], each next to its conversions from and
//! to the Rust type it stands for, so that every mapping (log level to number, error to
//! status, `Config` to struct) is written once and used by both sides.

use std::marker::PhantomData;
use std::mem::{offset_of, size_of};
use std::num::NonZeroUsize;
use std::time::Duration;

use tracing::level_filters::LevelFilter;
use tracing::Level;

use super::Extensible;
use crate::{Config, Error, ErrorKind};

/// A borrowed UTF-8 string: a pointer and a length, valid for `'a`, the call (or the static)
/// it comes from.
///
/// The lifetime makes the compiler keep the rule on the side that writes one: [`RStr::new`]
/// borrows its `&'a str`. On the side that reads one, `'a` is only what the protocol promises
/// (the other side may be buggy), so reading stays `unsafe` and the documentation of each use
/// says how long the bytes live.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RStr<'a> {
    /// The first byte; may be null when `len` is 0.
    ptr: *const u8,
    /// The length in bytes; not to be trusted before it is checked against a bound.
    len: usize,
    _borrow: PhantomData<&'a str>,
}

impl RStr<'static> {
    /// The empty string.
    pub(crate) const EMPTY: RStr<'static> = RStr::new("");
}

impl<'a> RStr<'a> {
    /// Borrows `s` for as long as it lives.
    pub(crate) const fn new(s: &'a str) -> RStr<'a> {
        RStr {
            ptr: s.as_ptr(),
            len: s.len(),
            _borrow: PhantomData,
        }
    }

    /// A string of `len` bytes at `ptr`, as a buggy or hostile writer may claim one.
    #[cfg(test)]
    pub(crate) const fn from_raw_parts(ptr: *const u8, len: usize) -> RStr<'a> {
        RStr {
            ptr,
            len,
            _borrow: PhantomData,
        }
    }

    /// The bytes it points to.
    ///
    /// # Safety
    /// `ptr` must point to `len` initialised bytes that stay valid and unchanged for `'a`
    /// (or `len` must be 0).
    pub(crate) unsafe fn as_bytes(self) -> &'a [u8] {
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
    pub(crate) unsafe fn to_str(self) -> Option<&'a str> {
        // SAFETY: forwarded to the caller.
        std::str::from_utf8(unsafe { self.as_bytes() }).ok()
    }

    /// An owned copy, with invalid UTF-8 replaced by U+FFFD; for what the host writes (the
    /// plugin trusts its host), never for what a plugin writes.
    ///
    /// # Safety
    /// As for [`RStr::as_bytes`].
    pub(crate) unsafe fn to_string_lossy(self) -> String {
        // SAFETY: forwarded to the caller.
        String::from_utf8_lossy(unsafe { self.as_bytes() }).into_owned()
    }

    /// The bytes it points to when there are at most `max` of them; otherwise the length the
    /// writer claims, and nothing is read.
    ///
    /// # Safety
    /// As for [`RStr::as_bytes`].
    pub(crate) unsafe fn bytes_within(self, max: usize) -> Result<&'a [u8], usize> {
        if self.len > max {
            return Err(self.len);
        }
        // SAFETY: forwarded to the caller.
        Ok(unsafe { self.as_bytes() })
    }

    /// The first `max` bytes at most, with invalid UTF-8 (a character cut at the end
    /// included) replaced by U+FFFD, and `…` after a text that was cut.
    ///
    /// # Safety
    /// As for [`RStr::as_bytes`].
    pub(crate) unsafe fn to_string_truncated(self, max: usize) -> String {
        let cut = self.len > max;
        let shown = RStr {
            len: self.len.min(max),
            ..self
        };
        // SAFETY: forwarded to the caller; `shown` is a prefix of `self`.
        let mut text = String::from_utf8_lossy(unsafe { shown.as_bytes() }).into_owned();
        if cut {
            text.push('…');
        }
        text
    }
}

/// A [`Duration`] with the same range: whole seconds and nanoseconds below one second.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FfiDuration {
    /// Whole seconds.
    secs: u64,
    /// Nanoseconds, below 1 000 000 000.
    nanos: u32,
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

/// How an operation ended, as the `status` of a [`Done`](super::Done) callback.
///
/// A plain integer rather than a Rust `enum`, because a value outside the known ones must be
/// representable: the host treats an unknown status as a failure. Both directions of the
/// mapping to [`Error`] are here: [`Status::of_error`] in the plugin, [`Status::into_error`]
/// in the host.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Status(u32);

impl Status {
    /// Success. For `get`, the text is the value; for `create`, the instance is set.
    pub(crate) const OK: Status = Status(0);
    /// A `get` found no value (`Ok(None)`).
    pub(crate) const ABSENT: Status = Status(1);
    /// The backend failed; the text says why (becomes [`ErrorKind::Backend`](crate::ErrorKind::Backend)).
    pub(crate) const FAILED: Status = Status(3);
    /// The configuration is wrong; the text says what to change (becomes [`ErrorKind::Config`](crate::ErrorKind::Config)).
    pub(crate) const CONFIG: Status = Status(4);
    /// The plugin panicked; the text is the panic message, followed by where it happened when
    /// the plugin knows it.
    pub(crate) const PANICKED: Status = Status(5);
    /// The store could not be reached; the text says why (becomes [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable)).
    pub(crate) const UNAVAILABLE: Status = Status(6);

    /// The status and text that carry `err` to the host, where [`Status::into_error`] turns
    /// them back into the same kind of error.
    pub(crate) fn of_error(err: &Error) -> (Status, String) {
        match err.kind() {
            ErrorKind::Unavailable => (Status::UNAVAILABLE, err.chain()),
            ErrorKind::Config => (Status::CONFIG, err.message().unwrap_or_default().to_owned()),
            _ => (Status::FAILED, err.chain()),
        }
    }

    /// The error of the backend `backend` that this status (not [`Status::OK`]) and its
    /// `text` stand for.
    pub(crate) fn into_error(self, backend: &str, text: String) -> Error {
        match self {
            Status::CONFIG => Error::config(backend, text),
            Status::UNAVAILABLE => Error::unavailable(backend, text),
            _ => Error::backend(backend, self.describe(text)),
        }
    }

    /// A failure status and its text in words.
    pub(crate) fn describe(self, text: String) -> String {
        match self {
            Status::PANICKED => format!("the plugin panicked: {text}"),
            Status::FAILED | Status::CONFIG | Status::UNAVAILABLE => text,
            Status::OK | Status::ABSENT => {
                format!(
                    "the plugin answered status {}, which this operation cannot end with",
                    self.0
                )
            }
            Status(other) => format!("the plugin answered with unknown status {other}"),
        }
    }
}

/// A log level as it crosses the boundary: `tracing`'s levels numbered by verbosity, 0 for
/// "nothing". Both sides convert through this type only.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FfiLevel(pub(crate) u32);

impl FfiLevel {
    pub(crate) const OFF: FfiLevel = FfiLevel(0);
    const ERROR: FfiLevel = FfiLevel(1);
    const WARN: FfiLevel = FfiLevel(2);
    const INFO: FfiLevel = FfiLevel(3);
    const DEBUG: FfiLevel = FfiLevel(4);
    const TRACE: FfiLevel = FfiLevel(5);
}

impl From<LevelFilter> for FfiLevel {
    fn from(filter: LevelFilter) -> Self {
        match filter.into_level() {
            None => FfiLevel::OFF,
            Some(Level::ERROR) => FfiLevel::ERROR,
            Some(Level::WARN) => FfiLevel::WARN,
            Some(Level::INFO) => FfiLevel::INFO,
            Some(Level::DEBUG) => FfiLevel::DEBUG,
            Some(Level::TRACE) => FfiLevel::TRACE,
        }
    }
}

impl From<Level> for FfiLevel {
    fn from(level: Level) -> Self {
        LevelFilter::from_level(level).into()
    }
}

impl From<FfiLevel> for LevelFilter {
    /// A number above `TRACE`'s, from a peer that knows more levels, is `TRACE`.
    fn from(level: FfiLevel) -> Self {
        match level {
            FfiLevel::OFF => LevelFilter::OFF,
            FfiLevel::ERROR => LevelFilter::ERROR,
            FfiLevel::WARN => LevelFilter::WARN,
            FfiLevel::INFO => LevelFilter::INFO,
            FfiLevel::DEBUG => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    }
}

/// A named backend setting set explicitly in the host's [`Config`] (see
/// [`Config::with_var`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FfiVar<'a> {
    /// The setting's name, such as `REDIS_URL`.
    name: RStr<'a>,
    /// Its value.
    value: RStr<'a>,
}

/// A [`Config`] as it crosses the boundary; borrowed for the duration of
/// [`PluginApi::create`](super::PluginApi::create), and read with
/// [`read_extensible`](super::read_extensible).
///
/// Only the explicitly set variables cross: for the others, the plugin's [`Config::var`]
/// reads the process environment, which it shares with the host.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct FfiConfig<'a> {
    /// The size of this struct as the host built it.
    size: usize,
    /// [`Config::capacity`].
    capacity: usize,
    /// [`Config::op_timeout`].
    op_timeout: FfiDuration,
    /// The explicit variables, `vars_len` of them.
    vars: *const FfiVar<'a>,
    /// How many variables `vars` points to.
    vars_len: usize,
    /// [`Config::max_value_len`], 0 for "not said" (the plugin keeps the default bound).
    /// Appended to ABI version 2: a host built before it writes a struct that ends at
    /// `vars_len`, and a plugin reads that as 0.
    max_value_len: usize,
}

// SAFETY: `#[repr(C)]`, begins with `size`; the mandatory part ends after `vars_len`, the last
// entry of ABI version 2 as it first shipped, and `max_value_len`, appended since, is valid as
// 0 ("no bound").
unsafe impl Extensible for FfiConfig<'_> {
    const MANDATORY: usize = offset_of!(FfiConfig, vars_len) + size_of::<usize>();
    const OPTIONAL_ENDS: &'static [usize] =
        &[offset_of!(FfiConfig, max_value_len) + size_of::<usize>()];
}

impl FfiConfig<'_> {
    /// An owned [`Config`] with the same settings.
    ///
    /// # Safety
    /// Every pointer in `self` must be valid as documented on the fields.
    pub(crate) unsafe fn to_config(&self) -> Config {
        let mut config = Config::default().with_op_timeout(self.op_timeout.into());
        if let Some(capacity) = NonZeroUsize::new(self.capacity) {
            config = config.with_capacity(capacity);
        }
        if let Some(max) = NonZeroUsize::new(self.max_value_len) {
            config = config.with_max_value_len(max);
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

/// A [`Config`] borrowed as an [`FfiConfig`]: holds the variable array the `FfiConfig`
/// points into.
#[derive(Debug)]
pub(crate) struct ConfigView<'a> {
    ffi: FfiConfig<'a>,
    /// What `ffi.vars` points into: a heap buffer, so moving the view does not move it.
    _vars: Vec<FfiVar<'a>>,
}

impl<'a> ConfigView<'a> {
    /// Borrows `config`.
    pub(crate) fn new(config: &'a Config) -> Self {
        let vars: Vec<FfiVar<'a>> = config
            .explicit_vars()
            .map(|(name, value)| FfiVar {
                name: RStr::new(name),
                value: RStr::new(value),
            })
            .collect();
        let ffi = FfiConfig {
            size: size_of::<FfiConfig>(),
            capacity: config.capacity().get(),
            op_timeout: config.op_timeout().into(),
            vars: vars.as_ptr(),
            vars_len: vars.len(),
            max_value_len: config.max_value_len().map_or(0, NonZeroUsize::get),
        };
        ConfigView { ffi, _vars: vars }
    }

    /// The `FfiConfig`, valid while `self` lives.
    pub(crate) fn as_ffi(&self) -> *const FfiConfig<'a> {
        &self.ffi
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::abi::read_extensible;

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
            .with_max_value_len(NonZeroUsize::new(19).unwrap())
            .with_var("REDIS_URL", "redis://127.0.0.1:1")
            .with_var("EMPTY", "");
        let view = ConfigView::new(&config);
        // SAFETY: `view` is alive and points into `config`.
        let back = unsafe { read_extensible(view.as_ffi()).unwrap().to_config() };
        assert_eq!(format!("{back:?}"), format!("{config:?}"));
        assert_eq!(
            back.var("REDIS_URL").as_deref(),
            Some("redis://127.0.0.1:1")
        );
        assert_eq!(back.explicit_vars().count(), 2);
        assert_eq!(back.max_value_len(), NonZeroUsize::new(19));

        let defaults = Config::default();
        let view = ConfigView::new(&defaults);
        // SAFETY: as above.
        let back = unsafe { read_extensible(view.as_ffi()).unwrap().to_config() };
        assert_eq!(
            back.max_value_len(),
            Some(crate::registry::DEFAULT_MAX_VALUE_LEN)
        );
    }

    /// An `FfiConfig` as a host built before `max_value_len` was appended writes it.
    #[repr(C)]
    struct BeforeMaxValueLen {
        size: usize,
        capacity: usize,
        op_timeout: FfiDuration,
        vars: *const FfiVar<'static>,
        vars_len: usize,
    }

    #[test]
    fn a_config_written_without_the_bound_reads_as_the_default_bound() {
        let old = BeforeMaxValueLen {
            size: size_of::<BeforeMaxValueLen>(),
            capacity: 77,
            op_timeout: Duration::from_millis(1500).into(),
            vars: std::ptr::null(),
            vars_len: 0,
        };
        assert_eq!(old.size, FfiConfig::MANDATORY);
        assert!(old.size < size_of::<FfiConfig>());
        // SAFETY: `old` holds the `size` bytes it claims, laid out as the start of an
        // `FfiConfig`; `read_extensible` copies no more than them. It has no variables.
        let back = unsafe {
            read_extensible(std::ptr::from_ref(&old).cast::<FfiConfig>())
                .unwrap()
                .to_config()
        };
        assert_eq!(
            back.max_value_len(),
            Some(crate::registry::DEFAULT_MAX_VALUE_LEN)
        );
        assert_eq!(back.capacity().get(), 77);
        assert_eq!(back.op_timeout(), Duration::from_millis(1500));
    }

    #[test]
    fn every_level_crosses_and_comes_back() {
        let filters = [
            LevelFilter::OFF,
            LevelFilter::ERROR,
            LevelFilter::WARN,
            LevelFilter::INFO,
            LevelFilter::DEBUG,
            LevelFilter::TRACE,
        ];
        for (number, filter) in filters.into_iter().enumerate() {
            let ffi = FfiLevel::from(filter);
            assert_eq!(ffi, FfiLevel(number as u32));
            assert_eq!(LevelFilter::from(ffi), filter);
        }
        assert_eq!(FfiLevel::from(Level::WARN), FfiLevel::WARN);
        assert_eq!(LevelFilter::from(FfiLevel(99)), LevelFilter::TRACE);
    }

    #[test]
    fn errors_cross_as_the_same_kind() {
        let cases = [
            Error::unavailable("x", "connection refused"),
            Error::backend("x", "WRONGTYPE"),
            Error::config("x", "set REDIS_URL"),
        ];
        for err in cases {
            let (status, text) = Status::of_error(&err);
            let back = status.into_error("x", text);
            assert_eq!(back.to_string(), err.to_string());
            assert_eq!(back.kind(), err.kind(), "{err:?} came back as {back:?}");
        }
        let unknown = Status(77).into_error("x", "whatever".into());
        assert_eq!(unknown.kind(), ErrorKind::Backend, "{unknown:?}");
        assert!(format!("{:?}", unknown).contains("unknown status 77"));
    }
}
