//! The consumer loop every worker runs: take a batch of deliveries, parse each at the
//! edge, prepare them, apply them in one transaction (inbox, state, audit, outbox; one
//! savepoint per message), commit, send failures on, then acknowledge the whole batch
//! with one `multiple` ack. This is the one place that logs a message's failure.

use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use sqlx::Connection as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dead_letter::{self, attempts};
use super::publish::{PublishError, header_str};
use super::topology::{self, WorkerQueue};
use crate::app::worker::{Deps, Message, Worker};
use crate::contract::schemas::Schemas;
use crate::contract::trace::TraceParent;
use crate::contract::{Envelope, ParseError};
use crate::error::{HandlerError, chain};
use crate::store::{inbox, outbox};

/// Why a consuming session ended (the loop reconnects after each).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("cannot forward a failed message")]
    Publish(#[from] PublishError),
    #[error("the broker cancelled the consumer")]
    ConsumerEnded,
}

/// Runs one worker until `cancel` fires, reconnecting with backoff whenever the broker
/// goes away; deliveries not yet acknowledged then come back and, thanks to the inbox,
/// have their effect once.
pub async fn run<W: Worker>(worker: Arc<W>, deps: Arc<Deps>, cancel: CancellationToken) {
    let queue = deps.names.work_queue(worker.name());
    let mut delays = super::reconnect_delays();
    while !cancel.is_cancelled() {
        let Some(connection) = super::connect_with_backoff(
            &deps.amqp_url,
            &deps.names.connection_name(worker.name()),
            &cancel,
        )
        .await
        else {
            break;
        };
        let result = session(&*worker, &deps, &queue, &connection, &cancel).await;
        super::close(&connection, "pinflow stopping").await;
        match result {
            Ok(()) => break,
            Err(e) => {
                let delay = delays.next().unwrap_or_default();
                tracing::warn!(worker = worker.name(), error = %chain(&e), "consumer lost its broker session; reconnecting");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    tracing::info!(worker = worker.name(), "consumer stopped");
}

async fn session<W: Worker>(
    worker: &W,
    deps: &Deps,
    queue: &str,
    connection: &Connection,
    cancel: &CancellationToken,
) -> Result<(), SessionError> {
    let channel = connection.create_channel().await?;
    topology::declare_shared(&channel, &deps.names).await?;
    let spec = WorkerQueue {
        name: worker.name(),
        routing_keys: worker.accepts(),
    };
    topology::declare_worker(&channel, &deps.names, &deps.runtime, &spec).await?;
    channel
        .basic_qos(deps.runtime.prefetch, BasicQosOptions::default())
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            format!("pinflow-{}", worker.name()).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(worker = worker.name(), queue, "consuming");
    let batch_size = usize::from(deps.runtime.batch_size);
    loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            next = consumer.next() => next,
        };
        let mut batch = vec![next.ok_or(SessionError::ConsumerEnded)??];
        while batch.len() < batch_size {
            match consumer.next().now_or_never() {
                Some(Some(delivery)) => batch.push(delivery?),
                _ => break,
            }
        }
        process_batch(worker, deps, &channel, queue, &batch).await?;
    }
    // Stop taking deliveries; closing the channel hands prefetched ones back.
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    channel.close(200, "pinflow stopping".into()).await?;
    Ok(())
}

/// A delivery that parsed, with what its handler needs.
struct Ready<P> {
    index: usize,
    envelope: Envelope,
    prepared: P,
    reply_to: Option<String>,
    correlation_id: Option<String>,
    trace: TraceParent,
}

/// What became of one delivery of a batch.
enum Verdict {
    Done,
    DeadLetter(String),
    Retry(String),
}

async fn process_batch<W: Worker>(
    worker: &W,
    deps: &Deps,
    channel: &Channel,
    queue: &str,
    batch: &[Delivery],
) -> Result<(), SessionError> {
    let mut verdicts: Vec<Verdict> = batch.iter().map(|_| Verdict::Done).collect();
    let mut parsed = Vec::new();
    for (index, delivery) in batch.iter().enumerate() {
        match parse(worker, delivery) {
            Ok(item) => parsed.push((index, item)),
            Err(e) => verdicts[index] = Verdict::DeadLetter(e.to_string()),
        }
    }
    let prepared = join_all(parsed.into_iter().map(
        |(index, (envelope, command, reply_to, correlation_id, trace))| async move {
            (
                index,
                envelope,
                reply_to,
                correlation_id,
                trace,
                worker.prepare(command).await,
            )
        },
    ))
    .await;
    let mut ready = Vec::new();
    for (index, envelope, reply_to, correlation_id, trace, result) in prepared {
        match result {
            Ok(prepared) => ready.push(Ready {
                index,
                envelope,
                prepared,
                reply_to,
                correlation_id,
                trace,
            }),
            Err(e) => verdicts[index] = verdict_for(&e),
        }
    }
    if !ready.is_empty() {
        let all: Vec<&Ready<W::Prepared>> = ready.iter().collect();
        match apply(worker, deps, queue, &all).await {
            Ok(outcomes) => record(&mut verdicts, outcomes),
            Err(e) => {
                // One transaction for the batch failed: try each message alone, so one
                // bad message or a deadlock does not hold up the others.
                tracing::debug!(error = %chain(&e), "batch transaction failed; applying one by one");
                for item in &ready {
                    match apply(worker, deps, queue, &[item]).await {
                        Ok(outcomes) => record(&mut verdicts, outcomes),
                        Err(e) => verdicts[item.index] = verdict_for(&e),
                    }
                }
            }
        }
        deps.relay_wake.notify_one();
        crate::failpoint::hit("after-commit");
    }
    for (delivery, verdict) in batch.iter().zip(&verdicts) {
        forward(deps, channel, queue, delivery, verdict).await?;
    }
    if let Some(last) = batch.last() {
        channel
            .basic_ack(last.delivery_tag, BasicAckOptions { multiple: true })
            .await?;
    }
    Ok(())
}

type Parsed<C> = (Envelope, C, Option<String>, Option<String>, TraceParent);

fn parse<W: Worker>(worker: &W, delivery: &Delivery) -> Result<Parsed<W::Command>, ParseError> {
    let properties = &delivery.properties;
    let content_type = properties.content_type().as_ref().map(|ct| ct.as_str());
    let envelope = Envelope::parse(&delivery.data, content_type, Schemas::embedded(), |t| {
        worker.accepts().contains(&t)
    })?;
    let reply_to = properties
        .reply_to()
        .as_ref()
        .map(|r| r.as_str().to_owned());
    if worker.is_rpc(&envelope.message_type) && reply_to.as_deref().is_none_or(str::is_empty) {
        return Err(ParseError::MissingReplyTo);
    }
    let command = worker.parse(&envelope)?;
    let correlation_id = properties
        .correlation_id()
        .as_ref()
        .map(|c| c.as_str().to_owned());
    let trace = header_str(properties.headers().as_ref(), "traceparent")
        .and_then(|t| TraceParent::parse(&t))
        .unwrap_or_else(TraceParent::start);
    Ok((envelope, command, reply_to, correlation_id, trace))
}

fn verdict_for(e: &HandlerError) -> Verdict {
    let reason = chain(e);
    if e.is_transient() {
        Verdict::Retry(reason)
    } else {
        Verdict::DeadLetter(reason)
    }
}

fn record(verdicts: &mut [Verdict], outcomes: Vec<(usize, Option<String>)>) {
    for (index, failure) in outcomes {
        verdicts[index] = match failure {
            None => Verdict::Done,
            Some(reason) => Verdict::DeadLetter(reason),
        };
    }
}

/// Applies messages in one transaction, one savepoint each. A permanent handler error
/// rolls back that message alone (its outcome carries the reason); anything else
/// fails the whole transaction.
async fn apply<W: Worker>(
    worker: &W,
    deps: &Deps,
    queue: &str,
    items: &[&Ready<W::Prepared>],
) -> Result<Vec<(usize, Option<String>)>, HandlerError> {
    let mut tx = deps.pool.begin().await.map_err(HandlerError::Unavailable)?;
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let span = tracing::info_span!("message", message_id = %item.envelope.id, message_type = %item.envelope.message_type, trace_id = %item.trace.trace_id);
        let mut savepoint = tx.begin().await?;
        let first = inbox::record(
            &mut savepoint,
            &item.envelope.id,
            queue,
            &item.envelope.message_type,
        )
        .await?;
        if !first {
            savepoint.commit().await?;
            span.in_scope(|| tracing::debug!("duplicate; already handled"));
            outcomes.push((item.index, None));
            continue;
        }
        let message = Message {
            envelope: &item.envelope,
            reply_to: item.reply_to.as_deref(),
            correlation_id: item.correlation_id.as_deref(),
            now: deps.clock.now(),
        };
        match worker
            .handle(&item.prepared, &message, &mut savepoint)
            .instrument(span.clone())
            .await
        {
            Ok(outgoing) => {
                outbox::insert_all(&mut savepoint, &outgoing, &item.trace, &deps.key).await?;
                savepoint.commit().await?;
                outcomes.push((item.index, None));
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                savepoint.rollback().await?;
                outcomes.push((item.index, Some(chain(&e))));
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Sends a failed delivery on: to the dead-letter queue, or to a delay queue while it
/// has attempts left. Logs the failure, once.
async fn forward(
    deps: &Deps,
    channel: &Channel,
    queue: &str,
    delivery: &Delivery,
    verdict: &Verdict,
) -> Result<(), SessionError> {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let routing_key = delivery.routing_key.as_str();
    match verdict {
        Verdict::Done => Ok(()),
        Verdict::DeadLetter(reason) => {
            let attempts = attempts(delivery) + 1;
            tracing::warn!(queue, message_id, routing_key, attempts, reason = %reason, "message dead-lettered");
            dead_letter::to_dead_letter_queue(channel, deps, queue, delivery, reason, attempts)
                .await?;
            Ok(())
        }
        Verdict::Retry(reason) => {
            let attempts = attempts(delivery) + 1;
            if attempts >= deps.runtime.retry_max_attempts {
                tracing::error!(queue, message_id, routing_key, attempts, reason = %reason, "message dead-lettered after its last attempt");
                dead_letter::to_dead_letter_queue(channel, deps, queue, delivery, reason, attempts)
                    .await?;
            } else {
                let (delay, ttl) = topology::retry_delay(&deps.runtime, attempts);
                tracing::warn!(queue, message_id, routing_key, attempts, retry_in_ms = delay.as_millis() as u64, reason = %reason, "message will be retried");
                dead_letter::to_retry_queue(channel, deps, queue, delivery, attempts, delay, ttl)
                    .await?;
            }
            Ok(())
        }
    }
}
