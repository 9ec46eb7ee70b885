//! What operators run from the command line. Uses the broker, the store and the
//! contract; knows no worker (`main` passes the registered workers' descriptions in)
//! and nothing of the runtime above it.

pub mod credential;
pub mod dlq;
pub mod health;
pub mod keys;
pub mod publish;
pub mod watch;
