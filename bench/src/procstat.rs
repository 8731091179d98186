//! CPU and memory of processes, from `/proc`.

use std::process::Command;

pub fn proc_cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the command name.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Busy clock ticks of the whole machine (all CPUs), from /proc/stat.
pub fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle)
}

pub fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    /// RSS split by what it maps: the heap and other anonymous memory, mapped files (the
    /// binary, SQLite's files if mapped), shared memory (SQLite's WAL index, `-shm`).
    pub anon_kb: u64,
    pub file_kb: u64,
    pub shmem_kb: u64,
}

pub fn proc_mem(pid: u32) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        anon_kb: field("RssAnon:"),
        file_kb: field("RssFile:"),
        shmem_kb: field("RssShmem:"),
    }
}
