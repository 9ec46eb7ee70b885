//! The expiry worker: timed jobs only, no queue. Four sweeps, each every
//! `PINFLOW_SWEEP_INTERVAL` in batches of `PINFLOW_SWEEP_BATCH`:
//!
//! - `expire`: a citizen's PIN six months after activation (or after the first access
//!   that follows a reset), an intermediary's three (`PINFLOW_VALIDITY_*`): marked
//!   expired, `pin.expired` and a notice (`pin_expired`) by e-mail or PEC;
//! - `remind`: `PINFLOW_EXPIRY_REMINDER` (14 days) before that deadline, once per
//!   deadline: `pin.expiring` and a notice (`pin_expiring`);
//! - `initial_pins`: an initial PIN not used within `PINFLOW_INITIAL_PIN_TTL`: marked
//!   expired and `pin.expired` (`deadline: initial_pin`);
//! - `reset_tokens`: reset tokens past `PINFLOW_RESET_TOKEN_TTL`: marked expired.
//!
//! Every check (verify, first access, reset confirmation) already refuses at the
//! instant a deadline passes; the sweeps record it and announce it. Several replicas
//! share each pass (`FOR UPDATE SKIP LOCKED`). Phone PINs are not swept here.

mod store;
mod sweeps;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::Period;
use crate::error::HandlerError;
use crate::manifest::{Description, JobSpec};
use crate::runtime::{Batch, Job, Registration};

const fn job(name: &'static str) -> JobSpec {
    JobSpec {
        name,
        interval_setting: "PINFLOW_SWEEP_INTERVAL",
    }
}

/// The expiry worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "expiry",
        bindings: &[],
        jobs: &[
            job(Sweep::Expire.name()),
            job(Sweep::Remind.name()),
            job(Sweep::InitialPins.name()),
            job(Sweep::ResetTokens.name()),
        ],
    },
    start: |starter| {
        let interval = starter.runtime().sweep_interval;
        let reminder = starter.rules().expiry_reminder;
        for sweep in Sweep::ALL {
            starter.every(Timed {
                sweep,
                interval,
                reminder,
            });
        }
    },
    parse: |_| Ok(()),
};

/// One of the sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Validity periods that ended.
    Expire,
    /// Validity periods about to end.
    Remind,
    /// Initial PINs never used within their window.
    InitialPins,
    /// Reset tokens past their deadline.
    ResetTokens,
}

impl Sweep {
    /// Every sweep, in the order they start.
    pub const ALL: [Sweep; 4] = [
        Sweep::Expire,
        Sweep::Remind,
        Sweep::InitialPins,
        Sweep::ResetTokens,
    ];

    /// The job's name in the worker's description.
    pub const fn name(self) -> &'static str {
        match self {
            Sweep::Expire => "expire",
            Sweep::Remind => "remind",
            Sweep::InitialPins => "initial_pins",
            Sweep::ResetTokens => "reset_tokens",
        }
    }
}

/// A sweep with its settings, as the runtime runs it.
pub struct Timed {
    /// Which sweep.
    pub sweep: Sweep,
    /// How long between passes.
    pub interval: Duration,
    /// How long before a deadline the reminder goes.
    pub reminder: Period,
}

impl Job for Timed {
    fn name(&self) -> &'static str {
        self.sweep.name()
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
        match self.sweep {
            Sweep::Expire => sweeps::expire(conn, now, limit).await,
            Sweep::Remind => sweeps::remind(conn, now, limit, &self.reminder).await,
            Sweep::InitialPins => sweeps::initial_pins(conn, now, limit).await,
            Sweep::ResetTokens => sweeps::reset_tokens(conn, now, limit).await,
        }
    }
}
