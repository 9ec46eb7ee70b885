//! Logs, traces and metrics. Logs: text or JSON lines on standard error, filtered by
//! `PINFLOW_LOG`; lines carry ids, types and reasons, never bodies or secrets, and in
//! JSON the trace and span ids of the message being handled. Traces: one span per
//! delivery (`spans`), exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set (the standard `OTEL_*` variables apply). Without an exporter no OpenTelemetry
//! layer is installed (its span bookkeeping would go nowhere); the trace ids still
//! reach the logs and the `traceparent`s (see `spans`).
//! Metrics: `metrics`. Knows nothing of the broker or the database.

mod json;
pub mod metrics;
pub mod spans;

use clap::{Args, ValueEnum};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
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
    #[error("cannot set up the OTLP trace exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// What `init` set up; `shutdown` exports the spans still buffered.
pub struct Telemetry {
    /// The exporting tracer provider, when there is one.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter. Call outside the async runtime.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = provider.shutdown();
        }
    }
}

/// The tracer provider with a batch OTLP/HTTP exporter when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces-only variant) is set; `None` otherwise.
fn tracer_provider() -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("pinflow");
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(TelemetryError::Exporter)?;
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter);
    Ok(Some(provider.build()))
}

/// Set by `init` when the subscriber it installed has no OpenTelemetry layer. An
/// embedding that installs a subscriber of its own leaves it unset, so its layer, if
/// any, gets every span's parent (see `spans`).
static WITHOUT_SPAN_EXPORT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether pinflow's own subscriber is installed, without the OpenTelemetry layer.
pub(crate) fn without_span_export() -> bool {
    WITHOUT_SPAN_EXPORT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set once the command's work is done: lapin's I/O thread may still report the
/// closing connection as an error while the runtime shuts down, which is not news.
static FINISHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Silences the broker client from here on (the command has finished).
pub fn finished() {
    FINISHED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Installs the global subscriber: the log lines and, when spans are exported, the
/// OpenTelemetry layer (for pinflow's own spans only). Call before the async runtime
/// starts.
pub fn init(logging: &Logging) -> Result<Telemetry, TelemetryError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let provider = tracer_provider()?;
    let ours = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.target().starts_with("pinflow")
    });
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("pinflow"))
            .with_filter(ours)
    });
    let exporting = spans.is_some();
    logs(logging)?
        .with(spans)
        .try_init()
        .map_err(|_| TelemetryError::AlreadySet)?;
    WITHOUT_SPAN_EXPORT.store(!exporting, std::sync::atomic::Ordering::Relaxed);
    Ok(Telemetry { provider })
}

/// The registry with the log lines: `PINFLOW_LOG`'s filter, then the one that keeps
/// the broker client's bodies out whatever that filter asks, and in JSON the span
/// fields every line carries.
///
/// `PINFLOW_LOG`'s filter is the outer one: nested per-layer filters only tell the
/// registry that a callsite is off when the outer filter says so, and a span nobody
/// records (the delivery's at `warn` in text) is then never made at all. In JSON the
/// span fields are kept whatever the level, so that a warning logged while a message
/// is handled still carries its trace and ids.
fn logs(
    logging: &Logging,
) -> Result<
    impl tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    TelemetryError,
> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

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
    let (layer, span_fields) = match logging.log_format {
        LogFormat::Text => (layer.boxed(), None),
        LogFormat::Json => (
            layer.event_format(json::JsonLines).boxed(),
            Some(json::SpanFields),
        ),
    };
    Ok(tracing_subscriber::registry()
        .with(span_fields)
        .with(layer.with_filter(quiet).with_filter(filter)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a span at `level` is made under the log lines `log` and `format` set.
    fn made(log: &str, format: LogFormat, level: tracing::Level) -> bool {
        let logging = Logging {
            log: log.to_owned(),
            log_format: format,
        };
        tracing::subscriber::with_default(logs(&logging).unwrap(), || match level {
            tracing::Level::INFO => !tracing::info_span!("delivery", worker = "w").is_disabled(),
            tracing::Level::WARN => !tracing::warn_span!("delivery", worker = "w").is_disabled(),
            _ => unreachable!("only info and warn are asked"),
        })
    }

    /// One test, so that no other subscriber of this binary is alive while the spans
    /// are made: a span's callsite is off only where every live subscriber agrees.
    #[test]
    fn a_span_below_the_text_lines_level_is_never_made_and_json_keeps_every_span() {
        assert!(!made("warn", LogFormat::Text, tracing::Level::INFO));
        assert!(made("warn", LogFormat::Text, tracing::Level::WARN));
        assert!(made("info", LogFormat::Text, tracing::Level::INFO));
        assert!(!made("pinflow=warn", LogFormat::Text, tracing::Level::INFO));
        // In JSON a warning logged while a message is handled carries its span's ids.
        assert!(made("warn", LogFormat::Json, tracing::Level::INFO));
        assert!(made("info", LogFormat::Json, tracing::Level::INFO));
    }
}
