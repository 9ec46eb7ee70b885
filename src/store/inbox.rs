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

/// Records a batch's message ids for a queue in one statement; for each id, in order,
/// whether this is its first handling there (an id twice in the batch is first once).
pub async fn record_all(
    conn: &mut PgConnection,
    message_ids: &[&str],
    queue: &str,
    message_types: &[&str],
) -> Result<Vec<bool>, sqlx::Error> {
    let inserted: Vec<String> = sqlx::query_scalar(
        "insert into inbox (message_id, queue, message_type)
         select i, $2, t from unnest($1::text[], $3::text[]) with ordinality as m(i, t, n)
         order by n
         on conflict (queue, message_id) do nothing
         returning message_id",
    )
    .bind(message_ids)
    .bind(queue)
    .bind(message_types)
    .fetch_all(conn)
    .await?;
    let mut fresh: std::collections::HashSet<String> = inserted.into_iter().collect();
    Ok(message_ids.iter().map(|id| fresh.remove(*id)).collect())
}
