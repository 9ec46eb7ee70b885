//! The reconnect loop the consumer loops, the intake and the outbox relay share: a
//! broker session on a connection of its own, run again with backoff whenever it
//! fails, with the part's readiness following the session and each reconnect counted.
//!
//! ```ignore
//! let mut sessions = Sessions::new(&deps, "intake", &part, &cancel);
//! while let Some(connection) = sessions.connect().await {
//!     let result = session(&connection).await;
//!     if !sessions.ended(&connection, result).await {
//!         break;
//!     }
//! }
//! ```

use std::time::Duration;

use lapin::Connection;
use tokio_util::sync::CancellationToken;

use super::deps::Deps;
use super::health::Part;
use crate::broker;
use crate::error::chain;
use crate::telemetry::metrics;

/// One part's broker sessions, one after the other.
pub struct Sessions<'a> {
    deps: &'a Deps,
    /// The part's name in metrics, logs and its connection's name.
    label: &'a str,
    part: &'a Part,
    cancel: &'a CancellationToken,
    delays: Box<dyn Iterator<Item = Duration> + Send + 'a>,
    /// Whether a session has failed and the next one follows a reconnection.
    reconnected: bool,
}

impl<'a> Sessions<'a> {
    /// Sessions for the part `label`; its reconnect count starts at zero.
    pub fn new(
        deps: &'a Deps,
        label: &'a str,
        part: &'a Part,
        cancel: &'a CancellationToken,
    ) -> Sessions<'a> {
        metrics::reconnects(label, 0);
        Sessions {
            deps,
            label,
            part,
            cancel,
            delays: Box::new(broker::reconnect_delays()),
            reconnected: false,
        }
    }

    /// Whether the session about to run follows a failed one (what it needs
    /// declaring may have gone with the broker: see `Deps::declare_topology`).
    pub fn reconnected(&self) -> bool {
        self.reconnected
    }

    /// A new connection for the next session, retrying with backoff; `None` once
    /// `cancel` fired.
    pub async fn connect(&mut self) -> Option<Connection> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let name = self.deps.names.connection_name(self.label);
        broker::connect_with_backoff(&self.deps.amqp_url, &name, self.cancel).await
    }

    /// Closes a session's connection, with readiness off. Returns whether to run
    /// another: after a failure (logged and counted as a reconnect) once the backoff
    /// delay has passed, unless `cancel` fired first.
    pub async fn ended<E: std::error::Error + 'static>(
        &mut self,
        connection: &Connection,
        result: Result<(), E>,
    ) -> bool {
        self.part.set(false);
        broker::close(connection, "pinflow stopping").await;
        let Err(e) = result else {
            return false;
        };
        metrics::reconnects(self.label, 1);
        self.reconnected = true;
        tracing::warn!(part = self.label, error = %chain(&e), "lost the broker session; reconnecting");
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(self.delays.next().unwrap_or_default()) => true,
        }
    }
}
