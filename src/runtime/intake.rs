//! The intake: what the broker routes on its own (commands no worker binds, from the
//! alternate exchange; messages it dead-lettered itself at the delivery limit) lands in
//! `pinflow.intake`, and every `pinflow run` moves it, sealed, to the dead-letter queue
//! where operators see it. So no secret rests in clear in a dead-letter queue, whoever
//! made the dead letter. Headers a publisher may have set in pinflow's name are
//! dropped; the destination comes from where the broker routed the message.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

use super::deps::Deps;
use super::supervise::Sessions;
use crate::broker::Names;
use crate::broker::dead_letter::{ERROR, FAILED_AT, ROUTING_KEY, capped, publish_sealed};
use crate::broker::publish::set_str;

/// Runs the intake until `cancel` fires, reconnecting whenever the broker goes away.
pub async fn run(deps: Arc<Deps>, cancel: CancellationToken) {
    let part = deps.health.register("intake");
    let mut sessions = Sessions::new(&deps, "intake", &part, &cancel);
    while let Some(connection) = sessions.connect().await {
        let reconnected = sessions.reconnected();
        let result = session(&deps, &connection, &cancel, &part, reconnected).await;
        if !sessions.ended(&connection, result).await {
            break;
        }
    }
}

/// Why an intake session ended.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("cannot move a message to its dead-letter queue")]
    Publish(#[from] crate::broker::publish::PublishError),
    #[error("the broker cancelled the consumer")]
    ConsumerEnded,
}

async fn session(
    deps: &Deps,
    connection: &Connection,
    cancel: &CancellationToken,
    part: &super::health::Part,
    reconnected: bool,
) -> Result<(), IntakeError> {
    let channel = connection.create_channel().await?;
    deps.declare_topology(&channel, reconnected).await?;
    channel.basic_qos(16, BasicQosOptions::default()).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let options = BasicConsumeOptions::default();
    let queue = deps.names.intake();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "pinflow-intake".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    part.set(true);
    loop {
        let delivery = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            next = consumer.next() => next.ok_or(IntakeError::ConsumerEnded)??,
        };
        move_sealed(deps, &channel, &delivery).await?;
        channel
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await?;
    }
    channel.close(200, "pinflow stopping".into()).await?;
    Ok(())
}

/// Where an intake message goes and why.
fn destination(deps: &Deps, delivery: &Delivery) -> (String, String) {
    let names = &deps.names;
    let exchange = delivery.exchange.as_str();
    let routing_key = delivery.routing_key.as_str();
    if exchange == names.dlx() {
        let known = deps
            .workers
            .iter()
            .any(|w| w.has_queue() && names.work_queue(w.name) == routing_key);
        if known {
            let why = first_death_reason(delivery).unwrap_or_else(|| "unknown".into());
            return (
                Names::dlq(routing_key),
                format!("dead-lettered by the broker: {why}"),
            );
        }
    }
    // The alternate exchange keeps the exchange a command was published to.
    let reason = if exchange == names.commands() || exchange == names.unrouted() {
        "no worker binds this type"
    } else {
        "reached the intake from an unexpected place"
    };
    (names.unrouted_dlq(), reason.to_owned())
}

fn first_death_reason(delivery: &Delivery) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get("x-first-death-reason")? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

async fn move_sealed(
    deps: &Deps,
    channel: &Channel,
    delivery: &Delivery,
) -> Result<(), IntakeError> {
    let (dlq, reason) = destination(deps, delivery);
    let mut headers = FieldTable::default();
    if let Some(given) = delivery.properties.headers() {
        for (key, value) in given.inner() {
            if !key.as_str().starts_with("x-pinflow-") {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    set_str(&mut headers, ERROR, &capped(&reason));
    set_str(
        &mut headers,
        FAILED_AT,
        &Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    if dlq == deps.names.unrouted_dlq() {
        set_str(&mut headers, ROUTING_KEY, delivery.routing_key.as_str());
    }
    tracing::warn!(dlq, reason = %reason, "moved a message from the intake to its dead-letter queue, sealed");
    let properties = delivery.properties.clone().with_headers(headers);
    let limit = deps.runtime.confirm_timeout;
    publish_sealed(channel, &deps.keys, &dlq, &delivery.data, properties, limit).await?;
    Ok(())
}
