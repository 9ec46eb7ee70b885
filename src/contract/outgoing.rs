//! What pinflow publishes: events, notifications and RPC replies, built by handlers
//! and written to the outbox in the handler's transaction.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Where an outgoing message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `pinflow.events`, routing key = the event type.
    Event,
    /// `pinflow.notifications`, routing key = `notify.<channel>`.
    Notification,
    /// The default exchange, routing key = the request's `reply_to`.
    Reply,
}

impl Destination {
    /// The name stored in the outbox.
    pub fn as_str(&self) -> &'static str {
        match self {
            Destination::Event => "event",
            Destination::Notification => "notification",
            Destination::Reply => "reply",
        }
    }

    /// The inverse of `as_str`.
    pub fn parse(text: &str) -> Option<Destination> {
        match text {
            "event" => Some(Destination::Event),
            "notification" => Some(Destination::Notification),
            "reply" => Some(Destination::Reply),
            _ => None,
        }
    }
}

/// A secret that travels inside `data.<field>` of one outgoing message and nowhere
/// else: the outbox keeps it sealed until the relay has sent it.
pub struct SecretField {
    /// The `data` member that carries it (`secret` for notifications, `pin` for the
    /// first-access reply).
    pub field: &'static str,
    /// The clear value; zeroized when dropped.
    pub value: Zeroizing<String>,
}

/// One message to publish once the handler's transaction commits.
pub struct Outgoing {
    /// Exchange kind.
    pub destination: Destination,
    /// Routing key on that exchange.
    pub routing_key: String,
    /// The CloudEvent `id` (and AMQP `message_id`): stable, so a consumer that sees it
    /// twice can drop the second.
    pub message_id: String,
    /// The RPC correlation id, for replies.
    pub correlation_id: Option<String>,
    /// The whole CloudEvent, without the secret.
    pub body: Value,
    /// The secret to put back into `data` at publish time, if any.
    pub secret: Option<SecretField>,
}

fn cloudevent(id: &str, message_type: &str, now: DateTime<Utc>, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": super::SOURCE,
        "type": message_type,
        "time": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// The typed `data` of a message pinflow publishes, paired with its CloudEvent type so
/// the two cannot be mismatched. The unit tests of `events` and `replies` check each
/// one against its schema.
pub trait OutgoingData: Serialize {
    /// The CloudEvent `type`, also the name of its schema.
    const TYPE: &'static str;
}

/// Typed data of an event: `TYPE` is also the routing key on `pinflow.events`.
pub trait EventData: OutgoingData {}

/// Why typed data could not be turned into JSON: a type whose `Serialize` refuses, so
/// never worth a retry.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the data of {message_type}")]
pub struct EncodeError {
    /// The CloudEvent type being built.
    pub message_type: &'static str,
    /// What serde said.
    #[source]
    pub source: serde_json::Error,
}

/// The JSON `data` member of typed outgoing data.
pub fn encode<D: OutgoingData>(data: &D) -> Result<Value, EncodeError> {
    serde_json::to_value(data).map_err(|source| EncodeError {
        message_type: D::TYPE,
        source,
    })
}

impl Outgoing {
    /// An event on `pinflow.events` from its typed data, which names the event type.
    /// Events never carry a secret.
    pub fn typed_event<E: EventData>(
        data: &E,
        now: DateTime<Utc>,
    ) -> Result<Outgoing, EncodeError> {
        Ok(Outgoing::event(E::TYPE, encode(data)?, now))
    }

    /// An event on `pinflow.events`. Events never carry a secret.
    pub fn event(event_type: &str, data: Value, now: DateTime<Utc>) -> Outgoing {
        let id = Uuid::new_v4().to_string();
        Outgoing {
            destination: Destination::Event,
            routing_key: event_type.to_owned(),
            body: cloudevent(&id, event_type, now, data),
            message_id: id,
            correlation_id: None,
            secret: None,
        }
    }

    /// A notification for a delivery gateway on `pinflow.notifications`, with a stable
    /// `notification_id` and, where it delivers PIN characters, the `secret`.
    pub fn notification(
        routing_key: &str,
        template: &str,
        to: Value,
        params: Value,
        secret: Option<Zeroizing<String>>,
        now: DateTime<Utc>,
    ) -> Outgoing {
        let notification_id = Uuid::new_v4().to_string();
        let data = json!({
            "notification_id": notification_id,
            "template": template,
            "to": to,
            "params": params,
        });
        Outgoing {
            destination: Destination::Notification,
            routing_key: routing_key.to_owned(),
            body: cloudevent(&notification_id, routing_key, now, data),
            message_id: notification_id,
            correlation_id: None,
            secret: secret.map(|value| SecretField {
                field: "secret",
                value,
            }),
        }
    }

    /// The reply to an RPC command, to the default exchange with the request's
    /// `reply_to` and `correlation_id`.
    pub fn reply(
        request_type: &str,
        reply_to: &str,
        correlation_id: Option<&str>,
        data: Value,
        secret: Option<SecretField>,
        now: DateTime<Utc>,
    ) -> Outgoing {
        let id = Uuid::new_v4().to_string();
        let reply_type = format!("{request_type}.reply");
        Outgoing {
            destination: Destination::Reply,
            routing_key: reply_to.to_owned(),
            body: cloudevent(&id, &reply_type, now, data),
            message_id: id,
            correlation_id: correlation_id.map(str::to_owned),
            secret,
        }
    }

    /// The CloudEvent type of this message.
    pub fn message_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

/// Puts a secret back into a stored body at publish time.
pub fn with_secret(mut body: Value, field: &str, value: &str) -> Value {
    if let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) {
        data.insert(field.to_owned(), Value::String(value.to_owned()));
    }
    body
}
