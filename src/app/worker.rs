//! What a worker is to the runtime: the message types it takes, how it turns an
//! envelope into a typed command, and a handler that changes state through the
//! transaction it is given and returns what to publish. Handlers never talk to the
//! broker; exactly-once effects are the runtime's job.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;

use crate::broker::Names;
use crate::clock::Clock;
use crate::config;
use crate::contract::{Envelope, Outgoing, ParseError};
use crate::error::HandlerError;
use crate::seal::OutboxKey;

/// One incoming message as a handler sees it.
pub struct Message<'a> {
    /// The checked envelope (id, source, type, time, data).
    pub envelope: &'a Envelope,
    /// Where an RPC reply goes; present for every RPC command.
    pub reply_to: Option<&'a str>,
    /// The RPC correlation id to echo.
    pub correlation_id: Option<&'a str>,
    /// "Now" for every deadline check, from the injected clock.
    pub now: DateTime<Utc>,
}

/// A dedicated worker.
pub trait Worker: Send + Sync + 'static {
    /// The typed command, parsed from the envelope at the edge.
    type Command: Send + Sync;
    /// The command after slow preparation done outside the transaction (for example
    /// hashing a new PIN), so the transaction stays short.
    type Prepared: Send + Sync;

    /// The worker's name, also the last part of its queue's name.
    fn name(&self) -> &'static str;

    /// The message types (routing keys on `pinflow.commands`) it consumes.
    fn accepts(&self) -> &'static [&'static str];

    /// Whether a type is an RPC command, which is invalid without `reply_to`.
    fn is_rpc(&self, message_type: &str) -> bool;

    /// Turns a checked envelope into a typed command. A failure is permanent.
    fn parse(&self, envelope: &Envelope) -> Result<Self::Command, ParseError>;

    /// Slow, state-free work before the transaction.
    fn prepare(
        &self,
        command: Self::Command,
    ) -> impl Future<Output = Result<Self::Prepared, HandlerError>> + Send;

    /// Applies the command inside the transaction and returns what to publish once
    /// it commits. It may run more than once for one message if a batch is retried,
    /// so all its effects go through `conn`.
    fn handle<'a>(
        &'a self,
        prepared: &'a Self::Prepared,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> impl Future<Output = Result<Vec<Outgoing>, HandlerError>> + Send + 'a;
}

/// What the consumer loops and the relay share.
pub struct Deps {
    /// The database.
    pub pool: PgPool,
    /// This installation's exchange and queue names.
    pub names: Names,
    /// Where the broker is (may hold a password: never logged).
    pub amqp_url: String,
    /// Prefetch, batching, retry and relay settings.
    pub runtime: config::Runtime,
    /// Seals secrets in the outbox and in dead-letter copies.
    pub key: Arc<OutboxKey>,
    /// "Now".
    pub clock: Arc<dyn Clock>,
    /// Wakes the relay after a commit, so it does not wait for its interval.
    pub relay_wake: Arc<Notify>,
}
