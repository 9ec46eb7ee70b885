//! What a worker is to the runtime: how it turns an envelope into a typed command, and
//! a handler that changes state through the transaction it is given and returns what
//! to publish. Its name and bindings are in its `Description`, not here. Handlers never
//! talk to the broker; exactly-once effects are the runtime's job.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::contract::{Envelope, Outgoing, ParseError};
use crate::error::HandlerError;

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

/// A dedicated worker's message handling.
pub trait Worker: Send + Sync + 'static {
    /// The typed command, parsed from the envelope at the edge.
    type Command: Send + Sync;
    /// The command after slow preparation done outside the transaction (for example
    /// hashing a new PIN), so the transaction stays short.
    type Prepared: Send + Sync;

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
