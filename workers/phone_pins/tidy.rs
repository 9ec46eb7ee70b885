//! The tidy-up job: clears the hash of every phone PIN past its validity, in batches
//! (`FOR UPDATE SKIP LOCKED`, so replicas share the rows). A phone PIN stops working at
//! the instant its validity ends whether or not this has run; the job only makes sure
//! no hash outlives its use. It announces nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::store;
use crate::error::HandlerError;
use crate::runtime::{Batch, Job};

/// Clears expired phone-PIN hashes.
pub struct Tidy {
    /// How long between passes (`PINFLOW_SWEEP_INTERVAL`).
    interval: Duration,
}

impl Tidy {
    /// The job, run every `interval`.
    pub fn new(interval: Duration) -> Tidy {
        Tidy { interval }
    }
}

impl Job for Tidy {
    fn name(&self) -> &'static str {
        "tidy"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Batch, HandlerError> {
        let tidied = store::tidy_due(conn, now, limit).await?;
        Ok(Batch {
            handled: usize::try_from(tidied).unwrap_or(usize::MAX),
            outgoing: Vec::new(),
        })
    }
}
