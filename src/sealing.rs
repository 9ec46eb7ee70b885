//! Secrets inside message bodies that must rest somewhere (dead letters): every secret
//! field at any depth and of any JSON type is sealed in place, and a body that is not
//! a JSON object is sealed whole. Each seal's authenticated data names what it belongs
//! to (the message id, the field's path, the queue the letter sits in), so a
//! ciphertext moved to another letter, field or queue does not open. Pure: no I/O.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::contract::SECRET_FIELDS;
use crate::seal::{KeyRing, OutboxKey};

/// Prefix of a sealed value: `sealed:v2:<key id>:<s|j|b>:<base64>` (text, JSON value,
/// whole body).
pub const SEALED_PREFIX: &str = "sealed:";
const V2: &str = "sealed:v2:";
/// The member that holds a whole sealed body.
pub const SEALED_BODY: &str = "pinflow_sealed_body";

/// Where a sealed letter sits: what its seals are bound to.
pub struct Place<'a> {
    /// The message id (AMQP `message_id`), or empty.
    pub message_id: &'a str,
    /// The queue the letter rests in.
    pub queue: &'a str,
}

/// Why a body does not unseal. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    #[error("sealed with key {0}, which this process does not hold")]
    UnknownKey(String),
    #[error("a sealed value does not open: altered, or moved from another letter or queue")]
    Open,
    #[error("malformed sealed value")]
    Malformed,
}

fn aad(place: &Place<'_>, path: &str) -> Vec<u8> {
    format!(
        "dead-letter\u{1f}{}\u{1f}{path}\u{1f}{}",
        place.message_id, place.queue
    )
    .into_bytes()
}

fn seal_value(key: &OutboxKey, kind: char, clear: &[u8], aad: &[u8]) -> String {
    let sealed = base64::engine::general_purpose::STANDARD.encode(key.seal(clear, aad));
    format!("{V2}{}:{kind}:{sealed}", key.key_id())
}

/// A copy of `body` safe to rest in a queue: secret fields sealed wherever they are,
/// or the whole body sealed when it is not a JSON object. Values already sealed are
/// left as they are.
pub fn seal_body(body: &[u8], ring: &KeyRing, place: &Place<'_>) -> Vec<u8> {
    let key = ring.current();
    // A body over the size limit was refused unparsed; it is not parsed here either.
    let parsed = if body.len() > crate::contract::envelope::MAX_BODY_BYTES {
        Err(())
    } else {
        serde_json::from_slice::<Value>(body).map_err(drop)
    };
    match parsed {
        Ok(mut value @ Value::Object(_)) => {
            let mut sealed = false;
            seal_fields(&mut value, key, place, "", &mut sealed);
            if !sealed {
                return body.to_vec();
            }
            serde_json::to_vec(&value).unwrap_or_default()
        }
        _ => {
            let sealed = seal_value(key, 'b', body, &aad(place, SEALED_BODY));
            serde_json::to_vec(&json!({ SEALED_BODY: sealed })).unwrap_or_default()
        }
    }
}

fn seal_fields(
    value: &mut Value,
    key: &OutboxKey,
    place: &Place<'_>,
    path: &str,
    sealed: &mut bool,
) {
    match value {
        Value::Object(map) => {
            for (name, item) in map.iter_mut() {
                let here = format!("{path}/{name}");
                let already = item.as_str().is_some_and(|s| s.starts_with(SEALED_PREFIX));
                if SECRET_FIELDS.contains(&name.as_str()) && !already {
                    let (kind, clear) = match &*item {
                        Value::String(text) => ('s', text.as_bytes().to_vec()),
                        other => ('j', serde_json::to_vec(other).unwrap_or_default()),
                    };
                    *item = Value::String(seal_value(key, kind, &clear, &aad(place, &here)));
                    *sealed = true;
                } else {
                    seal_fields(item, key, place, &here, sealed);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                seal_fields(item, key, place, &format!("{path}/{i}"), sealed);
            }
        }
        _ => {}
    }
}

/// Opens one sealed value: its key id, kind and clear bytes.
fn open_value(
    text: &str,
    ring: &KeyRing,
    aad: &[u8],
) -> Result<(String, char, Vec<u8>), UnsealError> {
    let rest = text.strip_prefix(V2).ok_or(UnsealError::Malformed)?;
    let mut parts = rest.splitn(3, ':');
    let (key_id, kind, sealed) = (
        parts.next().ok_or(UnsealError::Malformed)?,
        parts
            .next()
            .and_then(|k| k.chars().next())
            .ok_or(UnsealError::Malformed)?,
        parts.next().ok_or(UnsealError::Malformed)?,
    );
    let key = ring
        .find(key_id)
        .ok_or_else(|| UnsealError::UnknownKey(key_id.to_owned()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|_| UnsealError::Malformed)?;
    let clear = key.open(&bytes, aad).map_err(|_| UnsealError::Open)?;
    Ok((key_id.to_owned(), kind, clear.to_vec()))
}

/// The body as it was before `seal_body`, in memory only.
pub fn unseal_body(body: &[u8], ring: &KeyRing, place: &Place<'_>) -> Result<Vec<u8>, UnsealError> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Ok(body.to_vec());
    };
    if let Some(whole) = value.get(SEALED_BODY).and_then(Value::as_str) {
        return open_value(whole, ring, &aad(place, SEALED_BODY)).map(|(_, _, clear)| clear);
    }
    let mut opened = false;
    unseal_fields(&mut value, ring, place, "", &mut opened)?;
    if !opened {
        return Ok(body.to_vec());
    }
    serde_json::to_vec(&value).map_err(|_| UnsealError::Malformed)
}

fn unseal_fields(
    value: &mut Value,
    ring: &KeyRing,
    place: &Place<'_>,
    path: &str,
    opened: &mut bool,
) -> Result<(), UnsealError> {
    match value {
        Value::Object(map) => {
            for (name, item) in map.iter_mut() {
                let here = format!("{path}/{name}");
                if let Some(text) = item.as_str().filter(|t| t.starts_with(V2)) {
                    let (_, kind, clear) = open_value(text, ring, &aad(place, &here))?;
                    *item = match kind {
                        'j' => {
                            serde_json::from_slice(&clear).map_err(|_| UnsealError::Malformed)?
                        }
                        _ => Value::String(
                            String::from_utf8(clear).map_err(|_| UnsealError::Malformed)?,
                        ),
                    };
                    *opened = true;
                } else {
                    unseal_fields(item, ring, place, &here, opened)?;
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                unseal_fields(item, ring, place, &format!("{path}/{i}"), opened)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The ids of the keys that sealed something in `body`.
pub fn sealed_key_ids(body: &[u8]) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(text) => {
                if let Some(id) = text.strip_prefix(V2).and_then(|r| r.split(':').next()) {
                    out.push(id.to_owned());
                }
            }
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        walk(&value, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::single(OutboxKey::generate())
    }

    const PLACE: Place<'static> = Place {
        message_id: "m-1",
        queue: "pinflow.sample.dlq",
    };

    #[test]
    fn secrets_of_any_type_at_any_depth_are_sealed_and_come_back() {
        let ring = ring();
        let body = br#"{"id":"m-1","data":{"pin":12345678,"tax_code":"X","nested":[{"token":"tok-SECRET"}],"initial_pin":{"odd":"ABCD-SECRET"}}}"#;
        let sealed = seal_body(body, &ring, &PLACE);
        let text = String::from_utf8(sealed.clone()).unwrap();
        for secret in ["12345678", "tok-SECRET", "ABCD-SECRET"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("\"tax_code\":\"X\""));
        let back: Value =
            serde_json::from_slice(&unseal_body(&sealed, &ring, &PLACE).unwrap()).unwrap();
        assert_eq!(back, serde_json::from_slice::<Value>(body).unwrap());
    }

    #[test]
    fn a_body_that_is_not_json_is_sealed_whole() {
        let ring = ring();
        let body = br#"{"data":{"initial_pin":"ABCDEFGHJKLMNPQR""#;
        let sealed = seal_body(body, &ring, &PLACE);
        assert!(!String::from_utf8_lossy(&sealed).contains("ABCDEFGH"));
        assert_eq!(unseal_body(&sealed, &ring, &PLACE).unwrap(), body.to_vec());
    }

    #[test]
    fn a_ciphertext_moved_to_another_letter_or_queue_does_not_open() {
        let ring = ring();
        let sealed = seal_body(br#"{"data":{"pin":"ABCDEFGH"}}"#, &ring, &PLACE);
        let other = Place {
            message_id: "m-2",
            queue: PLACE.queue,
        };
        assert_eq!(unseal_body(&sealed, &ring, &other), Err(UnsealError::Open));
        let moved = Place {
            message_id: "m-1",
            queue: "pinflow.other.dlq",
        };
        assert_eq!(unseal_body(&sealed, &ring, &moved), Err(UnsealError::Open));
        let renamed = String::from_utf8(sealed)
            .unwrap()
            .replace("\"pin\"", "\"token\"");
        assert_eq!(
            unseal_body(renamed.as_bytes(), &ring, &PLACE),
            Err(UnsealError::Open)
        );
    }

    #[test]
    fn the_key_ids_of_a_body_are_listed_and_an_unknown_key_is_named() {
        let ring = ring();
        let sealed = seal_body(br#"{"data":{"pin":"ABCDEFGH"}}"#, &ring, &PLACE);
        assert_eq!(sealed_key_ids(&sealed), vec![ring.current().key_id()]);
        let stranger = KeyRing::single(OutboxKey::generate());
        let error = unseal_body(&sealed, &stranger, &PLACE).unwrap_err();
        assert_eq!(error, UnsealError::UnknownKey(ring.current().key_id()));
    }
}
