//! The transactional heart of the consumer loop: a batch of parsed, prepared messages
//! applied in one transaction, one savepoint each (inbox, state, audit, outbox). The
//! inbox is keyed on the consuming queue and the message id, so an event consumed by
//! two workers has its effect once in each.

use sqlx::Connection as _;
use tracing::{Instrument, Span};

use super::deps::Deps;
use super::worker::{Message, Worker};
use crate::contract::Envelope;
use crate::contract::trace::TraceContext;
use crate::error::{HandlerError, chain};
use crate::store::{inbox, outbox};

/// What a parsed delivery carries besides its command.
pub struct Head {
    /// The checked envelope.
    pub envelope: Envelope,
    /// Where an RPC reply goes.
    pub reply_to: Option<String>,
    /// The RPC correlation id.
    pub correlation_id: Option<String>,
    /// The delivery's span (see `telemetry::spans`).
    pub span: Span,
    /// The trace context everything this message causes carries: the caller's trace,
    /// with the delivery's span as parent.
    pub trace: TraceContext,
}

/// A delivery that parsed and was prepared.
pub struct Ready<P> {
    /// Its place in the batch.
    pub index: usize,
    /// Envelope, reply address, trace.
    pub head: Head,
    /// The prepared command.
    pub prepared: P,
}

/// What became of one delivery of a batch.
pub enum Verdict {
    /// Handled: acknowledge.
    Done,
    /// Already handled before: acknowledge.
    Duplicate,
    /// Did not parse: to the `.dlq`, with this reason.
    Invalid(String),
    /// Permanent failure: to the `.dlq`, with this reason.
    DeadLetter(String),
    /// Transient failure: to a delay queue, with this reason.
    Retry(String),
}

impl Verdict {
    /// The verdict for a handler's failure.
    pub fn of(e: &HandlerError) -> Verdict {
        let reason = chain(e);
        if e.is_transient() {
            Verdict::Retry(reason)
        } else {
            Verdict::DeadLetter(reason)
        }
    }
}

/// Applies a batch in one transaction; when that transaction fails, tries each
/// message alone, so one bad message or a deadlock does not hold up the others.
pub async fn apply_batch<W: Worker>(
    worker: &W,
    deps: &Deps,
    queue: &str,
    ready: &[Ready<W::Prepared>],
    verdicts: &mut [Verdict],
) {
    let all: Vec<&Ready<W::Prepared>> = ready.iter().collect();
    match apply(worker, deps, queue, &all).await {
        Ok(outcomes) => record(verdicts, outcomes),
        Err(e) => {
            tracing::debug!(error = %chain(&e), "batch transaction failed; applying one by one");
            for item in ready {
                match apply(worker, deps, queue, &[item]).await {
                    Ok(outcomes) => record(verdicts, outcomes),
                    Err(e) => verdicts[item.index] = Verdict::of(&e),
                }
            }
        }
    }
}

fn record(verdicts: &mut [Verdict], outcomes: Vec<(usize, Verdict)>) {
    for (index, verdict) in outcomes {
        verdicts[index] = verdict;
    }
}

/// Applies messages in one transaction, one savepoint each. A permanent handler error
/// rolls back that message alone (its verdict carries the reason); anything else
/// fails the whole transaction.
async fn apply<W: Worker>(
    worker: &W,
    deps: &Deps,
    queue: &str,
    items: &[&Ready<W::Prepared>],
) -> Result<Vec<(usize, Verdict)>, HandlerError> {
    let mut tx = deps.pool.begin().await.map_err(HandlerError::Unavailable)?;
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let envelope = &item.head.envelope;
        let span = &item.head.span;
        let mut savepoint = tx.begin().await?;
        let first =
            inbox::record(&mut savepoint, &envelope.id, queue, &envelope.message_type).await?;
        if !first {
            savepoint.commit().await?;
            span.in_scope(|| tracing::debug!("duplicate; already handled"));
            outcomes.push((item.index, Verdict::Duplicate));
            continue;
        }
        let message = Message {
            envelope,
            reply_to: item.head.reply_to.as_deref(),
            correlation_id: item.head.correlation_id.as_deref(),
            now: deps.clock.now(),
        };
        match worker
            .handle(&item.prepared, &message, &mut savepoint)
            .instrument(span.clone())
            .await
        {
            Ok(outgoing) => {
                outbox::insert_all(
                    &mut savepoint,
                    &outgoing,
                    &item.head.trace,
                    &deps.keys,
                    Some(&envelope.id),
                )
                .await?;
                savepoint.commit().await?;
                outcomes.push((item.index, Verdict::Done));
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                savepoint.rollback().await?;
                outcomes.push((item.index, Verdict::DeadLetter(chain(&e))));
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}
