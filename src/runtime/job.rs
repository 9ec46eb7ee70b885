//! Timed jobs: work that no message starts (expiry sweeps, deadlines). A pass claims
//! due rows in batches (`FOR UPDATE SKIP LOCKED`, so replicas share the work and none
//! is handled twice), writes each batch's state change and its outbox rows in one
//! transaction, then wakes the relay. What a job announces carries an id derived from
//! what it announces (`contract::outgoing::derived_id`), so a retried pass never
//! announces twice.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::deps::Deps;
use crate::contract::Outgoing;
use crate::contract::trace::TraceContext;
use crate::error::{HandlerError, chain};
use crate::store::outbox;
use crate::telemetry::spans;

/// What one batch of a pass did.
pub struct Batch {
    /// Rows claimed and handled; fewer than the limit ends the pass.
    pub handled: usize,
    /// What to publish once the batch commits.
    pub outgoing: Vec<Outgoing>,
}

/// A timed job.
pub trait Job: Send + Sync + 'static {
    /// Its name, as in its worker's description.
    fn name(&self) -> &'static str;

    /// How long between passes.
    fn interval(&self) -> Duration;

    /// Claims at most `limit` rows due at `now` with `FOR UPDATE SKIP LOCKED`, changes
    /// their state through `conn` and returns what to announce.
    fn run_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Batch, HandlerError>> + Send + 'a;
}

/// One pass: batches until fewer rows than a full batch were due. Returns the rows
/// handled.
pub async fn pass<J: Job>(job: &J, deps: &Deps) -> Result<usize, HandlerError> {
    let (span, trace) = spans::job_pass(job.name());
    batches(job, deps, &trace).instrument(span).await
}

/// A pass's batches; what they announce carries the pass's trace context.
async fn batches<J: Job>(
    job: &J,
    deps: &Deps,
    trace: &TraceContext,
) -> Result<usize, HandlerError> {
    let limit = deps.runtime.sweep_batch;
    let mut total = 0;
    loop {
        let mut tx = deps.pool.begin().await.map_err(HandlerError::Unavailable)?;
        let batch = job.run_batch(&mut tx, deps.clock.now(), limit).await?;
        outbox::insert_all(&mut tx, &batch.outgoing, trace, &deps.keys, None).await?;
        tx.commit().await?;
        if !batch.outgoing.is_empty() {
            deps.relay_wake.notify_one();
        }
        total += batch.handled;
        if batch.handled < limit as usize {
            return Ok(total);
        }
    }
}

/// Runs passes every interval (or when triggered) until `cancel` fires. A failed pass
/// is logged and tried again at the next interval.
pub async fn run<J: Job>(job: Arc<J>, deps: Arc<Deps>, cancel: CancellationToken) {
    let mut trigger = deps.jobs_now.subscribe();
    tracing::info!(
        job = job.name(),
        interval_ms = job.interval().as_millis() as u64,
        "timed job running"
    );
    loop {
        match pass(&*job, &deps).await {
            Ok(0) => {}
            Ok(handled) => tracing::info!(job = job.name(), handled, "job pass done"),
            Err(e) => {
                tracing::warn!(job = job.name(), error = %chain(&e), "job pass failed; trying again at the next interval")
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(job.interval()) => {}
            changed = trigger.changed() => if changed.is_err() { break },
        }
    }
    tracing::info!(job = job.name(), "timed job stopped");
}
