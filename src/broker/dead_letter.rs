//! Sending a delivery elsewhere: to its queue's dead-letter queue (permanent failure,
//! or out of attempts) or to a delay queue that hands it back later (transient
//! failure). pinflow keeps its own headers for attempts and the original routing key;
//! it never reads `x-death`, whose count RabbitMQ 3.13 stopped updating.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;

use super::Names;
use super::publish::{PublishError, header_str, header_u32, publish_routed, set_str};
use crate::config::Runtime;
use crate::contract::SECRET_FIELDS;
use crate::seal::OutboxKey;

/// Why it failed (never a secret).
pub const ERROR: &str = "x-pinflow-error";
/// When it went to the dead-letter queue.
pub const FAILED_AT: &str = "x-pinflow-failed-at";
/// Failed attempts so far.
pub const ATTEMPTS: &str = "x-pinflow-attempts";
/// The routing key it was first published with (its command type).
pub const ROUTING_KEY: &str = "x-pinflow-routing-key";
/// The work queue it failed on, where a replay puts it back.
pub const QUEUE: &str = "x-pinflow-queue";

/// Prefix of a secret value sealed in a dead-letter copy.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// Failed attempts recorded on a delivery so far.
pub fn attempts(delivery: &Delivery) -> u32 {
    header_u32(delivery.properties.headers().as_ref(), ATTEMPTS).unwrap_or(0)
}

/// The routing key the message was first published with.
pub fn original_routing_key(delivery: &Delivery) -> String {
    header_str(delivery.properties.headers().as_ref(), ROUTING_KEY)
        .unwrap_or_else(|| delivery.routing_key.as_str().to_owned())
}

fn headers_for(delivery: &Delivery, queue: &str, attempts: u32) -> FieldTable {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    set_str(&mut headers, ROUTING_KEY, &original_routing_key(delivery));
    set_str(&mut headers, QUEUE, queue);
    headers.insert(
        ShortString::from(ATTEMPTS),
        AMQPValue::LongLongInt(i64::from(attempts)),
    );
    headers
}

/// Sends deliveries that failed elsewhere, on one channel with confirms.
pub struct DeadLetterer<'a> {
    /// A channel in confirm mode.
    pub channel: &'a lapin::Channel,
    /// This installation's names.
    pub names: &'a Names,
    /// Seals secret fields in dead-letter copies.
    pub key: &'a OutboxKey,
    /// The confirm timeout.
    pub runtime: &'a Runtime,
}

impl DeadLetterer<'_> {
    /// Publishes a copy of `delivery` to `<queue>.dlq` with the reason, and waits for
    /// the confirm. Secret fields in the body are sealed with the outbox key.
    pub async fn to_dead_letter_queue(
        &self,
        queue: &str,
        delivery: &Delivery,
        reason: &str,
        attempts: u32,
    ) -> Result<(), PublishError> {
        let mut headers = headers_for(delivery, queue, attempts);
        set_str(&mut headers, ERROR, reason);
        set_str(
            &mut headers,
            FAILED_AT,
            &Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        let properties = delivery.properties.clone().with_headers(headers);
        let body = seal_secrets(&delivery.data, self.key);
        publish_routed(
            self.channel,
            &self.names.dlx(),
            queue,
            &body,
            properties,
            self.runtime.confirm_timeout,
        )
        .await
    }

    /// Publishes `delivery` to the delay queue of `ttl`, to come back to `queue` after
    /// `delay`, with the attempt counter raised.
    pub async fn to_retry_queue(
        &self,
        queue: &str,
        delivery: &Delivery,
        attempts: u32,
        delay: Duration,
        ttl: Duration,
    ) -> Result<(), PublishError> {
        let headers = headers_for(delivery, queue, attempts);
        let properties = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_expiration(ShortString::from(delay.as_millis().to_string()));
        publish_routed(
            self.channel,
            "",
            &Names::retry_queue(queue, ttl),
            &delivery.data,
            properties,
            self.runtime.confirm_timeout,
        )
        .await
    }
}

/// A copy of a body whose secret `data` fields are sealed, so a dead letter never
/// holds a PIN or token in clear; bodies that are not JSON objects are kept as they
/// are.
pub fn seal_secrets<'a>(body: &'a [u8], key: &OutboxKey) -> Cow<'a, [u8]> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Cow::Borrowed(body);
    };
    let Some(data) = value.get_mut("data").and_then(Value::as_object_mut) else {
        return Cow::Borrowed(body);
    };
    let mut sealed_any = false;
    for field in SECRET_FIELDS {
        if let Some(Value::String(secret)) = data.get_mut(*field) {
            let sealed = key.seal(secret.as_bytes(), b"dead-letter");
            let encoded = base64::engine::general_purpose::STANDARD.encode(sealed);
            *secret = format!("{SEALED_PREFIX}{}:{encoded}", key.key_id());
            sealed_any = true;
        }
    }
    match (sealed_any, serde_json::to_vec(&value)) {
        (true, Ok(bytes)) => Cow::Owned(bytes),
        _ => Cow::Borrowed(body),
    }
}
