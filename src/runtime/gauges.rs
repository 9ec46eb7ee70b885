//! The gauges read from the database: outbox backlog and its oldest row's age,
//! credentials by status and kind, how many expire within a week, and how far the
//! expiry sweeps lag behind. Refreshed every `PINFLOW_METRICS_INTERVAL` by one task per
//! process (a few indexed queries and one grouped count), never per scrape, and only
//! when the metrics endpoint is on.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::deps::Deps;
use crate::error::chain;
use crate::telemetry::metrics::{self, DatabaseGauges};

/// Refreshes the gauges until `cancel` fires.
pub async fn run(deps: Arc<Deps>, cancel: CancellationToken) {
    loop {
        let now = deps.clock.now();
        match read(&deps.pool, now).await {
            Ok(figures) => metrics::database(&figures, now.timestamp() as f64),
            Err(e) => tracing::warn!(error = %chain(&e), "cannot refresh the database gauges"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(deps.runtime.metrics_interval) => {}
        }
    }
}

/// Reads every gauge at `now`.
pub async fn read(pool: &PgPool, now: DateTime<Utc>) -> Result<DatabaseGauges, sqlx::Error> {
    let (outbox_backlog, outbox_oldest_seconds): (i64, f64) = sqlx::query_as(
        "select count(*), coalesce(extract(epoch from $1 - min(created_at))::float8, 0)
         from outbox",
    )
    .bind(now)
    .fetch_one(pool)
    .await?;
    let credentials: Vec<(String, String, i64)> =
        sqlx::query_as("select status, kind, count(*) from credentials group by status, kind")
            .fetch_all(pool)
            .await?;
    // The same conditions as the sweeps' partial indexes, so both reads use them.
    let (expiring_within_7d, sweep_lag_seconds): (i64, f64) = sqlx::query_as(
        "select
           (select count(*) from credentials
             where status in ('active', 'locked')
               and valid_until > $1 and valid_until <= $1 + interval '7 days'),
           greatest(0,
             coalesce(extract(epoch from $1 - (select min(valid_until) from credentials
               where status in ('active', 'locked') and valid_until <= $1))::float8, 0),
             coalesce(extract(epoch from $1 - (select min(initial_pin_expires_at) from credentials
               where status in ('issued', 'locked') and activated_at is null
                 and initial_pin_expires_at <= $1))::float8, 0))",
    )
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(DatabaseGauges {
        outbox_backlog,
        outbox_oldest_seconds: outbox_oldest_seconds.max(0.0),
        credentials,
        expiring_within_7d,
        sweep_lag_seconds,
    })
}
