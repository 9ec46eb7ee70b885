//! The dedicated workers of the product, each only its handlers. `src/` is the
//! machinery they share; this module only lists them and starts the chosen ones.

pub mod issuance;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::Deps;
use crate::broker::consumer;
use crate::broker::topology::WorkerQueue;
use crate::config::Rules;
use crate::domain::PinHasher;

/// Every worker's queue and bindings, for declaring the whole topology at once.
pub const ALL: &[WorkerQueue] = &[issuance::QUEUE];

/// Checks the names given to `--worker`; none means every worker.
pub fn choose(requested: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if requested.is_empty() {
        return Ok(ALL.iter().map(|w| w.name).collect());
    }
    requested
        .iter()
        .map(|name| {
            ALL.iter()
                .map(|w| w.name)
                .find(|known| known == name)
                .ok_or_else(|| {
                    let known: Vec<_> = ALL.iter().map(|w| w.name).collect();
                    anyhow::anyhow!(
                        "unknown worker `{name}`; the workers are: {}",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

/// Starts a worker's consumer loops (`PINFLOW_CONSUMERS` of them, competing on its
/// queue, so one waits on the database while another works) on `tracker`.
pub fn spawn(
    name: &str,
    tracker: &TaskTracker,
    deps: &Arc<Deps>,
    rules: &Rules,
    hasher: &PinHasher,
    cancel: CancellationToken,
) {
    if name == issuance::QUEUE.name {
        let worker = Arc::new(issuance::Issuance::new(rules.clone(), hasher.clone()));
        for _ in 0..deps.runtime.consumers {
            tracker.spawn(consumer::run(worker.clone(), deps.clone(), cancel.clone()));
        }
    }
}
