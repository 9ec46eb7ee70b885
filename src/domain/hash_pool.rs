//! The threads Argon2 runs on: one per core, started with the hasher and kept for its
//! life, each with its own Argon2 work memory reused from hash to hash. A hash is
//! handed to an idle thread that is already running, rather than to tokio's blocking
//! pool, which spawns and retires threads as bursts come and go.
//!
//! Some of the threads may step aside while commands that do not hash are being
//! handled ([`OtherWork`]): between two hashes, such a thread waits until none has
//! been seen for [`STEP_ASIDE_FOR`], and leaves its core to them (and to a broker or
//! database on the same machine). The others keep hashing, so a hash always has a
//! thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::Block;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::oneshot;

use super::hashing::HashError;
use crate::telemetry::metrics;

/// How long after the last command that does not hash the threads that step aside
/// keep waiting.
const STEP_ASIDE_FOR: Duration = Duration::from_millis(250);

/// One hash or check, given a thread's work memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// When a command that does not hash was last seen: the consumer loops say so at
/// each batch (see `runtime::consumer`), and the threads that step aside read it.
#[derive(Debug)]
pub struct OtherWork {
    origin: Instant,
    /// Nanoseconds from `origin` to the last sighting, plus one; 0 for none yet.
    last: AtomicU64,
}

impl Default for OtherWork {
    fn default() -> Self {
        OtherWork {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl OtherWork {
    /// A command that does not hash is being handled now.
    pub fn seen(&self) {
        let since = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(since.saturating_add(1), Ordering::Relaxed);
    }

    /// How long the threads that step aside should still wait: `None` once nothing
    /// that does not hash has been seen for [`STEP_ASIDE_FOR`].
    fn wait_left(&self) -> Option<Duration> {
        let last = self.last.load(Ordering::Relaxed).checked_sub(1)?;
        let until = Duration::from_nanos(last) + STEP_ASIDE_FOR;
        until
            .checked_sub(self.origin.elapsed())
            .filter(|left| !left.is_zero())
    }
}

/// The hashing threads; they stop once every clone of the pool is gone.
#[derive(Clone)]
pub struct HashPool {
    jobs: Arc<Sender<Job>>,
    threads: usize,
}

impl HashPool {
    /// Starts `threads` hashing threads, of which all but `keep` (at least one) step
    /// aside while `other` says commands that do not hash are being handled.
    pub fn start(
        threads: usize,
        keep: usize,
        other: &Arc<OtherWork>,
    ) -> Result<HashPool, HashError> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let keep = keep.max(1);
        // Shown from the start, at 0, rather than only once a thread steps aside.
        metrics::argon2_stepped_aside(0.0);
        for n in 0..threads {
            let queue = queue.clone();
            let steps_aside = (n >= keep).then(|| other.clone());
            std::thread::Builder::new()
                .name(format!("pinflow-argon2-{n}"))
                .spawn(move || work(&queue, steps_aside.as_deref()))
                .map_err(|_| HashError::Pool)?;
        }
        Ok(HashPool {
            jobs: Arc::new(jobs),
            threads,
        })
    }

    /// Hashes at a time, at most.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job` on a hashing thread and waits for its answer; the wait for a free
    /// thread is counted in `pinflow_argon2_queue_depth`.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (answer, answered) = oneshot::channel();
        metrics::argon2_waiting(1.0);
        let queued = self.jobs.send(Box::new(move |memory: &mut Vec<Block>| {
            metrics::argon2_waiting(-1.0);
            // The caller may have gone (its delivery abandoned): nothing to tell.
            let _ = answer.send(job(memory));
        }));
        if queued.is_err() {
            metrics::argon2_waiting(-1.0);
            return Err(HashError::Pool);
        }
        answered.await.map_err(|_| HashError::Pool)
    }
}

/// A hashing thread: runs jobs until the pool is gone.
fn work(queue: &Receiver<Job>, steps_aside: Option<&OtherWork>) {
    let mut memory = Vec::new();
    match steps_aside {
        None => {
            while let Ok(job) = queue.recv() {
                job(&mut memory);
            }
        }
        Some(other) => work_beside(queue, other, &mut memory),
    }
}

/// A hashing thread that steps aside: before it takes each job, and every
/// [`STEP_ASIDE_FOR`] while it has none, it waits until `other` has seen nothing for
/// that long. A job it is already waiting for when other work begins it still takes:
/// at most one hash more each time.
fn work_beside(queue: &Receiver<Job>, other: &OtherWork, memory: &mut Vec<Block>) {
    let mut aside = false;
    loop {
        if let Some(left) = other.wait_left() {
            if !aside {
                aside = true;
                metrics::argon2_stepped_aside(1.0);
            }
            std::thread::sleep(left);
            continue;
        }
        if aside {
            aside = false;
            metrics::argon2_stepped_aside(-1.0);
        }
        match queue.recv_timeout(STEP_ASIDE_FOR) {
            Ok(job) => job(memory),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_threads() {
        let pool = HashPool::start(2, 2, &Arc::default()).unwrap();
        let name = pool.run(|_| std::thread::current().name().map(str::to_owned));
        assert!(name.await.unwrap().unwrap().starts_with("pinflow-argon2-"));
    }

    #[tokio::test]
    async fn a_thread_keeps_its_work_memory_between_jobs() {
        let pool = HashPool::start(1, 1, &Arc::default()).unwrap();
        pool.run(|memory| memory.resize(8, Block::default()))
            .await
            .unwrap();
        assert_eq!(pool.run(|memory| memory.len()).await.unwrap(), 8);
    }

    /// Runs two jobs that each wait for the other: they finish only if two threads
    /// take them at once.
    async fn two_at_once(pool: &HashPool) -> bool {
        let both = Arc::new(std::sync::Barrier::new(2));
        let job = |both: Arc<std::sync::Barrier>| move |_: &mut Vec<Block>| both.wait();
        let (one, two) = (pool.run(job(both.clone())), pool.run(job(both)));
        let together = async { futures_util::future::join(one, two).await };
        tokio::time::timeout(Duration::from_secs(5), together)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn nothing_else_seen_nothing_waits() {
        let other = Arc::new(OtherWork::default());
        assert_eq!(other.wait_left(), None);
        let pool = HashPool::start(2, 1, &other).unwrap();
        assert!(two_at_once(&pool).await, "both threads hash");
    }

    #[tokio::test]
    async fn a_thread_steps_aside_while_other_work_is_seen_and_comes_back_after() {
        let other = Arc::new(OtherWork::default());
        other.seen();
        let left = other.wait_left().expect("just seen");
        assert!(left <= STEP_ASIDE_FOR);
        let pool = HashPool::start(2, 1, &other).unwrap();
        // Each job says it saw other work again: only the thread that keeps hashing
        // takes any.
        for _ in 0..8 {
            other.seen();
            let seen = other.clone();
            let name = pool.run(move |_| {
                seen.seen();
                std::thread::current().name().map(str::to_owned)
            });
            assert_eq!(name.await.unwrap().as_deref(), Some("pinflow-argon2-0"));
        }
        // Nothing seen since: the other thread hashes again.
        std::thread::sleep(STEP_ASIDE_FOR);
        assert!(two_at_once(&pool).await, "both threads hash again");
    }

    #[tokio::test]
    async fn keeping_every_thread_never_steps_aside() {
        let other = Arc::new(OtherWork::default());
        other.seen();
        let pool = HashPool::start(2, 2, &other).unwrap();
        assert!(
            two_at_once(&pool).await,
            "both threads hash beside other work"
        );
    }
}
