//! The audit log: one row per state change, written in the same transaction as the
//! change. Never holds a secret.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Query;

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
    Columns::of(records)
        .bind(sqlx::query(INSERT.as_str()))
        .execute(conn)
        .await?;
    Ok(())
}

/// `insert` on its own.
static INSERT: LazyLock<String> = LazyLock::new(|| insert(1));

/// The statement that appends the entries bound as `Columns` from parameter `$first`
/// on, in their order.
pub(super) fn insert(first: usize) -> String {
    let [a, w, x, t, c, m, d] = std::array::from_fn(|i| first + i);
    format!(
        "insert into audit_log (at, actor, action, tax_code, credential_id, message_id, detail)
         select a, w, x, t, c, m, d
         from unnest(${a}::timestamptz[], ${w}::text[], ${x}::text[], ${t}::text[],
             ${c}::uuid[], ${m}::text[], ${d}::jsonb[])
         with ordinality as r(a, w, x, t, c, m, d, n)
         order by n"
    )
}

/// Entries as the parameters of `insert`, one array per column.
pub(super) struct Columns<'a> {
    at: Vec<DateTime<Utc>>,
    actor: Vec<&'a str>,
    action: Vec<&'a str>,
    tax_code: Vec<Option<&'a str>>,
    credential_id: Vec<Option<Uuid>>,
    message_id: Vec<Option<&'a str>>,
    detail: Vec<&'a Value>,
}

impl<'a> Columns<'a> {
    pub(super) fn of(records: &'a [Record]) -> Columns<'a> {
        Columns {
            at: records.iter().map(|r| r.at).collect(),
            actor: records.iter().map(|r| r.actor.as_str()).collect(),
            action: records.iter().map(|r| r.action.as_str()).collect(),
            tax_code: records.iter().map(|r| r.tax_code.as_deref()).collect(),
            credential_id: records.iter().map(|r| r.credential_id).collect(),
            message_id: records.iter().map(|r| r.message_id.as_deref()).collect(),
            detail: records.iter().map(|r| &r.detail).collect(),
        }
    }

    /// Binds the columns as `insert`'s next seven parameters.
    pub(super) fn bind<'q>(self, query: Query<'q>) -> Query<'q>
    where
        'a: 'q,
    {
        query
            .bind(self.at)
            .bind(self.actor)
            .bind(self.action)
            .bind(self.tax_code)
            .bind(self.credential_id)
            .bind(self.message_id)
            .bind(self.detail)
    }
}
