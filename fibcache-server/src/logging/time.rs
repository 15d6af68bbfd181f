//! Timestamps for log lines: RFC 3339, UTC, with microseconds, as `tracing-subscriber` writes
//! them by default, formatted once a second rather than once a line.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// RFC 3339 UTC timestamps with microseconds, as tracing-subscriber's default timer writes
/// them, but the date and time of day are formatted (by `humantime`) once per second per
/// thread: with the access log on, formatting the whole timestamp each time was a quarter of
/// a line's cost.
pub(super) struct CachedTime;

impl FormatTime for CachedTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        thread_local! {
            static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        SECOND.with(|cell| {
            let mut cached = cell.borrow_mut();
            if cached.0 != secs {
                let whole = UNIX_EPOCH + Duration::from_secs(secs);
                // `2026-11-27T13:23:17Z` without its `Z`: the fraction goes before it.
                let mut text = humantime::format_rfc3339_seconds(whole).to_string();
                text.pop();
                *cached = (secs, text);
            }
            w.write_str(&cached.1)?;
            // `.` and six digits of microseconds, zero-padded, then `Z`.
            let mut fraction = *b".000000Z";
            let mut micros = now.subsec_micros();
            for digit in fraction[1..7].iter_mut().rev() {
                *digit = b'0' + (micros % 10) as u8;
                micros /= 10;
            }
            w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut text = String::new();
        CachedTime.format_time(&mut Writer::new(&mut text)).unwrap();
        // 2026-11-27T13:23:17.123456Z
        let bytes = text.as_bytes();
        assert_eq!(text.len(), 27, "{text}");
        for (at, sep) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ] {
            assert_eq!(bytes[at], sep, "{text}");
        }
        assert!(text.ends_with('Z'), "{text}");
        for range in [0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..26] {
            assert!(bytes[range].iter().all(u8::is_ascii_digit), "{text}");
        }
    }
}
