//! The revocation worker's SQL. A revoked credential keeps no PIN hash, and its
//! pending reset tokens end with it. The credential row is locked (by the handler)
//! before its tokens are touched, as the reset worker does, so the two never
//! deadlock.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Marks a credential revoked, drops its hashes and ends its pending reset tokens.
pub async fn revoke(
    conn: &mut PgConnection,
    credential_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update credentials set status = 'revoked', ended_at = coalesce(ended_at, $2),
             pin_hash = null, initial_pin_hash = null, locked_at = null
         where id = $1",
    )
    .bind(credential_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "update reset_tokens set state = 'revoked', ended_at = $2
         where credential_id = $1 and state = 'pending'",
    )
    .bind(credential_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
