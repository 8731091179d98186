//! The time as the use cases see it: the system clock, which a test can move forward (lockout
//! periods, retry and lease deadlines) instead of sleeping through them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;

/// Cheap to clone; clones share one offset.
#[derive(Clone, Default, Debug)]
pub struct Clock {
    /// Milliseconds added to the system time (only tests set it).
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Now, as stored in the database (naive UTC, microseconds; see [`crate::db::now`]).
    pub fn now(&self) -> NaiveDateTime {
        let offset = self.offset_ms.load(Ordering::Relaxed);
        crate::db::now() + chrono::Duration::milliseconds(offset)
    }

    /// Now, as Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.now().and_utc().timestamp_millis()
    }

    /// Moves this clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
