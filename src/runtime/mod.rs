//! The runtime every worker runs on: the worker trait and the message a handler sees,
//! the consumer loop and its transaction, timed jobs, the outbox relay and the
//! registration a worker plugs in with. Built on `broker/` and `store/`; knows no
//! worker.

mod apply;
pub mod at_commit;
pub mod consumer;
pub mod deps;
pub mod gauges;
pub mod health;
pub mod intake;
pub mod job;
pub mod registry;
pub mod relay;
mod supervise;
pub mod worker;

pub use deps::{Deps, JobTrigger};
pub use job::{Batch, Job};
pub use registry::{Registration, Starter, descriptions};
pub use worker::{Handling, Message, Worker, prepare_each, together};
