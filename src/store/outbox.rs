//! The outbox: messages written in the handler's transaction and published by the
//! relay after the commit. A secret is sealed with the outbox key (the message id is
//! the associated data, so a sealed value cannot be moved to another row) and leaves
//! the database with the row once the relay has its confirm.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Row as _};

use crate::contract::{Destination, Outgoing};
use crate::seal::OutboxKey;

/// A row waiting to be published.
pub struct Pending {
    /// Row id; publication follows it.
    pub id: i64,
    /// Which exchange.
    pub destination: Destination,
    /// Routing key on it.
    pub routing_key: String,
    /// The CloudEvent id, also the AMQP message id.
    pub message_id: String,
    /// The CloudEvent type.
    pub message_type: String,
    /// For replies.
    pub correlation_id: Option<String>,
    /// Trace context to continue.
    pub traceparent: Option<String>,
    /// The CloudEvent without its secret.
    pub body: Value,
    /// Where the secret goes, and its sealed value and key id.
    pub sealed: Option<Sealed>,
    /// Publications tried so far.
    pub attempts: i32,
}

/// A secret as stored.
pub struct Sealed {
    /// The `data` member it belongs in.
    pub field: String,
    /// Nonce and ciphertext.
    pub ciphertext: Vec<u8>,
    /// Which key sealed it.
    pub key_id: String,
}

/// Writes one outgoing message.
pub async fn insert(
    conn: &mut PgConnection,
    message: &Outgoing,
    traceparent: &str,
    key: &OutboxKey,
) -> Result<(), sqlx::Error> {
    let (field, sealed, key_id) = match &message.secret {
        Some(secret) => (
            Some(secret.field),
            Some(key.seal(secret.value.as_bytes(), message.message_id.as_bytes())),
            Some(key.key_id()),
        ),
        None => (None, None, None),
    };
    sqlx::query(
        "insert into outbox (destination, routing_key, message_id, message_type,
             correlation_id, traceparent, body, secret_field, sealed_secret, key_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(message.destination.as_str())
    .bind(&message.routing_key)
    .bind(&message.message_id)
    .bind(message.message_type())
    .bind(&message.correlation_id)
    .bind(traceparent)
    .bind(&message.body)
    .bind(field)
    .bind(sealed)
    .bind(key_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The oldest due rows, locked for this transaction.
pub async fn due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query(
        "select id, destination, routing_key, message_id, message_type, correlation_id,
                traceparent, body, secret_field, sealed_secret, key_id, attempts
         from outbox where next_attempt_at <= $1 order by id limit $2 for update skip locked",
    )
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let destination: String = row.try_get("destination")?;
            let field: Option<String> = row.try_get("secret_field")?;
            let ciphertext: Option<Vec<u8>> = row.try_get("sealed_secret")?;
            let key_id: Option<String> = row.try_get("key_id")?;
            Ok(Pending {
                id: row.try_get("id")?,
                destination: Destination::parse(&destination).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown destination {destination}").into())
                })?,
                routing_key: row.try_get("routing_key")?,
                message_id: row.try_get("message_id")?,
                message_type: row.try_get("message_type")?,
                correlation_id: row.try_get("correlation_id")?,
                traceparent: row.try_get("traceparent")?,
                body: row.try_get("body")?,
                sealed: match (field, ciphertext) {
                    (Some(field), Some(ciphertext)) => Some(Sealed {
                        field,
                        ciphertext,
                        key_id: key_id.unwrap_or_default(),
                    }),
                    _ => None,
                },
                attempts: row.try_get("attempts")?,
            })
        })
        .collect()
}

/// Removes rows whose publication the broker confirmed, and with them any secret.
pub async fn delete(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("delete from outbox where id = any($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts a row back for a later round after a failed publication.
pub async fn defer(
    conn: &mut PgConnection,
    id: i64,
    until: DateTime<Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox set attempts = attempts + 1, next_attempt_at = $2, last_error = $3
         where id = $1",
    )
    .bind(id)
    .bind(until)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows not yet published (for shutdown reports and tests).
pub async fn pending_count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(conn)
        .await
}
