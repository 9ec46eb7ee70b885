//! Dead letters as operators see them: read from every `.dlq` queue of a namespace
//! without losing or reordering anything (messages are taken unacknowledged and go back
//! to their places when the channel closes, unless an operation acknowledges them),
//! grouped by cause, shown with secrets redacted, replayed, edited or purged.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod edit;
pub mod replay;
pub mod session;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lapin::Channel;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicGetOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::broker::Names;
use crate::broker::dead_letter::{ATTEMPTS, ERROR, FAILED_AT, ROUTING_KEY};
use crate::broker::publish::{header_str, header_u32};
use crate::contract::SECRET_FIELDS;
use crate::manifest::Description;
use crate::sealing::SEALED_PREFIX;

/// How many times a message has been replayed.
pub const REPLAYS: &str = "x-pinflow-replays";

/// One dead letter, held unacknowledged on the reading channel.
pub struct DeadLetter {
    /// The dead-letter queue it sits in.
    pub dlq: String,
    /// The delivery tag on the reading channel.
    pub tag: u64,
    /// The message id (the CloudEvent id), or `sha-…` of the body when it has none.
    pub id: String,
    /// The message type, as far as it can be told.
    pub message_type: String,
    /// The routing key it was first published with.
    pub routing_key: String,
    /// The work queue it failed on, where a replay puts it back; `None` for commands
    /// no worker binds.
    pub work_queue: Option<String>,
    /// When it failed.
    pub failed_at: Option<DateTime<Utc>>,
    /// Failed attempts.
    pub attempts: u32,
    /// Times replayed already.
    pub replays: u32,
    /// Why it failed.
    pub reason: String,
    /// The message as it sits in the queue.
    pub message: BasicGetMessage,
}

impl DeadLetter {
    fn from_message(dlq: &str, names: &Names, message: BasicGetMessage) -> DeadLetter {
        let properties = &message.delivery.properties;
        let headers = properties.headers().as_ref();
        let body: Value = serde_json::from_slice(&message.delivery.data).unwrap_or(Value::Null);
        let id = properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .or_else(|| body["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let digest = Sha256::digest(&message.delivery.data);
                format!("sha-{}", hex::encode(&digest[..6]))
            });
        let routing_key = header_str(headers, ROUTING_KEY)
            .unwrap_or_else(|| message.delivery.routing_key.as_str().to_owned());
        let message_type = body["type"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| properties.kind().as_ref().map(|k| k.as_str().to_owned()))
            .unwrap_or_else(|| routing_key.clone());
        let unrouted = dlq == names.unrouted_dlq();
        // The target of a replay comes from where the letter sits, never from a
        // header a publisher could have set.
        let work_queue = if unrouted {
            None
        } else {
            Some(dlq.trim_end_matches(".dlq").to_owned())
        };
        let failed_at = header_str(headers, FAILED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| x_death(headers).and_then(|d| d.1))
            .or_else(|| {
                properties
                    .timestamp()
                    .and_then(|t| DateTime::from_timestamp(t as i64, 0))
            });
        let reason =
            header_str(headers, ERROR).unwrap_or_else(|| match (unrouted, x_death(headers)) {
                (true, _) => "no worker binds this type".to_owned(),
                (false, Some((reason, _))) => format!("dead-lettered by the broker: {reason}"),
                (false, None) => "unknown".to_owned(),
            });
        DeadLetter {
            dlq: dlq.to_owned(),
            tag: message.delivery.delivery_tag,
            id,
            message_type,
            routing_key,
            work_queue,
            failed_at,
            attempts: header_u32(headers, ATTEMPTS).unwrap_or(0),
            replays: header_u32(headers, REPLAYS).unwrap_or(0),
            reason,
            message,
        }
    }

    /// The id of this dead letter's group: same work queue, type and reason.
    pub fn group(&self) -> String {
        let key = format!("{}|{}|{}", self.dlq, self.message_type, self.reason);
        let digest = Sha256::digest(key.as_bytes());
        format!("g-{}", hex::encode(&digest[..4]))
    }

    /// The body as JSON with every secret field redacted, or a note when it is not
    /// JSON.
    pub fn redacted_body(&self) -> Value {
        match serde_json::from_slice::<Value>(&self.message.delivery.data) {
            Ok(mut value) => {
                redact(&mut value);
                value
            }
            Err(_) => json!({ "not_json": format!("{} bytes", self.message.delivery.data.len()) }),
        }
    }

    /// Every header, as JSON (x-death included).
    pub fn headers_json(&self) -> Value {
        self.message
            .delivery
            .properties
            .headers()
            .as_ref()
            .map(table_json)
            .unwrap_or(Value::Null)
    }
}

/// Replaces every secret field, at any depth, by `<redacted>`.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if SECRET_FIELDS.contains(&key.as_str()) {
                    *item = Value::String("<redacted>".into());
                } else {
                    redact(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text) if text.starts_with(SEALED_PREFIX) => *text = "<redacted>".into(),
        _ => {}
    }
}

fn amqp_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_json).collect()),
        AMQPValue::Timestamp(t) => {
            DateTime::from_timestamp(*t as i64, 0).map_or(json!(t), |t| json!(t.to_rfc3339()))
        }
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        other => Value::String(format!("{other:?}")),
    }
}

fn table_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
            .collect(),
    )
}

/// The reason and time of the first `x-death` entry (broker-side dead-lettering).
fn x_death(headers: Option<&FieldTable>) -> Option<(String, Option<DateTime<Utc>>)> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    let entry = table_json(first);
    let reason = entry["reason"].as_str().unwrap_or("unknown").to_owned();
    let time = entry["time"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Some((reason, time))
}

/// Every dead-letter queue of a namespace, by name: one per worker that has a queue
/// (a worker made only of timed jobs has none), and the unrouted-command queue.
pub fn dead_letter_queues(names: &Names, workers: &[Description]) -> Vec<String> {
    let mut queues: Vec<String> = workers
        .iter()
        .filter(|w| w.has_queue())
        .map(|w| Names::dlq(&names.work_queue(w.name)))
        .collect();
    queues.push(names.unrouted_dlq());
    queues
}

/// Takes every message of the given queues, unacknowledged, in queue order. They go
/// back to their places when `channel` closes unless acknowledged first.
pub async fn read_all(
    channel: &Channel,
    names: &Names,
    queues: &[String],
) -> Result<Vec<DeadLetter>, lapin::Error> {
    channel.basic_qos(0, BasicQosOptions::default()).await?;
    let mut letters = Vec::new();
    for queue in queues {
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        {
            letters.push(DeadLetter::from_message(queue, names, message));
        }
    }
    Ok(letters)
}

/// Counts of one group of dead letters.
pub struct Group {
    /// Its id, for `--group`.
    pub id: String,
    /// The dead-letter queue.
    pub dlq: String,
    /// The message type.
    pub message_type: String,
    /// The shared reason.
    pub reason: String,
    /// How many.
    pub count: usize,
    /// Earliest failure.
    pub first: Option<DateTime<Utc>>,
    /// Latest failure.
    pub last: Option<DateTime<Utc>>,
}

/// Dead letters grouped by queue, type and reason, largest group first.
pub fn groups(letters: &[DeadLetter]) -> Vec<Group> {
    let mut by_id: BTreeMap<String, Group> = BTreeMap::new();
    for letter in letters {
        let group = by_id.entry(letter.group()).or_insert_with(|| Group {
            id: letter.group(),
            dlq: letter.dlq.clone(),
            message_type: letter.message_type.clone(),
            reason: letter.reason.clone(),
            count: 0,
            first: letter.failed_at,
            last: letter.failed_at,
        });
        group.count += 1;
        group.first = group.first.min(letter.failed_at).or(letter.failed_at);
        group.last = group.last.max(letter.failed_at);
    }
    let mut groups: Vec<Group> = by_id.into_values().collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_reaches_every_depth_and_sealed_values() {
        let mut value = json!({ "data": { "pin": "ABCDEFGH", "nested": [{ "token": "t" }], "note": "sealed:v1:abcd:xyz", "tax_code": "X" } });
        redact(&mut value);
        assert_eq!(value["data"]["pin"], "<redacted>");
        assert_eq!(value["data"]["nested"][0]["token"], "<redacted>");
        assert_eq!(value["data"]["note"], "<redacted>");
        assert_eq!(value["data"]["tax_code"], "X");
    }
}
