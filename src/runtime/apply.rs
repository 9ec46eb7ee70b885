//! The transactional heart of the consumer loop: a batch of parsed, prepared messages
//! applied in one transaction (inbox, state, audit, outbox), with a savepoint per
//! message only when a handler refused one. The inbox is keyed on the consuming queue
//! and the message id, so an event consumed by two workers has its effect once in
//! each.

use sqlx::Connection as _;
use tracing::{Instrument, Span};

use super::at_commit::Committed;
use super::deps::Deps;
use super::worker::{Handling, Message, Worker};
use crate::contract::Envelope;
use crate::contract::trace::TraceContext;
use crate::error::{HandlerError, chain};
use crate::store::outbox::Caused;
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

/// Applies a batch in one transaction, with no savepoint per message (see
/// `apply_together`). When a handler refuses a message for good, the batch is applied
/// again with a savepoint per message, so only that message is rolled back; when the
/// transaction fails, each message is tried alone, so one bad message or a deadlock
/// does not hold up the others. Returns what is to be published at once (see
/// `at_commit`); the rest is the relay's.
pub async fn apply_batch<W: Worker>(
    worker: &W,
    deps: &Deps,
    queue: &str,
    ready: &[Ready<W::Prepared>],
    verdicts: &mut [Verdict],
) -> Committed {
    let all: Vec<&Ready<W::Prepared>> = ready.iter().collect();
    let mut committed = Committed::for_relay();
    let applied = match apply_together(worker, deps, queue, &all).await {
        Ok(Some((outcomes, together))) => {
            committed = together;
            Ok(outcomes)
        }
        Ok(None) => apply(worker, deps, queue, &all).await,
        Err(e) => Err(e),
    };
    match applied {
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
    committed
}

/// The common case in few round trips: one statement records every id of the batch
/// in the inbox, the worker handles the new ones (see `Worker::handle_batch`), one
/// statement writes what they audited, everything they publish and the ledger's
/// entries, one commit. `None`, rolled back, when a handler refused a message for good.
/// What the batch caused comes back to be published at once, when that is on.
async fn apply_together<W: Worker>(
    worker: &W,
    deps: &Deps,
    queue: &str,
    items: &[&Ready<W::Prepared>],
) -> Result<Option<(Vec<(usize, Verdict)>, Committed)>, HandlerError> {
    let mut tx = deps.pool.begin().await.map_err(HandlerError::Unavailable)?;
    let ids: Vec<&str> = items.iter().map(|i| i.head.envelope.id.as_str()).collect();
    let types: Vec<&str> = items
        .iter()
        .map(|i| i.head.envelope.message_type.as_str())
        .collect();
    let first = inbox::record_all(&mut tx, &ids, queue, &types).await?;
    let mut outcomes = Vec::with_capacity(items.len());
    let mut fresh = Vec::with_capacity(items.len());
    for (item, first) in items.iter().zip(first) {
        if first {
            fresh.push((*item, message_of(item, deps)));
        } else {
            item.head
                .span
                .in_scope(|| tracing::debug!("duplicate; already handled"));
            outcomes.push((item.index, Verdict::Duplicate));
        }
    }
    let batch: Vec<Handling<'_, W::Prepared>> = fresh
        .iter()
        .map(|(item, message)| Handling {
            prepared: &item.prepared,
            message,
            span: &item.head.span,
        })
        .collect();
    let handled = match worker.handle_batch(&batch, &mut tx).await {
        Ok(handled) if handled.len() == fresh.len() => handled,
        Ok(handled) => {
            let (got, asked) = (handled.len(), fresh.len());
            tracing::error!(got, asked, "a worker answered a batch with the wrong count");
            return Ok(None);
        }
        Err(e) if e.is_transient() => return Err(e),
        Err(_) => return Ok(None),
    };
    let mut caused = Vec::with_capacity(fresh.len());
    let mut audited = Vec::with_capacity(fresh.len());
    for ((item, message), outgoing) in fresh.iter().zip(handled) {
        caused.push((*item, outgoing));
        audited.append(&mut message.take_audited());
        outcomes.push((item.index, Verdict::Done));
    }
    let groups: Vec<Caused<'_>> = caused
        .iter()
        .map(|(item, outgoing)| Caused {
            messages: outgoing,
            trace: &item.head.trace,
            caused_by: Some(&item.head.envelope.id),
        })
        .collect();
    let hold = deps.at_commit.hold(&deps.runtime);
    let ids = outbox::insert_held(&mut tx, &audited, &groups, &deps.keys, hold.as_ref()).await?;
    tx.commit().await?;
    drop(groups);
    if hold.is_none() {
        return Ok(Some((outcomes, Committed::for_relay())));
    }
    let mut committed = Committed::held();
    let mut ids = ids.into_iter();
    for (item, outgoing) in caused {
        committed.extend(&mut ids, outgoing, &item.head.trace);
    }
    Ok(Some((outcomes, committed)))
}

/// What the handler sees of a delivery.
fn message_of<'a, P>(item: &'a Ready<P>, deps: &Deps) -> Message<'a> {
    Message::new(
        &item.head.envelope,
        item.head.reply_to.as_deref(),
        item.head.correlation_id.as_deref(),
        deps.clock.now(),
    )
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
        let message = message_of(item, deps);
        match worker
            .handle(&item.prepared, &message, &mut savepoint)
            .instrument(span.clone())
            .await
        {
            Ok(outgoing) => {
                let caused = Caused {
                    messages: &outgoing,
                    trace: &item.head.trace,
                    caused_by: Some(&envelope.id),
                };
                let audited = message.take_audited();
                outbox::insert_held(&mut savepoint, &audited, &[caused], &deps.keys, None).await?;
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
