//! The inbox: the ids of messages already handled, per consuming queue, written in the
//! handler's transaction, so a redelivered or replayed message has its effect once in
//! each worker that consumes it.

use sqlx::PgConnection;

/// Records a message id for a queue; `false` means that queue's worker handled it
/// before and must skip it.
pub async fn record(
    conn: &mut PgConnection,
    message_id: &str,
    queue: &str,
    message_type: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "insert into inbox (message_id, queue, message_type) values ($1, $2, $3)
         on conflict (queue, message_id) do nothing",
    )
    .bind(message_id)
    .bind(queue)
    .bind(message_type)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
