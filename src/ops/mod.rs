//! What operators run from the command line. Uses the broker and the contract; knows
//! no worker.

pub mod bench;
pub mod credential;
pub mod dlq;
pub mod health;
pub mod publish;
pub mod watch;
