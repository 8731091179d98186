//! Crash points, for tests of what survives a crash between two steps. In builds with the
//! `fault-injection` feature (the test builds), `TETHER_FAULT=<name>` makes the process abort at
//! the point of that name, as a `kill -9` at that instant would; elsewhere a point is nothing.

/// Aborts the process here if the tests asked for a crash at `name`.
#[cfg(feature = "fault-injection")]
pub fn crash_point(name: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("TETHER_FAULT").ok());
    if armed.as_deref() == Some(name) {
        eprintln!("tether: crash injected at {name}");
        std::process::abort();
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}
