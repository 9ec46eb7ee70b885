//! The threads Argon2 runs on: one per core, started with the hasher and kept for its
//! life, each with its own Argon2 work memory reused from hash to hash. They run at a
//! lower scheduling priority (nice 10 above the process's) than the async threads and
//! than the broker and the database beside them, so a burst of hashing takes the CPU nothing else wants:
//! deliveries of other types, replies and the relay keep flowing, and hashing still
//! has every core whenever they are idle.

use std::sync::Arc;

use argon2::Block;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::hashing::HashError;
use crate::telemetry::metrics;

/// How much lower than the rest of the process the hashing threads are scheduled.
const NICE: i32 = 10;

/// One hash or check, given a thread's work memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The hashing threads; they stop once every clone of the pool is gone.
#[derive(Clone)]
pub struct HashPool {
    jobs: Arc<Sender<Job>>,
    threads: usize,
}

impl HashPool {
    /// Starts `threads` hashing threads.
    pub fn start(threads: usize) -> Result<HashPool, HashError> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("pinflow-argon2-{n}"))
                .spawn(move || work(&queue))
                .map_err(|_| HashError::Pool)?;
        }
        Ok(HashPool {
            jobs: Arc::new(jobs),
            threads,
        })
    }

    /// Hashes at a time.
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

/// A hashing thread: lowers its own priority, then runs jobs until the pool is gone.
fn work(queue: &Receiver<Job>) {
    lower_priority();
    let mut memory = Vec::new();
    while let Ok(job) = queue.recv() {
        job(&mut memory);
    }
}

/// Raises the calling thread's nice value by `NICE` (on Linux a thread has its own).
/// Raising it needs no privilege; if it fails anyway, hashing runs at the process's
/// priority, which is only slower for the other work.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let target = (own_nice() + NICE).min(19);
        // SAFETY: `gettid` and `setpriority` take plain integers and touch no memory of
        // ours; `setpriority` on the calling thread's id changes only its own nice value.
        let result = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, target)
        };
        if result != 0 {
            tracing::debug!("could not lower the hashing thread's priority");
        }
    }
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
fn own_nice() -> i32 {
    // SAFETY: `gettid` and `getpriority` take plain integers and only read.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn jobs_run_on_the_pool_threads_at_a_lower_priority() {
        let pool = HashPool::start(2).unwrap();
        let (name, nice) = pool
            .run(|_| (std::thread::current().name().map(str::to_owned), own_nice()))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("pinflow-argon2-"));
        assert_eq!(nice, (own_nice() + NICE).min(19));
    }

    #[tokio::test]
    async fn a_thread_keeps_its_work_memory_between_jobs() {
        let pool = HashPool::start(1).unwrap();
        pool.run(|memory| memory.resize(8, Block::default()))
            .await
            .unwrap();
        assert_eq!(pool.run(|memory| memory.len()).await.unwrap(), 8);
    }
}
