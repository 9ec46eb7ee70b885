//! The HTTP listener of `pinflow run` at `PINFLOW_METRICS_ADDR`: `/metrics` in the
//! Prometheus text format, `/healthz` (the process answers) and `/readyz` (every
//! consumer, the intake and the relay have a broker session, the database answers
//! and has every migration of this build). Served by axum; the exposition format is
//! the exporter's.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::health::Health;
use crate::store::MIGRATOR;

/// What the endpoints read.
pub struct Endpoints {
    /// The broker sessions of this process.
    pub health: Arc<Health>,
    /// The database, once start-up has reached it.
    pub pool: OnceLock<PgPool>,
    /// The metrics recorder, when this process installed it.
    pub metrics: Option<PrometheusHandle>,
}

/// How long `/readyz` waits for the database.
const DATABASE_PATIENCE: Duration = Duration::from_secs(2);

/// Serves the endpoints on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>, cancel: CancellationToken) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "alive\n" }))
        .route("/readyz", get(ready))
        .with_state(endpoints);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}

async fn metrics(State(endpoints): State<Arc<Endpoints>>) -> impl IntoResponse {
    let Some(handle) = &endpoints.metrics else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "another metrics recorder is installed in this process\n".to_owned(),
        );
    };
    handle.run_upkeep();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

async fn ready(State(endpoints): State<Arc<Endpoints>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    let (down, parts) = endpoints.health.down();
    if parts == 0 {
        problems.push("nothing consumes yet".to_owned());
    }
    problems.extend(
        down.into_iter()
            .map(|part| format!("{part}: no broker session")),
    );
    match endpoints.pool.get() {
        None => problems.push("database: not reached yet".to_owned()),
        Some(pool) => match tokio::time::timeout(DATABASE_PATIENCE, migrated(pool)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => problems.push("database: migrations not all applied".to_owned()),
            Ok(Err(e)) => problems.push(format!("database: {}", crate::error::chain(&e))),
            Err(_) => problems.push("database: no answer within 2 s".to_owned()),
        },
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", problems.join("\n")),
        )
    }
}

/// Whether the database has every migration this build carries.
async fn migrated(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(pool)
            .await?;
    Ok(applied.unwrap_or(0) >= latest)
}
