//! What pinflow publishes: events, notifications and RPC replies, built by handlers
//! and written to the outbox in the handler's transaction.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
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

/// A delivery gateway's channel: the routing key is `notify.<channel>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyChannel {
    Sms,
    Email,
    Pec,
    Post,
    Office,
}

impl NotifyChannel {
    /// Every channel, each with a durable queue for its gateway.
    pub const ALL: [NotifyChannel; 5] = [
        NotifyChannel::Sms,
        NotifyChannel::Email,
        NotifyChannel::Pec,
        NotifyChannel::Post,
        NotifyChannel::Office,
    ];

    /// The name (`sms`, `email`, ...), as stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyChannel::Sms => "sms",
            NotifyChannel::Email => "email",
            NotifyChannel::Pec => "pec",
            NotifyChannel::Post => "post",
            NotifyChannel::Office => "office",
        }
    }

    /// The routing key on `pinflow.notifications`.
    pub fn routing_key(self) -> String {
        format!("notify.{}", self.as_str())
    }
}

/// Which secret a notification carries (the ledger keeps this, never the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// Characters 1-8 of an initial PIN.
    FirstHalf,
    /// Characters 9-16 of an initial PIN.
    SecondHalf,
    /// A whole initial PIN (office issue).
    WholePin,
    /// A single-use link token.
    Token,
}

impl Carries {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Carries::FirstHalf => "first_half",
            Carries::SecondHalf => "second_half",
            Carries::WholePin => "whole_pin",
            Carries::Token => "token",
        }
    }
}

/// What a handler says about a notification; the runtime builds the CloudEvent and
/// records it in the notification ledger.
pub struct Notice {
    /// The gateway.
    pub channel: NotifyChannel,
    /// The message the gateway renders (`pin_first_half`, ...).
    pub template: &'static str,
    /// The recipient, in the channel's shape.
    pub to: Value,
    /// What the template needs; never a secret.
    pub params: Value,
    /// Whose notification it is.
    pub tax_code: String,
    /// The credential it concerns, if any.
    pub credential_id: Option<Uuid>,
    /// The secret it delivers, and which one it is.
    pub secret: Option<(Carries, Zeroizing<String>)>,
}

/// What the notification ledger keeps of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The gateway.
    pub channel: NotifyChannel,
    /// The template.
    pub template: &'static str,
    /// Whose.
    pub tax_code: String,
    /// Which credential.
    pub credential_id: Option<Uuid>,
    /// Which secret it carried, if any.
    pub carries: Option<Carries>,
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
    /// For a notification, what the ledger keeps of it.
    pub ledger: Option<LedgerEntry>,
}

/// The namespace of the ids pinflow derives (UUIDv5) from what a message announces.
const DERIVED_IDS: Uuid = Uuid::from_u128(0x6b1f_0c55_2f7e_4d1a_9c4e_70f1_6e66_6c77);

/// An id derived from what a message announces (for example the credential, the
/// deadline's kind and the deadline), so a retried timed job announces the same thing
/// under the same id and consumers drop the second copy.
pub fn derived_id(parts: &[&str]) -> String {
    Uuid::new_v5(&DERIVED_IDS, parts.join("\u{1f}").as_bytes()).to_string()
}

fn cloudevent(id: &str, message_type: &str, now: DateTime<Utc>, data: Value) -> Value {
    object([
        ("specversion", "1.0".into()),
        ("id", id.into()),
        ("source", super::SOURCE.into()),
        ("type", message_type.into()),
        (
            "time",
            now.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
        ),
        ("datacontenttype", "application/json".into()),
        ("data", data),
    ])
}

/// A JSON object of these members, moved in (`json!` would copy each `Value` member by
/// serializing it again).
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
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
            ledger: None,
        }
    }

    /// A notification for a delivery gateway on `pinflow.notifications`, with a stable
    /// `notification_id` and, where it delivers a secret, the `secret`.
    pub fn notification(notice: Notice, now: DateTime<Utc>) -> Outgoing {
        let notification_id = Uuid::new_v4().to_string();
        let routing_key = notice.channel.routing_key();
        let data = object([
            ("notification_id", notification_id.as_str().into()),
            ("template", notice.template.into()),
            ("to", notice.to),
            ("params", notice.params),
        ]);
        let carries = notice.secret.as_ref().map(|(carries, _)| *carries);
        Outgoing {
            destination: Destination::Notification,
            body: cloudevent(&notification_id, &routing_key, now, data),
            routing_key,
            message_id: notification_id,
            correlation_id: None,
            secret: notice.secret.map(|(_, value)| SecretField {
                field: "secret",
                value,
            }),
            ledger: Some(LedgerEntry {
                channel: notice.channel,
                template: notice.template,
                tax_code: notice.tax_code,
                credential_id: notice.credential_id,
                carries,
            }),
        }
    }

    /// The same message under another id (see [`derived_id`]); a notification's
    /// `notification_id` follows.
    pub fn with_id(mut self, id: String) -> Outgoing {
        self.body["id"] = Value::String(id.clone());
        if self.destination == Destination::Notification {
            self.body["data"]["notification_id"] = Value::String(id.clone());
        }
        self.message_id = id;
        self
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
            ledger: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notice() -> Notice {
        Notice {
            channel: NotifyChannel::Sms,
            template: "pin_first_half",
            to: json!("+393331234567"),
            params: json!({}),
            tax_code: "RSSMRA85T10A562S".into(),
            credential_id: None,
            secret: Some((Carries::FirstHalf, Zeroizing::new("ABCDEFGH".into()))),
        }
    }

    #[test]
    fn a_notification_keeps_its_secret_out_of_the_body_and_the_ledger() {
        let out = Outgoing::notification(notice(), Utc::now());
        assert_eq!(out.routing_key, "notify.sms");
        assert!(!out.body.to_string().contains("ABCDEFGH"));
        let ledger = out.ledger.as_ref().expect("a ledger entry");
        assert_eq!(ledger.carries, Some(Carries::FirstHalf));
        assert!(!format!("{ledger:?}").contains("ABCDEFGH"));
        assert_eq!(out.body["data"]["notification_id"], out.body["id"]);
    }

    #[test]
    fn derived_ids_are_stable_and_follow_into_the_body() {
        let a = derived_id(&["credential", "validity", "2027-05-01T00:00:00Z"]);
        assert_eq!(
            a,
            derived_id(&["credential", "validity", "2027-05-01T00:00:00Z"])
        );
        assert_ne!(
            a,
            derived_id(&["credential", "reminder", "2027-05-01T00:00:00Z"])
        );
        let out = Outgoing::notification(notice(), Utc::now()).with_id(a.clone());
        assert_eq!(out.message_id, a);
        assert_eq!(out.body["id"], a.as_str());
        assert_eq!(out.body["data"]["notification_id"], a.as_str());
    }
}

// Reading the ledger back (delivery receipts): channel and carried secret from their
// stored names, and their wire names in events.

impl NotifyChannel {
    /// The inverse of `as_str`.
    pub fn parse(text: &str) -> Option<NotifyChannel> {
        NotifyChannel::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl Serialize for NotifyChannel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Carries {
    /// The inverse of `as_str`.
    pub fn parse(text: &str) -> Option<Carries> {
        [
            Carries::FirstHalf,
            Carries::SecondHalf,
            Carries::WholePin,
            Carries::Token,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }
}

#[cfg(test)]
mod ledger_names {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_names_read_back() {
        for channel in NotifyChannel::ALL {
            assert_eq!(NotifyChannel::parse(channel.as_str()), Some(channel));
            assert_eq!(json!(channel), json!(channel.as_str()));
        }
        for carries in [
            Carries::FirstHalf,
            Carries::SecondHalf,
            Carries::WholePin,
            Carries::Token,
        ] {
            assert_eq!(Carries::parse(carries.as_str()), Some(carries));
        }
        assert_eq!(NotifyChannel::parse("fax"), None);
        assert_eq!(Carries::parse("pin"), None);
    }
}
