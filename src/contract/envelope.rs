//! The CloudEvent envelope of an incoming message, checked against `cloudevent.json`
//! and its type's schema before anything else looks at it.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::schemas::Schemas;

/// Bodies larger than this are refused before they are parsed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A checked CloudEvent: valid JSON, a CloudEvent, of a known type, whose data its
/// schema accepts.
#[derive(Clone)]
pub struct Envelope {
    /// The idempotency key: the same id has its effect once.
    pub id: String,
    /// The upstream system that published it.
    pub source: String,
    /// The message type, e.g. `pin.request`.
    pub message_type: String,
    /// When the upstream system saw the request (the legal filing time where one
    /// matters).
    pub time: Option<DateTime<Utc>>,
    /// The type-specific payload, already accepted by its schema.
    pub data: Value,
}

/// Why a body is not a message this worker can handle. Every variant is permanent: the
/// message goes to the dead-letter queue at once. Reasons never quote field values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body of {0} bytes exceeds the limit of {MAX_BODY_BYTES}")]
    TooLarge(usize),
    #[error("content type {0} is not {ct}", ct = super::CONTENT_TYPE)]
    WrongContentType(String),
    #[error("malformed json: {0}")]
    MalformedJson(String),
    #[error("not a cloudevent: {0}")]
    NotCloudEvent(String),
    /// The type is kept for the caller but not quoted in the reason, which never
    /// echoes the body.
    #[error("unknown type: no schema or worker for this message's type")]
    UnknownType(String),
    #[error("schema violation in {message_type} at {detail}")]
    SchemaViolation {
        message_type: String,
        detail: String,
    },
    #[error("invalid {field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("rpc command without reply_to")]
    MissingReplyTo,
    #[error("rpc command without correlation_id")]
    MissingCorrelationId,
    #[error("rpc reply_to names a pinflow queue or exchange")]
    ForbiddenReplyTo,
}

impl Envelope {
    /// Parses and checks a body. `accepts` says which types this worker handles;
    /// anything else is an unknown type here.
    pub fn parse(
        body: &[u8],
        content_type: Option<&str>,
        schemas: &Schemas,
        accepts: impl Fn(&str) -> bool,
    ) -> Result<Envelope, ParseError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(ParseError::TooLarge(body.len()));
        }
        if let Some(ct) = content_type {
            let base = ct.split(';').next().unwrap_or("").trim();
            if !base.is_empty() && base != super::CONTENT_TYPE && base != "application/json" {
                return Err(ParseError::WrongContentType(truncate(base, 64)));
            }
        }
        let mut value: Value = serde_json::from_slice(body).map_err(|e| {
            // serde_json's message names a line and column, never the content.
            ParseError::MalformedJson(e.to_string())
        })?;
        schemas
            .check("cloudevent", &value)
            .map_err(ParseError::NotCloudEvent)?;
        let text = |value: &Value, name: &str| value[name].as_str().unwrap_or_default().to_owned();
        let message_type = text(&value, "type");
        if !accepts(&message_type) || schemas.get(&message_type).is_none() {
            return Err(ParseError::UnknownType(truncate(&message_type, 64)));
        }
        let data = value
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null);
        schemas
            .check(&message_type, &data)
            .map_err(|detail| ParseError::SchemaViolation {
                message_type: message_type.clone(),
                detail,
            })?;
        let time = match value.get("time").and_then(Value::as_str) {
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| ParseError::NotCloudEvent("time is not RFC 3339".into()))?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        Ok(Envelope {
            id: text(&value, "id"),
            source: text(&value, "source"),
            message_type,
            time,
            data,
        })
    }

    /// Deserializes the data into a worker's typed command. The schema has already
    /// accepted it, so a failure here means the schema and the type disagree.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, ParseError> {
        T::deserialize(&self.data).map_err(|e| ParseError::SchemaViolation {
            message_type: self.message_type.clone(),
            detail: strip_values(&e.to_string()),
        })
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// serde's messages may quote an offending value (`invalid value: string "..."`);
/// keep only the part before the quote.
fn strip_values(message: &str) -> String {
    message
        .split(['"', '`'])
        .next()
        .unwrap_or(message)
        .trim()
        .to_owned()
}
