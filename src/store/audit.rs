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
    record_all(conn, &[Record::from(entry)]).await
}

/// An audited action held until its batch writes it (see `record_all`).
pub struct Record {
    /// When it happened (the injected clock).
    pub at: DateTime<Utc>,
    /// Who caused it.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// Whose credential.
    pub tax_code: Option<String>,
    /// Which credential, where there is one.
    pub credential_id: Option<Uuid>,
    /// The message that caused it.
    pub message_id: Option<String>,
    /// Anything else worth keeping, never a secret.
    pub detail: Value,
}

impl From<Entry<'_>> for Record {
    fn from(entry: Entry<'_>) -> Record {
        Record {
            at: entry.at,
            actor: entry.actor.to_owned(),
            action: entry.action.to_owned(),
            tax_code: entry.tax_code.map(str::to_owned),
            credential_id: entry.credential_id,
            message_id: entry.message_id.map(str::to_owned),
            detail: entry.detail,
        }
    }
}

/// Appends entries in one statement, in their order.
pub async fn record_all(conn: &mut PgConnection, records: &[Record]) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let at: Vec<DateTime<Utc>> = records.iter().map(|r| r.at).collect();
    let actor: Vec<&str> = records.iter().map(|r| r.actor.as_str()).collect();
    let action: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    let tax_code: Vec<Option<&str>> = records.iter().map(|r| r.tax_code.as_deref()).collect();
    let credential_id: Vec<Option<Uuid>> = records.iter().map(|r| r.credential_id).collect();
    let message_id: Vec<Option<&str>> = records.iter().map(|r| r.message_id.as_deref()).collect();
    let detail: Vec<&Value> = records.iter().map(|r| &r.detail).collect();
    sqlx::query(
        "insert into audit_log (at, actor, action, tax_code, credential_id, message_id, detail)
         select a, w, x, t, c, m, d
         from unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::uuid[],
             $6::text[], $7::jsonb[])
         with ordinality as r(a, w, x, t, c, m, d, n)
         order by n",
    )
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(tax_code)
    .bind(credential_id)
    .bind(message_id)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}
