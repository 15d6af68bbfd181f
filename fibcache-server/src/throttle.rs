//! Rate limiting for repeated warnings.
//!
//! When a shared cache goes down, every request fails to read it. One warning per request
//! would flood the log exactly when an operator needs to read it; one per period, saying how
//! many were held back, tells the same story.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Admits one event per period and counts the ones it holds back.
#[derive(Debug)]
pub struct Throttle {
    start: Instant,
    period_ms: u64,
    /// Milliseconds since `start` of the last admitted event, plus one (0 = never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// A throttle admitting one event per `period`.
    pub fn new(period: Duration) -> Self {
        Throttle {
            start: Instant::now(),
            period_ms: period.as_millis().max(1) as u64,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last admitted one)` when this event may be reported.
    pub fn admit(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.period_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another thread admitted one at the same moment.
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_one_per_period_and_reports_how_many_it_held_back() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        assert_eq!(t.suppressed.load(Ordering::Relaxed), 2);
        // Once the period is over, the next one is admitted with the count of the held back.
        t.last.store(1, Ordering::Relaxed);
        let later = Throttle {
            start: t.start - Duration::from_secs(7200),
            ..t
        };
        assert_eq!(later.admit(), Some(2));
        assert_eq!(later.admit(), None);
    }
}
