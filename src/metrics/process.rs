//! The process's own figures, read from `/proc` on each scrape under the names every Prometheus
//! client uses (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_open_fds`, `process_start_time_seconds`). Elsewhere than Linux there are none.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports CPU times and start times in clock ticks of 1/100 s (`USER_HZ`, fixed for
/// user space).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug)]
pub struct ProcessCollector;

impl ProcessCollector {
    pub fn new() -> Self {
        ProcessCollector
    }
}

#[derive(Debug, Default, PartialEq)]
struct Figures {
    rss_bytes: Option<f64>,
    cpu_seconds: Option<f64>,
    open_fds: Option<f64>,
    start_time_seconds: Option<f64>,
}

fn read_figures() -> Figures {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(stat_fields);
    let tick = |i: usize| -> Option<f64> { fields.as_ref()?.get(i)?.parse::<f64>().ok() };
    let cpu_seconds = tick(11)
        .zip(tick(12))
        .map(|(user, system)| (user + system) / TICKS_PER_SECOND);
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let start_time_seconds = boot_time
        .zip(tick(19))
        .map(|(boot, started)| boot + started / TICKS_PER_SECOND);
    let rss_bytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let kb = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            let kb: f64 = kb.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024.0)
        });
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count() as f64);
    Figures {
        rss_bytes,
        cpu_seconds,
        open_fds,
        start_time_seconds,
    }
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses: everything up to the last `)`), so that index 0 is the state (field 3).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = read_figures();
        if let Some(v) = f.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size, bytes",
                f.rss_bytes,
            ),
            ("process_open_fds", "Open file descriptors", f.open_fds),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, seconds",
                f.start_time_seconds,
            ),
        ] {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (tether (x) y) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 3 0 12345 0";
        let fields = stat_fields(stat).unwrap();
        assert_eq!(fields[0], "S");
        assert_eq!(fields[11], "150");
        assert_eq!(fields[12], "50");
        assert_eq!(fields[19], "12345");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_figures() {
        let f = read_figures();
        assert!(f.rss_bytes.is_some_and(|v| v > 0.0), "{f:?}");
        assert!(f.open_fds.is_some_and(|v| v >= 3.0), "{f:?}");
        assert!(f.cpu_seconds.is_some(), "{f:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(f
            .start_time_seconds
            .is_some_and(|t| t <= now + 1.0 && t > now - 86400.0 * 365.0));
    }
}
