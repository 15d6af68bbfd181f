//! The Fibonacci workload: slow on purpose, so that the cache visibly matters.
//!
//! The engine does not call it directly: it runs a [`Workload`], which [`App`](crate::App)
//! sets to [`Fib`] (and tests replace with computations they control). A workload also says
//! what a computation will cost, so that one that cannot finish within `--compute-timeout` is
//! answered at once instead of holding a computation slot for nothing.
//!
//! [`fib_slow`] is the article's naive recursion, which makes `2 * fib(n) - 1` calls: `n = 30`
//! takes milliseconds, `n = 45` seconds, `n = 60` days. It asks its caller whether to go on as
//! it goes (the server passes a cancellation token's `is_cancelled`), so a computation nobody
//! waits for any more, or that ran out of time, stops within milliseconds.
//! [`fib_fast`] is the exact iterative version that tests and sanity checks compare against.

use std::time::{Duration, Instant};

/// The largest `n` whose Fibonacci number fits an `i64` (`fib(92) = 7540113804746346429`).
pub const MAX_N: u64 = 92;

/// The longest decimal form of any cached Fibonacci number: `fib(MAX_N)` has 19 digits.
///
/// A stored value longer than this cannot be one, whatever it holds, so a reader may refuse
/// it by its length alone (see [`Config::with_max_value_len`](fibcache_core::Config::with_max_value_len)).
pub const MAX_VALUE_LEN: usize = 19;

/// Below this `n` a subtree is computed without asking whether to stop: `fib_slow(24)` is about
/// 75 000 calls, well under a millisecond, so a cancel is seen within a few milliseconds while
/// asking costs nothing measurable.
const CHECK_ABOVE: u64 = 24;

/// The computation was told to stop before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("computation cancelled")]
pub struct Cancelled;

/// What the engine computes on a miss: a function of `n` that runs on a blocking thread.
///
/// Implementations must stop soon after `cancelled` answers `true` (returning [`Cancelled`]):
/// that is how a computation nobody waits for any more, or that ran out of time, gives its
/// thread back. A panic is caught and answered as a failure (HTTP 500); it never takes the
/// server down.
pub trait Workload: Send + Sync + 'static {
    /// The value for `n`, unless `cancelled` said to stop first.
    ///
    /// # Errors
    /// [`Cancelled`] when told to stop before the value was known.
    fn compute(&self, n: u64, cancelled: &dyn Fn() -> bool) -> Result<u64, Cancelled>;

    /// How long computing `n` will take at least, when the workload can tell. A cold `n`
    /// whose estimate exceeds `--compute-timeout` is answered at once (504) without taking a
    /// computation slot. The default: no estimate, every `n` is tried.
    fn estimate(&self, n: u64) -> Option<Duration> {
        let _ = n;
        None
    }
}

/// The article's workload: [`fib_slow`], with an estimate from its call count and a speed
/// measured once on this machine.
///
/// The speed is the best of a few short runs (a few milliseconds in all, at the first
/// estimate), so the estimate is a lower bound of the real time: an `n` is refused only when
/// even an unloaded machine could not finish it in time. With the default 30 s limit that is
/// `n` above about 47 on a 2020s x86 core; everything below is computed.
#[derive(Debug, Default)]
pub struct Fib {
    /// Calls of the naive recursion per second, measured at the first estimate.
    speed: std::sync::OnceLock<f64>,
}

impl Workload for Fib {
    fn compute(&self, n: u64, cancelled: &dyn Fn() -> bool) -> Result<u64, Cancelled> {
        fib_slow(n.min(MAX_N), cancelled)
    }

    fn estimate(&self, n: u64) -> Option<Duration> {
        let speed = *self.speed.get_or_init(measure_speed);
        let seconds = calls(n) / speed;
        Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
    }
}

/// The calls [`fib_slow`] makes for `n`: `2 * fib(n + 1) - 1`.
fn calls(n: u64) -> f64 {
    match fib_fast(n + 1) {
        Some(next) => 2.0 * next as f64 - 1.0,
        None => f64::INFINITY,
    }
}

/// Calls per second of the naive recursion: the best of three runs of `fib(27)` (about
/// 630 000 calls each).
fn measure_speed() -> f64 {
    const PROBE: u64 = 27;
    let best = (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(naive(std::hint::black_box(PROBE)));
            started.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(1))
        .max(Duration::from_micros(1));
    calls(PROBE) / best.as_secs_f64()
}

/// Computes the `n`-th Fibonacci number by naive recursion, giving up as soon as `cancelled`
/// answers `true` (it is asked every ~75 000 calls, i.e. every fraction of a millisecond).
///
/// Only `n <= MAX_N` is meaningful; larger `n` would overflow (and take geologic time), so the
/// caller must bound `n` first.
///
/// # Errors
/// [`Cancelled`] when `cancelled` said so before the result was known.
///
/// # Panics
/// When `n > MAX_N`.
///
/// # Example
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use fibcache_server::fib::{fib_slow, Cancelled};
///
/// assert_eq!(fib_slow(30, || false), Ok(832_040));
/// let stop = AtomicBool::new(true);
/// assert_eq!(fib_slow(90, || stop.load(Ordering::Relaxed)), Err(Cancelled));
/// ```
pub fn fib_slow(n: u64, cancelled: impl Fn() -> bool) -> Result<u64, Cancelled> {
    assert!(n <= MAX_N, "fib_slow({n}) is beyond MAX_N = {MAX_N}");
    slow(n, &cancelled)
}

fn slow(n: u64, cancelled: &impl Fn() -> bool) -> Result<u64, Cancelled> {
    if n <= CHECK_ABOVE {
        return Ok(naive(n));
    }
    if cancelled() {
        return Err(Cancelled);
    }
    Ok(slow(n - 1, cancelled)? + slow(n - 2, cancelled)?)
}

fn naive(n: u64) -> u64 {
    if n <= 1 {
        n
    } else {
        naive(n - 1) + naive(n - 2)
    }
}

/// Computes the `n`-th Fibonacci number exactly in `O(n)` steps, or `None` past `u64`.
pub fn fib_fast(n: u64) -> Option<u64> {
    // fib(93) is the last Fibonacci number below 2^64.
    if n > 93 {
        return None;
    }
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        // `b` runs one step ahead: it may wrap computing fib(94), which is never returned.
        (a, b) = (b, a.wrapping_add(b));
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_matches_fast_up_to_thirty() {
        for n in 0..=30 {
            assert_eq!(fib_slow(n, || false), Ok(fib_fast(n).unwrap()), "n = {n}");
        }
    }

    #[test]
    fn fast_knows_the_last_i64() {
        assert_eq!(fib_fast(MAX_N), Some(7_540_113_804_746_346_429));
        assert!(fib_fast(MAX_N).unwrap() <= i64::MAX as u64);
        assert!(fib_fast(MAX_N + 1).unwrap() > i64::MAX as u64);
        assert_eq!(fib_fast(94), None);
    }

    #[test]
    fn the_longest_value_is_that_of_max_n() {
        assert_eq!(fib_fast(MAX_N).unwrap().to_string().len(), MAX_VALUE_LEN);
        assert!((0..MAX_N).all(|n| fib_fast(n).unwrap().to_string().len() <= MAX_VALUE_LEN));
    }

    #[test]
    fn the_estimate_grows_with_n_and_refuses_the_hopeless() {
        let fib = Fib::default();
        let small = fib.estimate(20).unwrap();
        assert!(small < Duration::from_millis(100), "{small:?}");
        assert!(fib.estimate(30).unwrap() > small);
        assert!(fib.estimate(91).unwrap() > Duration::from_secs(3600 * 24 * 365));
        assert_eq!(calls(3), 5.0, "fib(3) calls fib(2), fib(1), fib(1), fib(0)");
    }

    #[test]
    fn a_cancelled_computation_stops_at_once() {
        // fib(90) would take centuries; told to stop, it returns at once.
        assert_eq!(fib_slow(90, || true), Err(Cancelled));
    }

    #[test]
    fn cancelling_from_another_thread_stops_a_running_computation() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let worker = {
            let stop = stop.clone();
            std::thread::spawn(move || fib_slow(80, || stop.load(Ordering::Relaxed)))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(worker.join().unwrap(), Err(Cancelled));
    }
}
