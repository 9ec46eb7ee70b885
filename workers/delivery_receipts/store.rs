//! The receipts log, `notification_receipts`: every receipt a gateway sent, known
//! notification or not, whether it moved the delivery state and whether it caused
//! `pin.delivery_failed`. The delivery state itself is in the notification ledger.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// One receipt as the log keeps it.
pub struct Logged<'a> {
    /// The receipt's CloudEvent id.
    pub message_id: &'a str,
    /// The notification it names.
    pub notification_id: String,
    /// `delivered`, `failed` or `returned`.
    pub status: &'a str,
    /// The gateway's own words.
    pub detail: Option<&'a str>,
    /// When the gateway saw the outcome (the receipt's `time`, else its arrival).
    pub observed_at: DateTime<Utc>,
    /// When pinflow handled it.
    pub received_at: DateTime<Utc>,
    /// The gateway (the CloudEvent `source`).
    pub source: &'a str,
    /// Whether the ledger has the notification.
    pub known: bool,
    /// Whether it became the notification's state.
    pub applied: bool,
    /// Whether it caused `pin.delivery_failed`.
    pub announced: bool,
}

/// Appends receipts to the log in one statement, in their order.
pub async fn log_all(conn: &mut PgConnection, receipts: &[Logged<'_>]) -> Result<(), sqlx::Error> {
    if receipts.is_empty() {
        return Ok(());
    }
    fn text<'r>(receipts: &'r [Logged<'_>], f: fn(&'r Logged<'_>) -> &'r str) -> Vec<&'r str> {
        receipts.iter().map(f).collect()
    }
    let flag = |f: fn(&Logged<'_>) -> bool| receipts.iter().map(f).collect::<Vec<_>>();
    let detail: Vec<Option<&str>> = receipts.iter().map(|r| r.detail).collect();
    let observed_at: Vec<DateTime<Utc>> = receipts.iter().map(|r| r.observed_at).collect();
    let received_at: Vec<DateTime<Utc>> = receipts.iter().map(|r| r.received_at).collect();
    sqlx::query(
        "insert into notification_receipts (message_id, notification_id, status, detail,
             observed_at, received_at, source, known, applied, announced)
         select m, n, s, d, o, r, w, k, a, x
         from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
             $6::timestamptz[], $7::text[], $8::bool[], $9::bool[], $10::bool[])
         with ordinality as l(m, n, s, d, o, r, w, k, a, x, i)
         order by i",
    )
    .bind(text(receipts, |r| r.message_id))
    .bind(text(receipts, |r| &r.notification_id))
    .bind(text(receipts, |r| r.status))
    .bind(detail)
    .bind(observed_at)
    .bind(received_at)
    .bind(text(receipts, |r| r.source))
    .bind(flag(|r| r.known))
    .bind(flag(|r| r.applied))
    .bind(flag(|r| r.announced))
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a failure of this notification has been announced already.
pub async fn announced_before(
    conn: &mut PgConnection,
    notification_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from notification_receipts
                        where notification_id = $1 and announced)",
    )
    .bind(notification_id)
    .fetch_one(conn)
    .await
}
