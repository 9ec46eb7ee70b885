//! Publishing with publisher confirms, `mandatory`, and a time limit on every wait.

use std::collections::HashSet;
use std::future::Future as _;
use std::task::Poll;
use std::time::Duration;

use lapin::message::BasicReturnMessage;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};

/// Why a publication was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no confirm within {0:?}")]
    Timeout(Duration),
    #[error("no queue is bound for {0}")]
    Unroutable(String),
}

/// What the broker said about a publication it confirmed.
#[derive(Debug)]
pub enum Confirmed {
    /// Routed to at least one queue.
    Routed,
    /// No queue matched: the broker returned it (`mandatory`).
    Returned(Box<BasicReturnMessage>),
}

/// Starts a publication; await the result with [`confirmed`]. With `mandatory`, a
/// message no queue takes comes back as [`Confirmed::Returned`].
pub async fn start(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    mandatory: bool,
) -> Result<PublisherConfirm, PublishError> {
    let options = BasicPublishOptions {
        mandatory,
        ..BasicPublishOptions::default()
    };
    Ok(channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            body,
            properties,
        )
        .await?)
}

/// A message ready to publish.
pub struct Outbound {
    /// Where to.
    pub exchange: String,
    /// With which routing key.
    pub routing_key: String,
    /// The bytes.
    pub body: Vec<u8>,
    /// Its properties.
    pub properties: BasicProperties,
    /// Whether a message no queue takes comes back.
    pub mandatory: bool,
}

/// Starts publications in their order with one wait for the connection's writer
/// instead of one each: lapin queues a publication on the channel (and numbers it for
/// its confirm) when its future is first polled, so each is polled once, in order,
/// before any is awaited.
pub async fn start_all(
    channel: &Channel,
    messages: Vec<Outbound>,
) -> Vec<Result<PublisherConfirm, PublishError>> {
    let (heads, properties): (Vec<_>, Vec<_>) = messages
        .into_iter()
        .map(|m| {
            (
                (m.exchange, m.routing_key, m.body, m.mandatory),
                m.properties,
            )
        })
        .unzip();
    let mut started = Vec::with_capacity(heads.len());
    for ((exchange, routing_key, body, mandatory), properties) in heads.iter().zip(properties) {
        let mut publication = Box::pin(start(
            channel,
            exchange,
            routing_key,
            body,
            properties,
            *mandatory,
        ));
        let first = std::future::poll_fn(|cx| Poll::Ready(publication.as_mut().poll(cx))).await;
        started.push(match first {
            Poll::Ready(result) => Err(result),
            Poll::Pending => Ok(publication),
        });
    }
    let mut confirms = Vec::with_capacity(started.len());
    for publication in started {
        confirms.push(match publication {
            Ok(pending) => pending.await,
            Err(done) => done,
        });
    }
    confirms
}

/// What the broker said of a batch of publications (see `confirmed_all`).
pub struct BatchConfirms {
    /// Per publication, in order: acknowledged (routed, or returned: see `returned`),
    /// or why not.
    pub each: Vec<Result<(), PublishError>>,
    /// The message ids the broker returned (`mandatory`, no queue took them). A
    /// return names its message, and lapin may attach it to another publication's
    /// confirm, so returns are paired by message id.
    pub returned: HashSet<String>,
}

/// Awaits a batch's confirms in order, all within `limit` of the call: once it has
/// passed, what has not come is a timeout.
pub async fn confirmed_all(confirms: Vec<PublisherConfirm>, limit: Duration) -> BatchConfirms {
    let deadline = tokio::time::Instant::now() + limit;
    let mut each = Vec::with_capacity(confirms.len());
    let mut returned = HashSet::new();
    for confirm in confirms {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        each.push(match confirmed(confirm, left).await {
            Ok(Confirmed::Routed) => Ok(()),
            Ok(Confirmed::Returned(message)) => {
                if let Some(id) = message.properties.message_id() {
                    returned.insert(id.as_str().to_owned());
                }
                Ok(())
            }
            Err(PublishError::Timeout(_)) => Err(PublishError::Timeout(limit)),
            Err(e) => Err(e),
        });
    }
    BatchConfirms { each, returned }
}

/// Waits for a publication's confirm, at most `limit`.
pub async fn confirmed(
    confirm: PublisherConfirm,
    limit: Duration,
) -> Result<Confirmed, PublishError> {
    match tokio::time::timeout(limit, confirm).await {
        Err(_) => Err(PublishError::Timeout(limit)),
        Ok(Err(e)) => Err(PublishError::Broker(e)),
        Ok(Ok(Confirmation::Ack(None))) => Ok(Confirmed::Routed),
        Ok(Ok(Confirmation::Ack(Some(returned)))) => Ok(Confirmed::Returned(Box::new(returned))),
        Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Nacked),
        Ok(Ok(Confirmation::NotRequested)) => Ok(Confirmed::Routed),
    }
}

/// Publishes and waits for the confirm.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    limit: Duration,
) -> Result<Confirmed, PublishError> {
    let confirm = start(channel, exchange, routing_key, body, properties, true).await?;
    confirmed(confirm, limit).await
}

/// Publishes, waits for the confirm, and treats a return as an error: for messages
/// whose queue pinflow itself declared (dead letters, retries).
pub async fn publish_routed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    limit: Duration,
) -> Result<(), PublishError> {
    match publish_confirmed(channel, exchange, routing_key, body, properties, limit).await? {
        Confirmed::Routed => Ok(()),
        Confirmed::Returned(_) => Err(PublishError::Unroutable(format!(
            "{exchange}/{routing_key}"
        ))),
    }
}

/// Reads a header as text.
pub fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    let value = headers?.inner().get(name)?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Reads a header as a non-negative integer, whatever integer type the publisher used.
pub fn header_u32(headers: Option<&FieldTable>, name: &str) -> Option<u32> {
    let value = headers?.inner().get(name)?;
    let number: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(number).ok()
}

/// Sets a text header.
pub fn set_str(headers: &mut FieldTable, name: &str, value: &str) {
    headers.insert(
        ShortString::from(name.to_owned()),
        AMQPValue::LongString(value.into()),
    );
}
