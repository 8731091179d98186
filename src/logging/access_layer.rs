//! Access-log lines, formatted by a layer of their own. The access log is one event per
//! request; through tracing-subscriber's `fmt` layer, each one paid for the generic field
//! machinery (a thread-local buffer, `Debug` round trips, an escape scan per field): ~4.5% of
//! a SQLite `get`'s CPU, the larger part of the access log and metrics' cost (perf of the
//! bench's side-by-side on/off run). This layer writes the same line (text or JSON, field for
//! field as the `fmt` layer wrote it) with plain string appends and hands it to the batched
//! writer; the `fmt` layer skips the access target. Events still go through `tracing`, so
//! `TETHER_LOG` filters them as before.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::{BatchedWriter, LogFormat};

/// The access log's target (`tether::api::access_log`'s events).
pub const ACCESS_TARGET: &str = "tether::access";

/// Writes access events in `format` to `writer`.
pub struct AccessLayer {
    writer: BatchedWriter,
    format: LogFormat,
}

impl AccessLayer {
    pub fn new(writer: BatchedWriter, format: LogFormat) -> AccessLayer {
        AccessLayer { writer, format }
    }
}

thread_local! {
    /// The line being formatted, reused (no allocation per request).
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The last second formatted (`2026-12-01T16:49:21`) and its Unix time: the lines of one
    /// second share it, so a line's time stamp costs six digits, not a calendar computation.
    static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

/// The time stamp as the `fmt` layer's `SystemTime` writes it (`2026-12-01T16:49:21.238245Z`,
/// UTC, microseconds).
fn timestamp(out: &mut String, now: std::time::SystemTime) {
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let Some(second) = chrono::DateTime::from_timestamp(secs, 0) else {
                return;
            };
            cached.1.clear();
            let _ = write!(cached.1, "{}", second.format("%Y-%m-%dT%H:%M:%S"));
            cached.0 = secs;
        }
        out.push_str(&cached.1);
    });
    let micros = since_epoch.subsec_micros();
    out.push('.');
    for shift in [100_000, 10_000, 1_000, 100, 10, 1] {
        out.push(char::from(b'0' + (micros / shift % 10) as u8));
    }
    out.push('Z');
}

impl<S: Subscriber> Layer<S> for AccessLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != ACCESS_TARGET {
            return;
        }
        LINE.with(|line| {
            // A re-entrant event (none is logged while formatting) would find it borrowed.
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            if format_line(&mut line, event, self.format).is_ok() {
                self.writer.append(line.as_bytes());
            }
        });
    }
}

/// One line, newline included, as the `fmt` layer wrote it: text `TIME LEVEL target: message
/// name=value …`, or a flattened JSON object (`timestamp`, `level`, the fields, `target`).
pub fn format_line(out: &mut String, event: &Event<'_>, format: LogFormat) -> fmt::Result {
    let meta = event.metadata();
    match format {
        LogFormat::Text => {
            timestamp(out, std::time::SystemTime::now());
            out.push(' ');
            out.push_str(padded_level(meta.level()));
            out.push(' ');
            out.push_str(meta.target());
            out.push(':');
            event.record(&mut TextFields { out });
        }
        LogFormat::Json => {
            out.push_str("{\"timestamp\":\"");
            timestamp(out, std::time::SystemTime::now());
            out.push_str("\",\"level\":\"");
            out.push_str(meta.level().as_str());
            out.push('"');
            event.record(&mut JsonFields { out });
            out.push_str(",\"target\":");
            json_string(out, meta.target());
            out.push('}');
        }
    }
    out.push('\n');
    Ok(())
}

/// The level right-aligned in five, as the `fmt` layer writes it.
fn padded_level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Text fields: ` name=value`, strings quoted as `Debug` quotes them, the message bare.
struct TextFields<'a> {
    out: &'a mut String,
}

impl TextFields<'_> {
    fn name(&mut self, field: &Field) {
        self.out.push(' ');
        self.out.push_str(field.name());
        self.out.push('=');
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        if value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            self.out.push('"');
            self.out.push_str(value);
            self.out.push('"');
        } else {
            let _ = write!(self.out, "{value:?}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.out.push(' ');
        } else {
            self.name(field);
        }
        let _ = write!(self.out, "{value:?}");
    }
}

/// JSON fields: `,"name":value`, numbers as numbers, everything else as a string.
struct JsonFields<'a> {
    out: &'a mut String,
}

impl JsonFields<'_> {
    fn name(&mut self, field: &Field) {
        self.out.push(',');
        json_string(self.out, field.name());
        self.out.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        json_string(self.out, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        // serde_json's number form (a finite value; NaN and infinities become null).
        self.out.push_str(
            &serde_json::Number::from_f64(value)
                .map_or_else(|| "null".to_string(), |n| n.to_string()),
        );
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        json_string(self.out, &format!("{value:?}"));
    }
}

/// `s` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    // serde_json's escaping; writing into a String cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An access event with every kind of field and values that need escaping.
    fn access_event() {
        tracing::info!(
            target: "tether::access",
            method = %"GET",
            path = %"/v2/service_bindings?q=name:a\"b",
            status = 200u16,
            latency_ms = 0.175,
            size = -1i64,
            request_id = "abc::5f71f745",
            user_id = "us\"er\n",
            ok = true,
            "request"
        );
    }

    /// What the `fmt` layer writes for the event, and what this layer writes.
    fn both(format: LogFormat) -> (String, String) {
        let fmt_out = Captured::default();
        let fmt_writer = fmt_out.clone();
        let fmt_layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || fmt_writer.clone());
        let fmt_subscriber: Box<dyn Subscriber + Send + Sync> = match format {
            LogFormat::Text => Box::new(tracing_subscriber::registry().with(fmt_layer)),
            LogFormat::Json => Box::new(
                tracing_subscriber::registry().with(
                    fmt_layer
                        .json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_span_list(false),
                ),
            ),
        };
        tracing::subscriber::with_default(fmt_subscriber, access_event);

        let ours = Captured::default();
        let (writer, guard) = BatchedWriter::start(ours.clone());
        let subscriber = tracing_subscriber::registry().with(AccessLayer::new(writer, format));
        tracing::subscriber::with_default(subscriber, access_event);
        drop(guard);
        let text = |c: &Captured| String::from_utf8(c.0.lock().unwrap().clone()).unwrap();
        (text(&fmt_out), text(&ours))
    }

    /// The line without the time stamp it starts with (`2026-12-01T16:49:21.238245Z`): the two
    /// were written a moment apart.
    fn without_time(line: &str) -> String {
        assert_eq!(line.find('Z'), Some(26), "{line}");
        line[27..].to_string()
    }

    #[test]
    fn a_text_line_reads_as_the_fmt_layer_writes_it() {
        let (fmt, ours) = both(LogFormat::Text);
        assert_eq!(without_time(&ours), without_time(&fmt));
        assert_eq!(
            without_time(&ours),
            "  INFO tether::access: request method=GET path=/v2/service_bindings?q=name:a\"b \
             status=200 latency_ms=0.175 size=-1 request_id=\"abc::5f71f745\" \
             user_id=\"us\\\"er\\n\" ok=true\n"
        );
    }

    #[test]
    fn a_time_stamp_reads_as_the_fmt_layers() {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
        // The fmt layer stamps "now" only: ours, taken a moment later, must have its shape
        // and its day (a second may have passed); fixed instants check the digits.
        let mut theirs = String::new();
        SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        let mut ours = String::new();
        timestamp(&mut ours, std::time::SystemTime::now());
        assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
        assert_eq!(ours[..10], theirs[..10]);
        let at = |secs: u64, micros: u64| {
            let mut out = String::new();
            let t =
                std::time::UNIX_EPOCH + std::time::Duration::from_micros(secs * 1_000_000 + micros);
            timestamp(&mut out, t);
            out
        };
        assert_eq!(at(1_764_607_761, 238_245), "2025-12-01T16:49:21.238245Z");
        assert_eq!(at(1_764_607_761, 7), "2025-12-01T16:49:21.000007Z");
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        // The cached second is replaced when the second changes.
        assert_eq!(at(1_764_607_762, 999_999), "2025-12-01T16:49:22.999999Z");
    }

    #[test]
    fn a_json_line_holds_what_the_fmt_layer_writes() {
        let (fmt, ours) = both(LogFormat::Json);
        let fmt: serde_json::Value = serde_json::from_str(&fmt).unwrap();
        let ours: serde_json::Value = serde_json::from_str(&ours).unwrap();
        let without_time = |v: &serde_json::Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("timestamp");
            v
        };
        assert_eq!(without_time(&ours), without_time(&fmt));
        assert_eq!(ours["status"], 200);
        assert_eq!(ours["latency_ms"], 0.175);
        assert_eq!(ours["user_id"], "us\"er\n");
        assert!(ours["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
