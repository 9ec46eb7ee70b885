//! W3C trace context: continue the caller's trace (`traceparent`, and the vendor
//! data in `tracestate`) in everything published because of a message, or start one.
//! No I/O.

use rand::RngCore;

/// A `traceparent` value: version 00, trace id, parent id, flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lower-case hex digits shared by every hop of one trace.
    pub trace_id: String,
    /// 16 lower-case hex digits naming the hop that published.
    pub span_id: String,
    /// Trace flags (sampled = 01).
    pub flags: String,
}

impl TraceParent {
    /// Parses a `traceparent` header; anything malformed is treated as absent.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let mut parts = text.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let valid = version == "00"
            && parts.next().is_none()
            && hex(trace_id, 32)
            && hex(span_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && span_id.bytes().any(|b| b != b'0');
        valid.then(|| TraceParent {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: flags.to_owned(),
        })
    }

    /// A new trace, for a message that arrived without one.
    pub fn start() -> TraceParent {
        TraceParent {
            trace_id: random_hex::<16>(),
            span_id: random_hex::<8>(),
            flags: "01".to_owned(),
        }
    }

    /// The context for a message published while handling this one: same trace, new
    /// span.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id.clone(),
            span_id: random_hex::<8>(),
            flags: self.flags.clone(),
        }
    }
}

/// The longest `tracestate` kept (the W3C limit for what a vendor must propagate).
pub const MAX_TRACESTATE: usize = 512;

/// A message's trace context: its `traceparent` and, when the caller sent one with a
/// valid parent, its `tracestate`, passed on unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// Trace id, parent span, flags.
    pub parent: TraceParent,
    /// The caller's vendor-specific trace state, if any.
    pub state: Option<String>,
}

impl TraceContext {
    /// From the two headers. A malformed `traceparent` starts a new trace, and then the
    /// `tracestate` that came with it is dropped, as the W3C rules say; a `tracestate`
    /// that is too long or not printable ASCII is dropped too.
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> TraceContext {
        TraceContext::from_caller(traceparent, tracestate).unwrap_or_else(TraceContext::start)
    }

    /// The caller's context from the two headers, `None` when it sent no valid
    /// `traceparent` (the same rules as `from_headers`).
    pub fn from_caller(
        traceparent: Option<&str>,
        tracestate: Option<&str>,
    ) -> Option<TraceContext> {
        traceparent
            .and_then(TraceParent::parse)
            .map(|parent| TraceContext {
                parent,
                state: tracestate
                    .map(str::trim)
                    .filter(|s| {
                        !s.is_empty()
                            && s.len() <= MAX_TRACESTATE
                            && s.bytes().all(|b| (0x20..0x7f).contains(&b))
                    })
                    .map(str::to_owned),
            })
    }

    /// A new trace, without state.
    pub fn start() -> TraceContext {
        TraceContext {
            parent: TraceParent::start(),
            state: None,
        }
    }

    /// The context for a message published because of this one: same trace and
    /// state, new span.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            parent: self.parent.child(),
            state: self.state.clone(),
        }
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// `N` random bytes as lowercase hex.
fn random_hex<const N: usize>() -> String {
    let mut buf = [0u8; N];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert_eq!(TraceParent::parse(&child.to_string()), Some(child));
    }

    #[test]
    fn trace_state_travels_only_with_a_valid_parent() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::from_headers(Some(parent), Some("congo=t61rcWkgMzE"));
        assert_eq!(context.state.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(context.child().state.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(context.child().parent.trace_id, context.parent.trace_id);
        let orphan = TraceContext::from_headers(Some("garbage"), Some("congo=t61rcWkgMzE"));
        assert_eq!(orphan.state, None);
        let long = "a=".to_owned() + &"b".repeat(MAX_TRACESTATE);
        assert_eq!(
            TraceContext::from_headers(Some(parent), Some(&long)).state,
            None
        );
    }

    #[test]
    fn a_new_trace_has_ids_of_lowercase_hex_that_parse_back() {
        let started = TraceParent::start();
        assert_eq!((started.trace_id.len(), started.span_id.len()), (32, 16));
        assert!(
            (started.trace_id.clone() + &started.span_id)
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{started}"
        );
        assert_eq!(
            TraceParent::parse(&started.to_string()),
            Some(started.clone())
        );
        assert_ne!(TraceParent::start().trace_id, started.trace_id);
    }

    #[test]
    fn malformed_trace_parents_are_ignored() {
        for bad in [
            "",
            "00-abc-def-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
