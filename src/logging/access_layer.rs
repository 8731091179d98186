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
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
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
            SystemTime.format_time(&mut Writer::new(out))?;
            out.push(' ');
            out.push_str(padded_level(meta.level()));
            out.push(' ');
            out.push_str(meta.target());
            out.push(':');
            event.record(&mut TextFields { out });
        }
        LogFormat::Json => {
            out.push_str("{\"timestamp\":\"");
            SystemTime.format_time(&mut Writer::new(out))?;
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
