//! The delegation worker: `delegation.grant` (a citizen who cannot use the online
//! services alone lets a trusted person act for them; the delegate must hold a live
//! credential, nobody delegates to themself, and a pair has at most one live
//! delegation), `delegation.revoke`, and a timed job that ends dated delegations at
//! their end. Refusals are `delegation.rejected` events, not failures.

mod command;
mod expiry;
mod grant;
mod store;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::contract::{Envelope, Outgoing, ParseError};
use crate::domain::TaxCode;
use crate::error::HandlerError;
use crate::manifest::{Binding, Description, JobSpec};
use crate::runtime::{Message, Registration, Worker};
use crate::store::audit as audit_log;
pub use command::{Command, Grant, Revoke};

/// The delegation worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "identity_delegation",
        bindings: &[
            Binding::command("delegation.grant", &["delegation.granted"]),
            Binding::command("delegation.revoke", &["delegation.revoked"]),
        ],
        jobs: &[JobSpec {
            name: "expiry",
            interval_setting: "PINFLOW_SWEEP_INTERVAL",
        }],
    },
    start: |starter| {
        starter.consume(Delegations);
        starter.every(expiry::Expiry::new(starter.runtime().sweep_interval));
    },
    parse: |envelope| Command::parse(envelope).map(drop),
};

/// The delegation worker: no settings of its own.
pub struct Delegations;

impl Worker for Delegations {
    type Command = Command;
    type Prepared = Command;

    fn parse(&self, envelope: &Envelope) -> Result<Command, ParseError> {
        Command::parse(envelope)
    }

    async fn prepare(&self, command: Command) -> Result<Command, HandlerError> {
        Ok(command)
    }

    async fn handle<'a>(
        &'a self,
        prepared: &'a Command,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        match prepared {
            Command::Grant(grant) => grant::grant(grant, message, conn).await,
            Command::Revoke(revoke) => grant::revoke(revoke, message, conn).await,
        }
    }
}

/// A tax code read back from the table, which only ever stores checked ones.
fn tax_code(text: &str) -> Result<TaxCode, HandlerError> {
    TaxCode::parse(text)
        .map_err(|_| HandlerError::Permanent("a stored tax code does not parse".into()))
}

/// Writes an audit row under the delegator's tax code at once: expiry runs in the timed
/// job too, where no message holds the row until the batch writes it.
async fn audit(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    delegator: &str,
    message_id: Option<&str>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    audit_log::record(
        conn,
        audit_log::Entry {
            at,
            actor,
            action,
            tax_code: Some(delegator),
            credential_id: None,
            message_id,
            detail,
        },
    )
    .await
}
