//! Where logs go and how they look: stderr, text or JSON lines, level from `TETHER_LOG` (or
//! `RUST_LOG`), info by default.

/// `--log-format`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; colour codes only when stderr is a terminal.
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// The log writer's thread: dropped when `main` returns, it writes what is still queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Sets up the subscriber. Lines are formatted on the thread that logs them and handed to a
/// writer thread, which writes whatever queued meanwhile to stderr at once (a buffered writer,
/// flushed whenever the queue runs dry): an access-log line per request cost a `write` system
/// call on the request's worker thread, ~15% of a `get`'s CPU with the log on (benchmark's
/// ops-overhead runs). Not lossy: when the queue is full, the logging thread waits.
pub fn init_tracing(format: LogFormat) -> LogGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TETHER_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("tether-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => {
            // Colour codes only for a person at a terminal: a file or a collector gets plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).try_init()
        }
    };
    guard
}
