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
    pub notification_id: &'a str,
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

/// Appends a receipt to the log.
pub async fn log(conn: &mut PgConnection, receipt: &Logged<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into notification_receipts (message_id, notification_id, status, detail,
             observed_at, received_at, source, known, applied, announced)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(receipt.message_id)
    .bind(receipt.notification_id)
    .bind(receipt.status)
    .bind(receipt.detail)
    .bind(receipt.observed_at)
    .bind(receipt.received_at)
    .bind(receipt.source)
    .bind(receipt.known)
    .bind(receipt.applied)
    .bind(receipt.announced)
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
