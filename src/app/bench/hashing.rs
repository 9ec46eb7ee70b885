//! The Argon2 ceiling: how many PIN hashes a second this machine makes with the
//! configured parameters through pinflow's own hasher and its hashing threads (one per
//! core, or `PINFLOW_ARGON2_THREADS`), with nothing else of the benchmark running:
//! measured before pinflow's phase and again after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::domain::PinHasher;
use crate::domain::hashing::HashError;

/// The hashing ceiling.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HashCeiling {
    /// Argon2id memory cost, KiB.
    pub m_cost_kib: u32,
    /// Argon2id iterations.
    pub t_cost: u32,
    /// Argon2id lanes.
    pub p_cost: u32,
    /// Hashes at a time (the hasher's pool: one per core unless configured).
    pub parallel: usize,
    /// Hashes made per second: the mean of the two measurements below (the machine's
    /// load moves during a run; both ends of it bracket the measured phase).
    pub hashes_per_second: f64,
    /// Measured before pinflow's phase.
    pub hashes_per_second_before: f64,
    /// Measured after it.
    pub hashes_per_second_after: f64,
    /// CPU seconds one hash takes (this process's CPU time over the hashes made,
    /// both measurements): unlike the rates, not lowered by other load on the machine.
    pub cpu_seconds_per_hash: f64,
    /// `parallel / cpu_seconds_per_hash`: the ceiling were every core free for it.
    pub hashes_per_second_free_cores: f64,
}

impl HashCeiling {
    /// With the rate measured after pinflow's phase too.
    pub(super) fn and_after(mut self, after: HashCeiling) -> HashCeiling {
        self.hashes_per_second_after = after.hashes_per_second_before;
        self.hashes_per_second =
            (self.hashes_per_second_before + self.hashes_per_second_after) / 2.0;
        self.cpu_seconds_per_hash = (self.cpu_seconds_per_hash + after.cpu_seconds_per_hash) / 2.0;
        self.hashes_per_second_free_cores = self.parallel as f64 / self.cpu_seconds_per_hash;
        self
    }
}

/// Hashes for at least `at_least` and at least four hashes per core, with twice as
/// many callers as cores so the pool is never idle.
pub(super) async fn ceiling(
    rules: &crate::config::Rules,
    at_least: Duration,
) -> anyhow::Result<HashCeiling> {
    let params = rules.hash_params();
    let hasher = PinHasher::with_threads(params, rules.hash_threads())?;
    let cores = hasher.parallel();
    let minimum = 4 * cores as u32;
    let done = Arc::new(AtomicU32::new(0));
    let cpu_before = super::running::cpu_seconds("self").unwrap_or(0.0);
    let started = Instant::now();
    let counted = done.clone();
    let going = move || started.elapsed() < at_least || counted.load(Ordering::Relaxed) < minimum;
    for caller in callers(&hasher, &done, going) {
        caller.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hashes = f64::from(done.load(Ordering::Relaxed));
    let rate = hashes / elapsed;
    let cpu = super::running::cpu_seconds("self").unwrap_or(0.0) - cpu_before;
    let cpu_per_hash = cpu / hashes;
    Ok(HashCeiling {
        cpu_seconds_per_hash: cpu_per_hash,
        hashes_per_second_free_cores: cores as f64 / cpu_per_hash,
        m_cost_kib: params.m_cost_kib,
        t_cost: params.t_cost,
        p_cost: params.p_cost,
        parallel: cores,
        hashes_per_second: rate,
        hashes_per_second_before: rate,
        hashes_per_second_after: rate,
    })
}

/// Hashing as a burst does while another type flows: on
/// `PINFLOW_ARGON2_THREADS_BESIDE_OTHERS` threads, with the configured parameters, until
/// stopped. What the broker alone is timed beside (see `alongside::Sides::broker_floor`).
pub(super) struct Load {
    stop: Arc<AtomicBool>,
    callers: Vec<Caller>,
}

/// A task that hashes through the pool (see `callers`).
type Caller = JoinHandle<Result<(), HashError>>;

/// Twice as many callers as `hasher` has threads, so its pool is never idle, each
/// hashing while `going` holds and counting its hashes in `done`.
fn callers(
    hasher: &PinHasher,
    done: &Arc<AtomicU32>,
    going: impl Fn() -> bool + Clone + Send + 'static,
) -> Vec<Caller> {
    (0..2 * hasher.parallel())
        .map(|_| {
            let (hasher, done, going) = (hasher.clone(), done.clone(), going.clone());
            tokio::spawn(async move {
                while going() {
                    hasher.hash_off_thread("BENCHMARK".to_owned()).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect()
}

impl Load {
    /// Starts hashing.
    pub(super) fn start(rules: &crate::config::Rules) -> anyhow::Result<Load> {
        let threads = rules.hash_threads_beside_others();
        let hasher = PinHasher::with_threads(rules.hash_params(), threads)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let going = move || !stopped.load(Ordering::Relaxed);
        let callers = callers(&hasher, &Arc::new(AtomicU32::new(0)), going);
        Ok(Load { stop, callers })
    }

    /// Stops once the hashes under way are done.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for caller in self.callers {
            caller.await??;
        }
        Ok(())
    }
}
