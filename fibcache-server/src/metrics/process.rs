//! The standard process metrics of Prometheus client libraries, read from `/proc` at each scrape:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds` and
//! `process_start_time_seconds`.
//!
//! Linux only: elsewhere (or when `/proc` cannot be read) the series are left out of the
//! exposition rather than reported as zero. Times in `/proc/<pid>/stat` are in clock ticks of
//! `USER_HZ`, which the kernel hands every process in its auxiliary vector (`AT_CLKTCK`, read
//! from `/proc/self/auxv`, as `sysconf(_SC_CLK_TCK)` does, without `unsafe`); where that cannot
//! be read, 100, its value on every architecture Rust's Linux targets run on.

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Clock ticks a second when the auxiliary vector does not say (`USER_HZ` of every Linux
/// architecture Rust targets).
const FALLBACK_TICKS: f64 = 100.0;

/// The auxiliary vector's key for `USER_HZ` (`<linux/auxvec.h>`).
const AT_CLKTCK: usize = 17;

/// Clock ticks a second in `/proc` (`USER_HZ`), read once.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|auxv| clock_ticks(&auxv))
            .unwrap_or(FALLBACK_TICKS)
    })
}

/// `AT_CLKTCK` in an auxiliary vector: pairs of native words, key then value.
fn clock_ticks(auxv: &[u8]) -> Option<f64> {
    const WORD: usize = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * WORD).find_map(|pair| {
        let (key, value) = pair.split_at(WORD);
        let key = usize::from_ne_bytes(key.try_into().ok()?);
        let value = usize::from_ne_bytes(value.try_into().ok()?);
        (key == AT_CLKTCK && value > 0).then_some(value as f64)
    })
}

/// Reads this process's figures from `/proc` when scraped.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// One reading of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
    start_time_seconds: f64,
}

impl Reading {
    /// This process now, or `None` where `/proc` does not say.
    fn now() -> Option<Reading> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
        parse(&stat, &status, &boot, open_fds, ticks_per_second())
    }
}

/// A reading from the texts of `/proc/self/stat`, `/proc/self/status` and `/proc/stat`, with
/// times in `ticks` a second.
fn parse(stat: &str, status: &str, boot: &str, open_fds: i64, ticks: f64) -> Option<Reading> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    // utime, stime and starttime are fields 14, 15 and 22; here 12, 13 and 20 (from 1).
    let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    let cpu_seconds = (field(14)? + field(15)?) / ticks;
    let started_after_boot = field(22)? / ticks;
    let resident_kib: i64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let boot_time: f64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(Reading {
        cpu_seconds,
        resident_bytes: resident_kib * 1024,
        open_fds,
        start_time_seconds: boot_time + started_after_boot,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(reading) = Reading::now() else {
            return Ok(());
        };
        ConstCounter::new(reading.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(reading.resident_bytes).encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(reading.open_fds).encode(encoder.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(reading.start_time_seconds).encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_comes_from_the_proc_files() {
        // The command name holds a space and a parenthesis, as any may.
        let stat = "4242 (fib cache) S 1 4242 4242 0 -1 4194560 2210 0 0 0 250 75 0 0 20 0 \
                    4 0 123456 20000000 1500 18446744073709551615";
        let status = "Name:\tfibcache\nVmRSS:\t    6144 kB\nThreads:\t4\n";
        let boot = "cpu  1 2 3\nbtime 1764200000\nprocesses 10\n";
        let reading = parse(stat, status, boot, 9, 100.0).unwrap();
        assert_eq!(
            reading,
            Reading {
                cpu_seconds: 3.25,
                resident_bytes: 6144 * 1024,
                open_fds: 9,
                start_time_seconds: 1_764_200_000.0 + 1234.56,
            }
        );
        assert_eq!(parse("garbage", status, boot, 9, 100.0), None);
    }

    #[test]
    fn clock_ticks_come_from_the_auxiliary_vector() {
        let words = |pairs: &[(usize, usize)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|&(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()])
                .flatten()
                .collect()
        };
        // AT_PAGESZ, AT_CLKTCK, AT_NULL.
        let auxv = words(&[(6, 4096), (AT_CLKTCK, 250), (0, 0)]);
        assert_eq!(clock_ticks(&auxv), Some(250.0));
        assert_eq!(clock_ticks(&words(&[(6, 4096), (0, 0)])), None);
        assert_eq!(clock_ticks(&auxv[..5]), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_read() {
        let auxv = std::fs::read("/proc/self/auxv").expect("/proc/self/auxv");
        assert!(clock_ticks(&auxv).is_some_and(|ticks| ticks > 0.0));
        let reading = Reading::now().expect("/proc is readable on Linux");
        assert!(reading.resident_bytes > 0);
        assert!(reading.open_fds >= 3);
        assert!(reading.start_time_seconds > 1_600_000_000.0);
    }
}
