//! Ending dated delegations on time. A delegation stops being live at its `ends_at`
//! whatever else happens (every check compares with it); this job marks the due ones
//! expired in batches (`FOR UPDATE SKIP LOCKED`) and announces `delegation.expired`
//! under an id derived from the delegation, so a retried pass, or a grant that found
//! the delegation due first, announces it once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;

use super::store::{self, Delegation, Status};
use super::{audit, tax_code};
use crate::contract::Outgoing;
use crate::contract::events::DelegationExpired;
use crate::contract::outgoing::derived_id;
use crate::error::HandlerError;
use crate::runtime::{Batch, Job};

/// Who ends a delegation that reached its end.
const ACTOR: &str = "pinflow";

/// Marks a due delegation expired at its end, audits it and returns its announcement.
pub async fn expire(
    conn: &mut PgConnection,
    delegation: &Delegation,
    now: DateTime<Utc>,
    message_id: Option<&str>,
) -> Result<Outgoing, HandlerError> {
    let (Some(ended), Some(valid_until)) = (delegation.ends_at, delegation.valid_until) else {
        return Err(HandlerError::Permanent(
            "a delegation without an end cannot expire".into(),
        ));
    };
    store::end(conn, delegation.id, Status::Expired, ended, ACTOR).await?;
    let detail =
        json!({ "delegation_id": delegation.id, "delegate_tax_code": delegation.delegate });
    audit(
        conn,
        now,
        ACTOR,
        "delegation.expired",
        &delegation.delegator,
        message_id,
        detail,
    )
    .await?;
    let event = DelegationExpired {
        tax_code: tax_code(&delegation.delegator)?,
        delegation_id: delegation.id,
        delegate_tax_code: tax_code(&delegation.delegate)?,
        valid_until,
        expired_at: ended,
    };
    let id = derived_id(&[&delegation.id.to_string(), "delegation.expired"]);
    Ok(Outgoing::typed_event(&event, now)?.with_id(id))
}

/// The expiry job.
pub struct Expiry {
    /// How long between passes (`PINFLOW_SWEEP_INTERVAL`).
    interval: Duration,
}

impl Expiry {
    /// The job, run every `interval`.
    pub fn new(interval: Duration) -> Expiry {
        Expiry { interval }
    }
}

impl Job for Expiry {
    fn name(&self) -> &'static str {
        "expiry"
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
        let due = store::due(conn, now, limit).await?;
        let mut outgoing = Vec::with_capacity(due.len());
        for delegation in &due {
            outgoing.push(expire(conn, delegation, now, None).await?);
        }
        Ok(Batch {
            handled: due.len(),
            outgoing,
        })
    }
}
