//! Where logs go and how they look: stderr, text or JSON lines, level from `TETHER_LOG` (or
//! `RUST_LOG`), info by default.

mod access_layer;

pub use access_layer::ACCESS_TARGET;

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `--log-format`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; colour codes only when stderr is a terminal.
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// Sets up the subscriber. Lines are formatted on the thread that logs them and collected by a
/// [`BatchedWriter`], whose thread writes them to stderr: an access-log line per request
/// written at once cost a `write` system call per request (~15% of a `get`'s CPU with the log
/// on, benchmark's ops-overhead runs). Not lossy: a logging thread waits when the writer is
/// far behind. Hold the returned guard until exit: dropping it writes what is still pending.
pub fn init_tracing(format: LogFormat) -> LogGuard {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    type Filtered = tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>;

    let filter = EnvFilter::try_from_env("TETHER_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = BatchedWriter::start(std::io::stderr());
    let _ = PROCESS_LOG.set(writer.shared.clone());
    // Colour codes only for a person at a terminal: a file or a collector gets plain text.
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer.clone());
    let fmt: Box<dyn Layer<Filtered> + Send + Sync> = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
        LogFormat::Text => fmt.with_ansi(ansi).boxed(),
    };
    // Access lines through their own layer (see `access_layer`), except in colour.
    let (fmt, access) = if ansi {
        (fmt, None)
    } else {
        let not_access = tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() != access_layer::ACCESS_TARGET
        });
        (
            fmt.with_filter(not_access).boxed(),
            Some(access_layer::AccessLayer::new(writer, format)),
        )
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(access)
        .try_init();
    guard
}

/// The process's log buffer, for [`write_pending_now`].
static PROCESS_LOG: std::sync::OnceLock<Arc<Shared>> = std::sync::OnceLock::new();

/// Writes what the process's log buffer holds to stderr from the calling thread: for an exit
/// that skips the guard's drop (`std::process::exit`), which would otherwise lose up to a
/// tick of lines, the last ones among them.
pub fn write_pending_now() {
    if let Some(shared) = PROCESS_LOG.get() {
        let pending = std::mem::take(&mut lock(&shared.state).pending);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&pending).and_then(|()| err.flush());
    }
}

/// How long a log line may wait before the writer thread writes it out (lines logged
/// meanwhile go out with it).
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes that wake the writer thread at once instead of at the next tick.
const HIGH_WATER: usize = 64 * 1024;
/// Bytes at which a logging thread waits for the writer (nothing is dropped).
const HARD_CAP: usize = 4 * 1024 * 1024;

/// A log sink that batches lines. A logging thread appends its formatted line to a shared
/// buffer (a mutex and a copy: no system call, no thread to wake); the writer thread writes
/// what collected every [`FLUSH_EVERY`], or at once when [`HIGH_WATER`] bytes wait. It replaced
/// `tracing-appender`'s channel, whose writer thread was woken (and wrote) once per line:
/// PostgreSQL get at c=16, 10 alternating rounds, access log and metrics on vs off: CPU per
/// request +15.2% with the channel, +3.2% with this (`bench` ops-overhead runs).
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<Batch>,
    /// Wakes the writer thread (high water, closing) and the threads waiting at the cap.
    changed: Condvar,
}

#[derive(Default)]
struct Batch {
    pending: Vec<u8>,
    closed: bool,
}

/// Stops the writer thread when dropped, after it wrote everything still pending.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BatchedWriter {
    /// Starts the writer thread, writing to `out`.
    pub fn start<W: Write + Send + 'static>(out: W) -> (BatchedWriter, LogGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(Batch::default()),
            changed: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tether-log".into())
                .spawn(move || write_batches(&shared, out))
                .expect("the log writer thread starts")
        };
        (
            BatchedWriter {
                shared: shared.clone(),
            },
            LogGuard {
                shared,
                thread: Some(thread),
            },
        )
    }
}

/// The writer thread: from the first line, waits a tick (or until high water) and writes
/// whatever collected; once closed, writes the rest and returns.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::with_capacity(HIGH_WATER);
    loop {
        let closed = {
            let mut batch = lock(&shared.state);
            // Idle: sleep until the first line (no wake-ups while nothing is logged).
            while batch.pending.is_empty() && !batch.closed {
                batch = shared
                    .changed
                    .wait(batch)
                    .unwrap_or_else(|e| e.into_inner());
            }
            // Then let the lines of the next tick join it, unless high water comes first.
            let tick = Instant::now() + FLUSH_EVERY;
            while batch.pending.len() < HIGH_WATER && !batch.closed {
                let Some(left) = tick.checked_duration_since(Instant::now()) else {
                    break;
                };
                batch = shared
                    .changed
                    .wait_timeout(batch, left)
                    .map_or_else(|e| e.into_inner().0, |(b, _)| b);
            }
            std::mem::swap(&mut batch.pending, &mut spare);
            batch.closed
        };
        // Threads waiting at the cap may go on.
        shared.changed.notify_all();
        if !spare.is_empty() {
            // Nowhere to report a failed write to stderr: the lines are lost either way.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
        }
        if closed && lock(&shared.state).pending.is_empty() {
            return;
        }
    }
}

fn lock(m: &Mutex<Batch>) -> MutexGuard<'_, Batch> {
    // A thread that panicked while appending left at worst a partial line: keep logging.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BatchedWriter {
    /// Appends `line` to the pending batch (waiting while the batch is at its cap).
    fn append(&self, line: &[u8]) {
        let mut batch = lock(&self.shared.state);
        while batch.pending.len() >= HARD_CAP && !batch.closed {
            batch = self
                .shared
                .changed
                .wait(batch)
                .unwrap_or_else(|e| e.into_inner());
        }
        let before = batch.pending.len();
        batch.pending.extend_from_slice(line);
        // Wake the writer for the first line of a batch and at high water, not for each line.
        if before == 0 || (before < HIGH_WATER && batch.pending.len() >= HIGH_WATER) {
            self.shared.changed.notify_all();
        }
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let out = Captured::default();
        let (writer, guard) = BatchedWriter::start(out.clone());
        // Four threads, far past the cap in total, so that high water and waiting both happen.
        let line = vec![b'x'; 999];
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let mut w = writer.clone();
                let mut line = line.clone();
                line[0] = b'0' + t;
                std::thread::spawn(move || {
                    for i in 0..5_000u32 {
                        let mut l = line.clone();
                        l.extend_from_slice(format!("{i:08}\n").as_bytes());
                        w.write_all(&l).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4 * 5_000);
        for t in 0..4u8 {
            let seq: Vec<u32> = lines
                .iter()
                .filter(|l| l.as_bytes()[0] == b'0' + t)
                .map(|l| l[999..].parse().unwrap())
                .collect();
            assert_eq!(
                seq,
                (0..5_000).collect::<Vec<_>>(),
                "thread {t}'s lines in order"
            );
        }
    }

    #[test]
    fn a_line_goes_out_within_a_tick_without_waiting_for_more() {
        let out = Captured::default();
        let (mut writer, _guard) = BatchedWriter::start(out.clone());
        writer.write_all(b"one line\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the line was not written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*out.0.lock().unwrap(), b"one line\n");
    }
}
