//! What the consumer loops, the timed jobs and the relay of one process share.

use std::sync::Arc;

use lapin::Channel;
use sqlx::PgPool;
use tokio::sync::{Notify, OnceCell, watch};

use crate::broker::{Names, topology};
use crate::clock::Clock;
use crate::config;
use crate::domain::OtherWork;
use crate::manifest::Description;
use crate::seal::KeyRing;

/// What the consumer loops, the timed jobs and the relay share.
pub struct Deps {
    /// The database.
    pub pool: PgPool,
    /// This installation's exchange and queue names.
    pub names: Names,
    /// Where the broker is (may hold a password: never logged).
    pub amqp_url: String,
    /// Prefetch, batching, retry, relay and sweep settings.
    pub runtime: config::Runtime,
    /// Seals secrets in the outbox and in dead-letter copies.
    pub keys: Arc<KeyRing>,
    /// "Now".
    pub clock: Arc<dyn Clock>,
    /// Wakes the relay after a commit, so it does not wait for its interval.
    pub relay_wake: Arc<Notify>,
    /// Whether consumers publish what a batch caused as soon as it commits (see
    /// `at_commit`); off leaves everything to the relay.
    pub at_commit: super::at_commit::AtCommit,
    /// Every registered worker, run here or not: the whole topology is declared
    /// before any session starts, so no event is published before its subscribers'
    /// queues exist (see `declare_topology`).
    pub workers: Arc<[Description]>,
    /// Set once a session of this process has declared the whole topology.
    pub declared: Arc<OnceCell<()>>,
    /// Starts a pass of every timed job at once (tests, operators).
    pub jobs_now: JobTrigger,
    /// Whether each consumer loop, the intake and the relay have their broker session.
    pub health: Arc<super::health::Health>,
    /// Told by the consumer loops when they handle commands that do not hash, for the
    /// hashing threads that step aside for them.
    pub other_work: Arc<OtherWork>,
}

impl Deps {
    /// Declares the whole topology (every registered worker's, run here or not)
    /// before a broker session starts. A process's first sessions declare it once
    /// between them: the first to get there declares it and the others wait for it
    /// (declaring it once per session made the broker do the same work 18 times at
    /// every start). A session after a reconnection declares it again: the broker may
    /// have come back without it.
    pub async fn declare_topology(
        &self,
        channel: &Channel,
        reconnected: bool,
    ) -> Result<(), lapin::Error> {
        let all = || topology::declare_all(channel, &self.names, &self.runtime, &self.workers);
        if reconnected {
            return all().await;
        }
        self.declared.get_or_try_init(all).await.map(|_| ())
    }
}

/// Starts a pass of every running job at once, without waiting for its interval.
#[derive(Clone)]
pub struct JobTrigger(Arc<watch::Sender<u64>>);

impl Default for JobTrigger {
    fn default() -> Self {
        JobTrigger(Arc::new(watch::channel(0).0))
    }
}

impl JobTrigger {
    /// Asks every job to run a pass now.
    pub fn fire(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
