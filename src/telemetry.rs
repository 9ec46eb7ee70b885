//! The tracing subscriber: text or JSON lines on standard error, filtered by
//! `PINFLOW_LOG`. Log lines carry ids, types and reasons, never bodies or secrets.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging settings, shared by every subcommand.
#[derive(Args, Clone, Debug)]
pub struct Logging {
    /// Log filter, e.g. `info` or `pinflow=debug,lapin=warn`.
    #[arg(long, env = "PINFLOW_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log line format.
    #[arg(
        long,
        env = "PINFLOW_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("PINFLOW_LOG is not a valid filter")]
    Filter(#[source] tracing_subscriber::filter::ParseError),
    #[error("a global subscriber is already set")]
    AlreadySet,
}

/// Set once the command's work is done: lapin's I/O thread may still report the
/// closing connection as an error while the runtime shuts down, which is not news.
static FINISHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Silences the broker client from here on (the command has finished).
pub fn finished() {
    FINISHED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Installs the global subscriber.
pub fn init(logging: &Logging) -> Result<(), TelemetryError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::builder()
        .parse(&logging.log)
        .map_err(TelemetryError::Filter)?;
    // Whatever the filter asks, these never log: lapin prints a returned message (body
    // included) at warn, and lapin and amq-protocol print frames (bodies included) at
    // trace.
    let quiet = tracing_subscriber::filter::filter_fn(|meta| {
        let target = meta.target();
        let noisy = target.starts_with("lapin") || target.starts_with("amq_protocol");
        // PostgreSQL's notices ("relation already exists, skipping") say nothing new.
        let notice =
            target.starts_with("sqlx::postgres::notice") && *meta.level() >= tracing::Level::INFO;
        let body_bearing = target.starts_with("lapin::returned_messages")
            || (noisy && *meta.level() == tracing::Level::TRACE);
        let after_the_end = noisy && FINISHED.load(std::sync::atomic::Ordering::Relaxed);
        !body_bearing && !after_the_end && !notice
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let layer = match logging.log_format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(quiet))
        .try_init()
        .map_err(|_| TelemetryError::AlreadySet)
}
