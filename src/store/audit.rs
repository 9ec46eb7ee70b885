//! The audit log: one row per state change, written in the same transaction as the
//! change. Never holds a secret.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// One audited action.
pub struct Entry<'a> {
    /// When it happened (the injected clock).
    pub at: DateTime<Utc>,
    /// Who caused it: the message source, an operator id, or `pinflow`.
    pub actor: &'a str,
    /// What happened, e.g. `pin.issued`.
    pub action: &'a str,
    /// Whose credential.
    pub tax_code: Option<&'a str>,
    /// Which credential, where there is one.
    pub credential_id: Option<Uuid>,
    /// The message that caused it.
    pub message_id: Option<&'a str>,
    /// Anything else worth keeping, never a secret.
    pub detail: Value,
}

/// Appends an entry.
pub async fn record(conn: &mut PgConnection, entry: Entry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (at, actor, action, tax_code, credential_id, message_id, detail)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(entry.at)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.tax_code)
    .bind(entry.credential_id)
    .bind(entry.message_id)
    .bind(entry.detail)
    .execute(conn)
    .await?;
    Ok(())
}
