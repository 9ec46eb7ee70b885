//! pinflow: the life of the PIN credential as message-driven workflows.
//!
//! `src/` is the machinery every worker shares (configuration, contract, broker,
//! store, telemetry); `workers/` holds the dedicated workers and nothing else. The
//! `#[path]` line below is the one place that joins them, so there is one crate, one
//! build and no dependency cycle between the runtime and the workers.

pub mod app;
pub mod broker;
pub mod clock;
pub mod config;
pub mod contract;
pub mod domain;
pub mod error;
pub mod failpoint;
pub mod manifest;
pub mod ops;
pub mod runtime;
pub mod seal;
pub mod sealing;
pub mod store;
pub mod telemetry;

#[path = "../workers/mod.rs"]
pub mod workers;
