//! `process_*` series, as every Prometheus client library exports them
//! (CPU seconds, resident and virtual memory, open and maximum file
//! descriptors, start time), read from `/proc/self` at each scrape.
//!
//! On a system without `/proc` (not Linux) the series are simply absent.
//! This collector must never fail a scrape: an unreadable file omits its
//! series.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every
/// Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// Reads `/proc/self` at each scrape.
#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

/// One scrape's process numbers; `None` where unreadable.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    start_time_seconds: Option<f64>,
}

impl Sample {
    fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let stat = stat.as_deref().and_then(parse_stat);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text));
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        Sample {
            cpu_seconds: stat.map(|s| s.cpu_ticks as f64 / TICKS_PER_SEC),
            resident_bytes: status_kib(&status, "VmRSS:").map(|kib| kib * 1024.0),
            virtual_bytes: status_kib(&status, "VmSize:").map(|kib| kib * 1024.0),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as f64),
            max_fds: max_open_files(&limits),
            start_time_seconds: stat
                .zip(boot)
                .map(|(s, boot)| boot + s.start_ticks as f64 / TICKS_PER_SEC),
        }
    }
}

/// What `/proc/self/stat` says that we export.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// utime + stime.
    cpu_ticks: u64,
    /// Start time after boot.
    start_ticks: u64,
}

/// Fields 14 (utime), 15 (stime) and 22 (starttime) of `/proc/self/stat`,
/// counted after the parenthesised command name (which may hold spaces).
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
    })
}

/// `btime` of `/proc/stat`: the boot time, epoch seconds.
fn boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `kB` line of `/proc/self/status`.
fn status_kib(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find_map(|line| line.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = Sample::read();
        if let Some(cpu) = sample.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                sample.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                sample.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                sample.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                sample.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                sample.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces() {
        let text = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    150 50 0 0 20 0 3 0 98765 123456789 2000 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                cpu_ticks: 200,
                start_ticks: 98765
            })
        );
    }

    #[test]
    fn limits_status_and_btime_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(
            status_kib("Name:\tx\nVmSize:\t  2048 kB\nVmRSS:\t 512 kB\n", "VmRSS:"),
            Some(512.0)
        );
        assert_eq!(boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_cpu_memory_and_fds() {
        let sample = Sample::read();
        assert!(sample.cpu_seconds.is_some());
        assert!(sample.resident_bytes.is_some_and(|b| b > 0.0));
        assert!(sample.open_fds.is_some_and(|n| n >= 1.0));
        assert!(sample.start_time_seconds.is_some_and(|t| t > 1.0e9));
    }
}
