//! The consumer loop every worker runs: take a batch of deliveries, parse each at the
//! edge, prepare them, apply them in one transaction (see `apply`), send failures on,
//! then acknowledge the whole batch with one `multiple` ack. This is the one place
//! that logs a message's failure.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span};

use super::apply::{Head, Ready, Verdict, apply_batch};
use super::at_commit;
use super::deps::Deps;
use super::supervise::Sessions;
use super::worker::Worker;
use crate::broker::dead_letter::{DeadLetterer, attempts};
use crate::broker::publish::{PublishError, header_str};
use crate::broker::topology;
use crate::contract::schemas::Schemas;
use crate::contract::trace::TraceContext;
use crate::contract::{Envelope, ParseError};
use crate::error::HandlerError;
use crate::manifest::Description;
use crate::telemetry::metrics::{self, Outcome};
use crate::telemetry::spans;

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

/// One worker's consumer: what every step of the loop needs.
struct Consumer<'a, W> {
    /// The handlers.
    worker: &'a W,
    /// Its name and bindings.
    description: &'a Description,
    /// Database, names, settings, keys.
    deps: &'a Deps,
    /// Its work queue.
    queue: &'a str,
}

/// Runs one worker until `cancel` fires, reconnecting with backoff whenever the broker
/// goes away; deliveries not yet acknowledged then come back and, thanks to the inbox,
/// have their effect once.
pub async fn run<W: Worker>(
    worker: Arc<W>,
    description: Description,
    deps: Arc<Deps>,
    cancel: CancellationToken,
) {
    let name = description.name;
    let queue = deps.names.work_queue(name);
    let consumer = Consumer {
        worker: &*worker,
        description: &description,
        deps: &deps,
        queue: &queue,
    };
    let part = deps.health.register(&format!("consumer {name}"));
    let types: Vec<&'static str> = description
        .bindings
        .iter()
        .map(|b| b.message_type)
        .collect();
    metrics::declare(name, &types);
    let mut sessions = Sessions::new(&deps, name, &part, &cancel);
    while let Some(connection) = sessions.connect().await {
        let result = consumer
            .session(&connection, &cancel, &part, sessions.reconnected())
            .await;
        if !sessions.ended(&connection, result).await {
            break;
        }
    }
    tracing::info!(worker = name, "consumer stopped");
}

impl<W: Worker> Consumer<'_, W> {
    async fn session(
        &self,
        connection: &Connection,
        cancel: &CancellationToken,
        part: &super::health::Part,
        reconnected: bool,
    ) -> Result<(), SessionError> {
        let deps = self.deps;
        let channel = connection.create_channel().await?;
        deps.declare_topology(&channel, reconnected).await?;
        channel
            .basic_qos(deps.runtime.prefetch, BasicQosOptions::default())
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                self.queue.into(),
                format!("pinflow-{}", self.description.name).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        part.set(true);
        tracing::info!(
            worker = self.description.name,
            queue = self.queue,
            "consuming"
        );
        let batch_size = usize::from(deps.runtime.batch_size);
        loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                next = consumer.next() => next,
            };
            let mut batch = Vec::with_capacity(batch_size);
            batch.push(next.ok_or(SessionError::ConsumerEnded)??);
            while batch.len() < batch_size {
                match consumer.next().now_or_never() {
                    Some(Some(delivery)) => batch.push(delivery?),
                    _ => break,
                }
            }
            self.process_batch(&channel, &batch).await?;
        }
        // Stop taking deliveries; closing the channel hands prefetched ones back.
        channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await?;
        channel.close(200, "pinflow stopping".into()).await?;
        Ok(())
    }

    async fn process_batch(
        &self,
        channel: &Channel,
        batch: &[Delivery],
    ) -> Result<(), SessionError> {
        let started = Instant::now();
        let name = self.description.name;
        let mut verdicts: Vec<Verdict> = batch.iter().map(|_| Verdict::Done).collect();
        let mut labels = Vec::with_capacity(batch.len());
        let mut delivery_spans = Vec::with_capacity(batch.len());
        let mut parsed = Vec::new();
        for (index, delivery) in batch.iter().enumerate() {
            let label = self.type_label(delivery);
            let (span, head) = self.parse(delivery, &label);
            let label = match &head {
                Ok((head, _)) => head.envelope.message_type.clone(),
                Err(_) => label,
            };
            metrics::received(name, &label);
            labels.push(label);
            delivery_spans.push(span);
            match head {
                Ok(item) => parsed.push((index, item)),
                Err(e) => verdicts[index] = Verdict::Invalid(e.to_string()),
            }
        }
        if labels.iter().any(|label| !self.hashes(label)) {
            self.deps.other_work.seen();
        }
        let mut ready = Vec::new();
        for (index, head, result) in self.prepare(parsed).await {
            match result {
                Ok(prepared) => ready.push(Ready {
                    index,
                    head,
                    prepared,
                }),
                Err(e) => verdicts[index] = Verdict::of(&e),
            }
        }
        if !ready.is_empty() {
            let committed =
                apply_batch(self.worker, self.deps, self.queue, &ready, &mut verdicts).await;
            crate::failpoint::hit("after-commit");
            if committed.for_the_relay() {
                self.deps.relay_wake.notify_one();
            }
            if !committed.is_empty() {
                at_commit::publish(self.deps, channel, committed).await;
            }
        }
        let took = started.elapsed();
        for (index, (delivery, verdict)) in batch.iter().zip(&verdicts).enumerate() {
            let span = &delivery_spans[index];
            let outcome = self
                .forward(channel, delivery, verdict)
                .instrument(span.clone())
                .await?;
            spans::outcome(span, outcome);
            span.in_scope(|| tracing::debug!(outcome = outcome.as_str(), "delivery finished"));
            metrics::finished(name, &labels[index], outcome, took);
        }
        if let Some(last) = batch.last() {
            channel
                .basic_ack(last.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
        Ok(())
    }

    /// Whether handling a command of this type runs Argon2 (see `Binding::hashes`).
    fn hashes(&self, message_type: &str) -> bool {
        self.description
            .binding(message_type)
            .is_some_and(|binding| binding.hashes)
    }

    /// The type a delivery that did not parse is counted under: its AMQP type or
    /// routing key when the worker takes that type, `unknown` otherwise (so a
    /// stranger's values cannot grow the metrics without bound).
    fn type_label(&self, delivery: &Delivery) -> String {
        let properties = &delivery.properties;
        let amqp_type = properties.kind().as_ref().map(|t| t.as_str());
        [amqp_type, Some(delivery.routing_key.as_str())]
            .into_iter()
            .flatten()
            .find(|t| self.description.accepts(t))
            .unwrap_or("unknown")
            .to_owned()
    }

    /// Prepares a batch's parsed commands with `Worker::prepare_batch`. A worker that
    /// answers with the wrong number of results is a bug: it is logged, and each
    /// command is parsed again from its envelope and prepared alone.
    async fn prepare(
        &self,
        parsed: Vec<(usize, (Head, W::Command))>,
    ) -> Vec<(usize, Head, Result<W::Prepared, HandlerError>)> {
        let (heads, commands): (Vec<_>, Vec<_>) = parsed
            .into_iter()
            .map(|(index, (head, command))| {
                let span = head.span.clone();
                ((index, head), (command, span))
            })
            .unzip();
        let prepared = self.worker.prepare_batch(commands).await;
        if prepared.len() == heads.len() {
            return heads
                .into_iter()
                .zip(prepared)
                .map(|((index, head), result)| (index, head, result))
                .collect();
        }
        tracing::error!(
            worker = self.description.name,
            "prepare_batch answered {} results for {} commands; preparing each alone",
            prepared.len(),
            heads.len()
        );
        join_all(heads.into_iter().map(|(index, head)| {
            let span = head.span.clone();
            async move {
                let result = match self.worker.parse(&head.envelope) {
                    Ok(command) => self.worker.prepare(command).await,
                    Err(e) => Err(HandlerError::Permanent(e.to_string())),
                };
                (index, head, result)
            }
            .instrument(span)
        }))
        .await
    }

    /// Bytes to envelope to typed command, with what the reply and the trace need.
    /// The delivery's span is made first, so a delivery that does not parse has one
    /// too, named with `label` (see `type_label`).
    fn parse(
        &self,
        delivery: &Delivery,
        label: &str,
    ) -> (Span, Result<(Head, W::Command), ParseError>) {
        let properties = &delivery.properties;
        let headers = properties.headers().as_ref();
        let caller = TraceContext::from_caller(
            header_str(headers, "traceparent").as_deref(),
            header_str(headers, "tracestate").as_deref(),
        );
        let message_id = properties.message_id().as_ref().map_or("", |m| m.as_str());
        let (span, trace) =
            spans::delivery(self.description.name, message_id, label, caller.as_ref());
        let parsed = span.in_scope(|| self.parse_with(delivery, &span, trace));
        (span, parsed)
    }

    fn parse_with(
        &self,
        delivery: &Delivery,
        span: &Span,
        trace: TraceContext,
    ) -> Result<(Head, W::Command), ParseError> {
        let properties = &delivery.properties;
        let content_type = properties.content_type().as_ref().map(|ct| ct.as_str());
        let envelope = Envelope::parse(&delivery.data, content_type, Schemas::embedded(), |t| {
            self.description.accepts(t)
        })?;
        let reply_to = properties
            .reply_to()
            .as_ref()
            .map(|r| r.as_str().to_owned());
        let correlation_id = properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned());
        if self.description.is_rpc(&envelope.message_type) {
            check_reply_address(reply_to.as_deref(), correlation_id.as_deref())?;
        }
        let command = self.worker.parse(&envelope)?;
        let head = Head {
            envelope,
            reply_to,
            correlation_id,
            span: span.clone(),
            trace,
        };
        Ok((head, command))
    }

    /// Sends a failed delivery on: to the dead-letter queue, or to a delay queue while
    /// it has attempts left. Logs the failure, once.
    async fn forward(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        verdict: &Verdict,
    ) -> Result<Outcome, SessionError> {
        let deps = self.deps;
        let queue = self.queue;
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let routing_key = delivery.routing_key.as_str();
        let letters = DeadLetterer {
            channel,
            names: &deps.names,
            keys: &deps.keys,
            runtime: &deps.runtime,
        };
        let attempts = attempts(delivery) + 1;
        Ok(match verdict {
            Verdict::Done => Outcome::Handled,
            Verdict::Duplicate => Outcome::Duplicate,
            Verdict::Invalid(reason) | Verdict::DeadLetter(reason) => {
                tracing::warn!(queue, message_id, routing_key, attempts, reason = %reason, "message dead-lettered");
                letters
                    .to_dead_letter_queue(queue, delivery, reason, attempts)
                    .await?;
                match verdict {
                    Verdict::Invalid(_) => Outcome::Invalid,
                    _ => Outcome::Rejected,
                }
            }
            Verdict::Retry(reason) if attempts >= deps.runtime.retry_max_attempts => {
                tracing::error!(queue, message_id, routing_key, attempts, reason = %reason, "message dead-lettered after its last attempt");
                letters
                    .to_dead_letter_queue(queue, delivery, reason, attempts)
                    .await?;
                Outcome::Exhausted
            }
            Verdict::Retry(reason) => {
                let (delay, ttl) = topology::retry_delay(&deps.runtime, attempts);
                tracing::warn!(queue, message_id, routing_key, attempts, retry_in_ms = delay.as_millis() as u64, reason = %reason, "message will be retried");
                letters
                    .to_retry_queue(queue, delivery, attempts, delay, ttl)
                    .await?;
                Outcome::Retried
            }
        })
    }
}

/// An RPC command needs a `reply_to` and a `correlation_id`, and its `reply_to` must be
/// a client's queue: never a name pinflow uses (`pinflow.…` or `<namespace>.pinflow.…`),
/// so no reply, and no secret in it, can be pushed into a gateway's or a worker's queue.
/// The broker's direct reply-to and server-named queues are fine.
pub fn check_reply_address(
    reply_to: Option<&str>,
    correlation_id: Option<&str>,
) -> Result<(), ParseError> {
    let reply_to = reply_to
        .filter(|r| !r.is_empty())
        .ok_or(ParseError::MissingReplyTo)?;
    if correlation_id.is_none_or(str::is_empty) {
        return Err(ParseError::MissingCorrelationId);
    }
    let pinflow_name = reply_to.starts_with("pinflow.")
        || reply_to
            .split_once('.')
            .is_some_and(|(_, rest)| rest.starts_with("pinflow."));
    if pinflow_name {
        return Err(ParseError::ForbiddenReplyTo);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_must_go_to_a_client_queue_with_a_correlation_id() {
        let ok = |r| check_reply_address(Some(r), Some("c-1"));
        assert_eq!(ok("amq.rabbitmq.reply-to.g1h2AA"), Ok(()));
        assert_eq!(ok("amq.gen-JzTY20BRgKO-HjmUJj0wLg"), Ok(()));
        assert_eq!(ok("portal.replies"), Ok(()));
        assert_eq!(ok("pinflow.notify.sms"), Err(ParseError::ForbiddenReplyTo));
        assert_eq!(
            ok("t42.pinflow.notify.sms"),
            Err(ParseError::ForbiddenReplyTo)
        );
        assert_eq!(ok("pinflow.sample"), Err(ParseError::ForbiddenReplyTo));
        assert_eq!(ok(""), Err(ParseError::MissingReplyTo));
        assert_eq!(
            check_reply_address(Some("portal.replies"), None),
            Err(ParseError::MissingCorrelationId)
        );
        assert_eq!(
            check_reply_address(None, Some("c")),
            Err(ParseError::MissingReplyTo)
        );
    }
}
