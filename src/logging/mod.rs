//! Where logs go and how they look: stderr, text or JSON lines, level from `TETHER_LOG` (or
//! `RUST_LOG`), info by default.

mod access_layer;

pub use access_layer::ACCESS_TARGET;

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

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

/// The process's log buffers, for [`write_pending_now`].
static PROCESS_LOG: std::sync::OnceLock<Arc<Shared>> = std::sync::OnceLock::new();

/// Writes what the process's log buffers hold to stderr from the calling thread: for an exit
/// that skips the guard's drop (`std::process::exit`), which would otherwise lose up to a
/// tick of lines, the last ones among them.
pub fn write_pending_now() {
    if let Some(shared) = PROCESS_LOG.get() {
        let mut pending = Vec::new();
        shared.take_all(&mut pending);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&pending).and_then(|()| err.flush());
    }
}

/// How long a log line may wait before the writer thread writes it out (lines logged
/// meanwhile go out with it).
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes in one thread's buffer that wake the writer thread at once instead of at the next
/// tick.
const HIGH_WATER: usize = 64 * 1024;
/// Bytes in one thread's buffer at which that thread waits for the writer (nothing is
/// dropped).
const HARD_CAP: usize = 4 * 1024 * 1024;

/// A log sink that batches lines. Each logging thread appends its formatted lines to a buffer
/// of its own (a lock no other logging thread takes, and a copy: no system call, no thread to
/// wake); the writer thread collects every thread's buffer every [`FLUSH_EVERY`], or at once
/// when one holds [`HIGH_WATER`] bytes, and writes them out. Each thread's lines stay in their
/// order; lines of different threads logged within one tick leave grouped by thread.
///
/// Why: `tracing-appender`'s channel woke its writer thread (and wrote) once per line
/// (PostgreSQL get at c=16, 10 alternating rounds, access log and metrics on vs off: CPU per
/// request +15.2% with the channel, +3.2% with one shared buffer); one buffer shared by the
/// HTTP workers still cost a SQLite get ~+5% in handing the line over (bench/RESULTS.md,
/// sixth session: a mutex and the buffer's cache lines moving between the workers' cores).
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

struct Shared {
    /// Every thread's buffer that has logged here (a thread that ended leaves its buffer
    /// until the writer has written it out).
    buffers: Mutex<Vec<Arc<ThreadBuffer>>>,
    /// The writer's state; with `changed`, wakes the writer (first line, high water,
    /// closing) and the threads waiting at the cap.
    state: Mutex<WriterState>,
    changed: Condvar,
    /// The writer sleeps until a line comes: appenders wake it only then.
    idle: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct WriterState {
    closed: bool,
}

#[derive(Default)]
struct ThreadBuffer {
    pending: Mutex<Vec<u8>>,
}

thread_local! {
    /// This thread's buffer in each live writer (tests start several writers), by the writer
    /// it belongs to: the `Weak` keeps that writer's address from being reused while listed.
    static MY_BUFFERS: std::cell::RefCell<Vec<(std::sync::Weak<Shared>, Arc<ThreadBuffer>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
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
            buffers: Mutex::new(Vec::new()),
            state: Mutex::new(WriterState::default()),
            changed: Condvar::new(),
            idle: std::sync::atomic::AtomicBool::new(false),
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

impl Shared {
    /// Moves every thread's pending lines into `out` (buffer by buffer), and forgets the
    /// buffers of threads that ended.
    fn take_all(&self, out: &mut Vec<u8>) {
        let mut buffers = lock(&self.buffers);
        for buffer in buffers.iter() {
            // One lock for both: a line appended in between would be cleared unwritten.
            let mut pending = lock(&buffer.pending);
            out.extend_from_slice(&pending);
            pending.clear();
        }
        // Listed here only: its thread is gone (its thread-local entry dropped).
        buffers.retain(|b| Arc::strong_count(b) > 1 || !lock(&b.pending).is_empty());
    }

    fn anything_pending(&self) -> bool {
        lock(&self.buffers)
            .iter()
            .any(|b| !lock(&b.pending).is_empty())
    }
}

/// The writer thread: from the first line, waits a tick (or until high water) and writes
/// whatever collected; once closed, writes the rest and returns.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut batch = Vec::with_capacity(HIGH_WATER);
    loop {
        let closed = {
            let mut state = lock(&shared.state);
            // Idle: sleep until the first line (no wake-ups while nothing is logged). An
            // appender that finds `idle` set wakes us under `state`, so no line is missed.
            shared.idle.store(true, SeqCst);
            while !state.closed && !shared.anything_pending() {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            shared.idle.store(false, SeqCst);
            // Then let the lines of the next tick join it, unless high water comes first.
            if !state.closed {
                state = shared
                    .changed
                    .wait_timeout(state, FLUSH_EVERY)
                    .map_or_else(|e| e.into_inner().0, |(s, _)| s);
            }
            state.closed
        };
        shared.take_all(&mut batch);
        // Threads waiting at the cap may go on.
        shared.changed.notify_all();
        if !batch.is_empty() {
            // Nowhere to report a failed write to stderr: the lines are lost either way.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
        }
        if closed && !shared.anything_pending() {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while appending left at worst a partial line: keep logging.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BatchedWriter {
    /// This thread's buffer in this writer, made and listed on the thread's first line.
    fn my_buffer(&self) -> Arc<ThreadBuffer> {
        let listed = |buffer: &Arc<ThreadBuffer>| {
            lock(&self.shared.buffers).push(buffer.clone());
        };
        MY_BUFFERS
            .try_with(|mine| {
                let mut mine = mine.borrow_mut();
                let this = Arc::as_ptr(&self.shared);
                if let Some((_, buffer)) = mine.iter().find(|(w, _)| std::ptr::eq(w.as_ptr(), this))
                {
                    return buffer.clone();
                }
                // A new entry: drop those of writers that are gone (each one's `Weak` keeps
                // its address from matching another), once here instead of on every line.
                mine.retain(|(writer, _)| writer.strong_count() > 0);
                let buffer = Arc::new(ThreadBuffer::default());
                listed(&buffer);
                mine.push((Arc::downgrade(&self.shared), buffer.clone()));
                buffer
            })
            // A line logged while the thread's locals are torn down: a buffer for it alone,
            // written and forgotten with the next batch.
            .unwrap_or_else(|_| {
                let buffer = Arc::new(ThreadBuffer::default());
                listed(&buffer);
                buffer
            })
    }

    /// Appends `line` to this thread's buffer (waiting while it is at its cap).
    fn append(&self, line: &[u8]) {
        use std::sync::atomic::Ordering::SeqCst;
        let buffer = self.my_buffer();
        let (before, after) = loop {
            let mut pending = lock(&buffer.pending);
            if pending.len() < HARD_CAP {
                let before = pending.len();
                pending.extend_from_slice(line);
                break (before, pending.len());
            }
            drop(pending);
            // At the cap: wake the writer and wait until it has taken the buffers.
            let state = lock(&self.shared.state);
            if state.closed {
                lock(&buffer.pending).extend_from_slice(line);
                return;
            }
            self.shared.changed.notify_all();
            let _ = self
                .shared
                .changed
                .wait_timeout(state, FLUSH_EVERY)
                .unwrap_or_else(|e| e.into_inner());
        };
        // Wake the writer for the first line while it sleeps and at high water, not for
        // each line.
        let first = before == 0 && self.shared.idle.load(SeqCst);
        if first || (before < HIGH_WATER && after >= HIGH_WATER) {
            let _state = lock(&self.shared.state);
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
    use std::time::Instant;

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
    fn a_finished_threads_lines_are_written_and_its_buffer_then_forgotten() {
        let out = Captured::default();
        let (writer, guard) = BatchedWriter::start(out.clone());
        for t in 0..3u8 {
            let mut w = writer.clone();
            std::thread::spawn(move || w.write_all(&[b'a' + t, b'\n']).unwrap())
                .join()
                .unwrap();
        }
        // A second writer on this thread gets a buffer of its own.
        let other = Captured::default();
        let (mut second, second_guard) = BatchedWriter::start(other.clone());
        second.write_all(b"second\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().len() < 6 || !lock(&writer.shared.buffers).is_empty() {
            assert!(Instant::now() < deadline, "lines unwritten or buffers kept");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(second_guard);
        assert_eq!(&*other.0.lock().unwrap(), b"second\n");
        drop(guard);
        let mut lines: Vec<u8> = out.0.lock().unwrap().clone();
        lines.sort_unstable();
        assert_eq!(lines, b"\n\n\nabc");
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
