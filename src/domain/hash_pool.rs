//! The threads Argon2 runs on: one per core, started with the hasher and kept for its
//! life, each with its own Argon2 work memory reused from hash to hash. A hash is
//! handed to an idle thread that is already running, rather than to tokio's blocking
//! pool, which spawns and retires threads as bursts come and go.

use std::sync::Arc;

use argon2::Block;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::hashing::HashError;
use crate::telemetry::metrics;

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

/// A hashing thread: runs jobs until the pool is gone.
fn work(queue: &Receiver<Job>) {
    let mut memory = Vec::new();
    while let Ok(job) = queue.recv() {
        job(&mut memory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_threads() {
        let pool = HashPool::start(2).unwrap();
        let name = pool.run(|_| std::thread::current().name().map(str::to_owned));
        assert!(name.await.unwrap().unwrap().starts_with("pinflow-argon2-"));
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
