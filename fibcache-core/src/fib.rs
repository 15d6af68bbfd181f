//! The Fibonacci workload: slow on purpose, so that the cache visibly matters.
//!
//! [`fib_slow`] is the article's naive recursion, which makes `2 * fib(n) - 1` calls: `n = 30`
//! takes milliseconds, `n = 45` seconds, `n = 60` days. It asks its caller whether to go on as
//! it goes (the server passes a cancellation token's `is_cancelled`), so a computation nobody
//! waits for any more, or that ran out of time, stops within milliseconds.
//! [`fib_fast`] is the exact iterative version that tests and sanity checks compare against.

/// The largest `n` whose Fibonacci number fits an `i64` (`fib(92) = 7540113804746346429`).
pub const MAX_N: u64 = 92;

/// The longest decimal form of any cached Fibonacci number: `fib(MAX_N)` has 19 digits.
///
/// A stored value longer than this cannot be one, whatever it holds, so a reader may refuse
/// it by its length alone (see [`Config::with_max_value_len`](crate::Config::with_max_value_len)).
pub const MAX_VALUE_LEN: usize = 19;

/// Below this `n` a subtree is computed without asking whether to stop: `fib_slow(24)` is about
/// 75 000 calls, well under a millisecond, so a cancel is seen within a few milliseconds while
/// asking costs nothing measurable.
const CHECK_ABOVE: u64 = 24;

/// The computation was told to stop before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("computation cancelled")]
pub struct Cancelled;

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
/// use fibcache_core::fib::{fib_slow, Cancelled};
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
