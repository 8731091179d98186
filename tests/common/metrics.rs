//! Reading a Prometheus text exposition in tests, and `promtool check metrics` on it.

use std::io::Write;
use std::process::{Command, Stdio};

/// The sum of the samples named `name` whose label text contains each of `labels` (e.g.
/// `method="POST"`); `None` if there is no such sample.
pub fn sample_sum(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let (sample_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest),
            None => (series, ""),
        };
        if sample_name != name || !labels.iter().all(|l| label_text.contains(l)) {
            continue;
        }
        let value: f64 = value.parse().ok()?;
        found = Some(found.unwrap_or(0.0) + value);
    }
    found
}

/// Whether Prometheus's tools must be there (CI sets it): then a missing one fails the test.
pub fn prometheus_required() -> bool {
    std::env::var("TETHER_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1")
}

/// Whether `tool` (`promtool`, `prometheus`) can be run; if not, says so loudly, and fails the
/// test when it is required.
pub fn have_tool(tool: &str) -> bool {
    let there = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !there {
        assert!(
            !prometheus_required(),
            "{tool} is not installed but TETHER_REQUIRE_PROMETHEUS=1 (apt-get install prometheus)"
        );
        eprintln!(
            "\n!!! {tool} is not installed: this check is SKIPPED (apt-get install prometheus; CI \
             sets TETHER_REQUIRE_PROMETHEUS=1 so that it cannot be skipped there) !!!\n"
        );
    }
    there
}

/// Runs `promtool check metrics` on the exposition; panics with its complaints.
pub fn promtool_check(exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
