//! The operator audit: every replay, edit and purge, with who, when, which message ids
//! and the outcome. Never holds a secret (bodies are redacted before they get here).

use serde_json::Value;
use sqlx::PgPool;

/// Who is at the keyboard: `--operator`, else the OS user.
pub fn operator(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Appends one audit row.
pub async fn record(
    pool: &PgPool,
    operator: &str,
    action: &str,
    queue: Option<&str>,
    ids: &[String],
    outcome: &str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into operator_audit (operator, action, queue, message_ids, outcome, detail)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(operator)
    .bind(action)
    .bind(queue)
    .bind(ids)
    .bind(outcome)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}
