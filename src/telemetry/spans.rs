//! One span per delivery (and per pass of a timed job), continuing the caller's W3C
//! trace context with OpenTelemetry's own propagator. Its ids go into every line
//! logged while the message is handled and into the `traceparent` of every message it
//! causes, so one request can be followed from the portal to the gateway. Without the
//! OpenTelemetry layer (no exporter configured, or an embedding that installed no
//! subscriber), the trace still continues: same trace id, a new span id.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::metrics::Outcome;
use crate::contract::trace::TraceContext;

/// The span of one delivery to `worker`, child of the caller's context when it sent
/// one, and the context everything it causes carries (same trace, this span as
/// parent).
pub fn delivery(
    worker: &'static str,
    message_id: &str,
    message_type: &str,
    caller: Option<&TraceContext>,
) -> (Span, TraceContext) {
    let span = tracing::info_span!(
        target: "pinflow::delivery",
        "delivery",
        "otel.name" = format!("{worker} {message_type}"),
        "otel.kind" = "consumer",
        "otel.status_code" = Empty,
        worker,
        message_id,
        message_type,
        outcome = Empty,
        trace_id = Empty,
        span_id = Empty,
    );
    let context = continue_trace(&span, caller);
    (span, context)
}

/// The span of one pass of a timed job: a new trace.
pub fn job_pass(job: &'static str) -> (Span, TraceContext) {
    let span = tracing::info_span!(
        target: "pinflow::job",
        "job pass",
        "otel.name" = format!("job {job}"),
        job,
        trace_id = Empty,
        span_id = Empty,
    );
    let context = continue_trace(&span, None);
    (span, context)
}

/// Records what became of the delivery on its span.
pub fn outcome(span: &Span, outcome: Outcome) {
    span.record("outcome", outcome.as_str());
    if !matches!(outcome, Outcome::Handled | Outcome::Duplicate) {
        span.record("otel.status_code", "ERROR");
    }
}

fn continue_trace(span: &Span, caller: Option<&TraceContext>) -> TraceContext {
    // Without the OpenTelemetry layer setting a span's parent does nothing and the span
    // has no context of its own: the trace continues here, without the propagator's
    // round of text maps.
    if super::without_span_export() {
        let context = caller.map_or_else(TraceContext::start, TraceContext::child);
        record_ids(span, &context);
        return context;
    }
    let propagator = TraceContextPropagator::new();
    if let Some(caller) = caller {
        let mut carrier = HashMap::with_capacity(2);
        carrier.insert("traceparent".to_owned(), caller.parent.to_string());
        if let Some(state) = &caller.state {
            carrier.insert("tracestate".to_owned(), state.clone());
        }
        let _ = span.set_parent(propagator.extract(&carrier));
    }
    let own = span.context();
    let context = if own.span().span_context().is_valid() {
        let mut carrier = HashMap::with_capacity(2);
        propagator.inject_context(&own, &mut carrier);
        TraceContext::from_headers(
            carrier.get("traceparent").map(String::as_str),
            carrier.get("tracestate").map(String::as_str),
        )
    } else {
        caller.map_or_else(TraceContext::start, TraceContext::child)
    };
    record_ids(span, &context);
    context
}

/// The ids every line logged in `span` carries.
fn record_ids(span: &Span, context: &TraceContext) {
    span.record("trace_id", context.parent.trace_id.as_str());
    span.record("span_id", context.parent.span_id.as_str());
}
