//! How a worker plugs into the runtime: its `Description` (plain data), a function
//! that starts it, and a function that parses a command the way it would (so every
//! example of the contract can be run through the worker's own parser). `main` passes
//! the list of registrations in, so nothing under `src/` names a worker.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::deps::Deps;
use super::job::{self, Job};
use super::worker::Worker;
use crate::config::{Rules, Runtime};
use crate::contract::{Envelope, ParseError};
use crate::domain::PinHasher;
use crate::manifest::Description;

/// One worker, as the registry lists it.
#[derive(Clone, Copy)]
pub struct Registration {
    /// Name, bindings, jobs.
    pub description: Description,
    /// Builds the worker from the settings and starts its consumers and jobs.
    pub start: fn(&Starter<'_>),
    /// Parses a command of one of its types as its consumer would; the error is the
    /// reason a dead letter would carry.
    pub parse: fn(&Envelope) -> Result<(), ParseError>,
}

/// The descriptions of a registry.
pub fn descriptions(registry: &[Registration]) -> Vec<Description> {
    registry.iter().map(|r| r.description).collect()
}

/// What a worker's `start` function is given.
pub struct Starter<'a> {
    /// The worker being started.
    pub(crate) description: Description,
    /// What consumers and jobs share.
    pub(crate) deps: &'a Arc<Deps>,
    /// Business rules.
    pub(crate) rules: &'a Rules,
    /// Argon2id, shared by every worker of the process so hashing stays bounded.
    pub(crate) hasher: &'a PinHasher,
    /// Where the tasks run, so shutdown can wait for them.
    pub(crate) tracker: &'a TaskTracker,
    /// Stops them.
    pub(crate) cancel: &'a CancellationToken,
}

impl Starter<'_> {
    /// The business rules.
    pub fn rules(&self) -> &Rules {
        self.rules
    }

    /// The runtime settings (intervals, batch sizes).
    pub fn runtime(&self) -> &Runtime {
        &self.deps.runtime
    }

    /// The process's Argon2id hasher.
    pub fn hasher(&self) -> &PinHasher {
        self.hasher
    }

    /// The database pool, for reads in `prepare` (before the transaction); every
    /// write goes through the handler's transaction.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.deps.pool
    }

    /// The clock handlers see as `Message::now`, for `prepare`.
    pub fn clock(&self) -> &Arc<dyn crate::clock::Clock> {
        &self.deps.clock
    }

    /// Starts `PINFLOW_CONSUMERS` consumer loops for the worker, competing on its
    /// queue, so one waits on the database while another works.
    pub fn consume<W: Worker>(&self, worker: W) {
        let worker = Arc::new(worker);
        for _ in 0..self.deps.runtime.consumers {
            self.tracker.spawn(super::consumer::run(
                worker.clone(),
                self.description,
                self.deps.clone(),
                self.cancel.clone(),
            ));
        }
    }

    /// Starts a timed job. Its name must be one of the description's jobs.
    pub fn every<J: Job>(&self, job: J) {
        debug_assert!(
            self.description.jobs.iter().any(|j| j.name == job.name()),
            "job {} is not in the description of {}",
            job.name(),
            self.description.name
        );
        self.tracker.spawn(job::run(
            Arc::new(job),
            self.deps.clone(),
            self.cancel.clone(),
        ));
    }
}
