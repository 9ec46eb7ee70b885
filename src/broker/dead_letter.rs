//! Sending a delivery elsewhere: to its queue's dead-letter queue (permanent failure,
//! or out of attempts) or to a delay queue that hands it back later (transient
//! failure). pinflow keeps its own headers for attempts and the original routing key,
//! and trusts them only on a delivery that came back from its own delay queue, never
//! on one a publisher sent; it never reads `x-death`, whose count RabbitMQ 3.13 stopped
//! updating. Every dead letter is sealed (`sealing`) before it rests in its queue, and
//! its `x-pinflow-error` is capped.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use super::Names;
use super::publish::{PublishError, header_str, header_u32, publish_routed, set_str};
use crate::config::Runtime;
use crate::seal::KeyRing;
use crate::sealing::{self, Place};

/// Why it failed (never a secret).
pub const ERROR: &str = "x-pinflow-error";
/// When it went to the dead-letter queue.
pub const FAILED_AT: &str = "x-pinflow-failed-at";
/// Failed attempts so far.
pub const ATTEMPTS: &str = "x-pinflow-attempts";
/// The routing key it was first published with (its command type).
pub const ROUTING_KEY: &str = "x-pinflow-routing-key";
/// The work queue it failed on (informative: replay takes its target from the
/// dead-letter queue's name).
pub const QUEUE: &str = "x-pinflow-queue";

/// The longest `x-pinflow-error`, in bytes.
pub const MAX_ERROR: usize = 300;

/// Whether a delivery came back from pinflow's own delay queue (through the default
/// exchange), so that pinflow's headers on it are pinflow's and not a publisher's.
fn from_delay_queue(delivery: &Delivery) -> bool {
    delivery.exchange.as_str().is_empty()
}

/// Failed attempts recorded on a delivery so far (zero on a publisher's message).
pub fn attempts(delivery: &Delivery) -> u32 {
    if !from_delay_queue(delivery) {
        return 0;
    }
    header_u32(delivery.properties.headers().as_ref(), ATTEMPTS).unwrap_or(0)
}

/// The routing key the message was first published with.
pub fn original_routing_key(delivery: &Delivery) -> String {
    from_delay_queue(delivery)
        .then(|| header_str(delivery.properties.headers().as_ref(), ROUTING_KEY))
        .flatten()
        .unwrap_or_else(|| delivery.routing_key.as_str().to_owned())
}

/// A reason cut to `MAX_ERROR` bytes, at a character boundary.
pub fn capped(reason: &str) -> String {
    if reason.len() <= MAX_ERROR {
        return reason.to_owned();
    }
    let mut end = MAX_ERROR - 3;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
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

/// Seals a body for the dead-letter queue `dlq` and publishes it there (through the
/// default exchange) with `properties`, waiting for the confirm.
pub async fn publish_sealed(
    channel: &lapin::Channel,
    keys: &KeyRing,
    dlq: &str,
    body: &[u8],
    properties: BasicProperties,
    limit: Duration,
) -> Result<(), PublishError> {
    let message_id = properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let place = Place {
        message_id: &message_id,
        queue: dlq,
    };
    let body = sealing::seal_body(body, keys, &place);
    publish_routed(channel, "", dlq, &body, properties, limit).await
}

/// Sends deliveries that failed elsewhere, on one channel with confirms.
pub struct DeadLetterer<'a> {
    /// A channel in confirm mode.
    pub channel: &'a lapin::Channel,
    /// This installation's names.
    pub names: &'a Names,
    /// Seals secrets in dead-letter copies.
    pub keys: &'a KeyRing,
    /// The confirm timeout.
    pub runtime: &'a Runtime,
}

impl DeadLetterer<'_> {
    /// Publishes a sealed copy of `delivery` to `<queue>.dlq` with the reason, and
    /// waits for the confirm.
    pub async fn to_dead_letter_queue(
        &self,
        queue: &str,
        delivery: &Delivery,
        reason: &str,
        attempts: u32,
    ) -> Result<(), PublishError> {
        let mut headers = headers_for(delivery, queue, attempts);
        set_str(&mut headers, ERROR, &capped(reason));
        set_str(
            &mut headers,
            FAILED_AT,
            &Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        let dlq = Names::dlq(queue);
        let properties = delivery.properties.clone().with_headers(headers);
        let limit = self.runtime.confirm_timeout;
        publish_sealed(
            self.channel,
            self.keys,
            &dlq,
            &delivery.data,
            properties,
            limit,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_capped_at_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_ERROR && cut.ends_with("..."));
        assert_eq!(capped("short reason"), "short reason");
    }
}
