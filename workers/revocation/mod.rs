//! The revocation worker: `pin.revoke` (online with the health card and an e-mail or
//! PEC on record, or by a contact-center operator; a revoked PIN never works again and
//! its holder is told) and `contacts.update` (change or add mobile, e-mail, PEC; a
//! security notice to the previous and the new address; audited).

mod command;
mod contacts;
mod revoke;
mod store;

use sqlx::PgConnection;

use crate::contract::{Envelope, Outgoing, ParseError};
use crate::error::HandlerError;
use crate::manifest::{Binding, Description};
use crate::runtime::{Message, Registration, Worker};
pub use command::{Command, ContactsChange, Proof, Revoke};

/// The revocation worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "revocation",
        bindings: &[
            Binding::command("pin.revoke", &["pin.revoked", "notify.email"]),
            Binding::command(
                "contacts.update",
                &["notify.email", "notify.email", "contacts.updated"],
            ),
        ],
        jobs: &[],
    },
    start: |starter| starter.consume(Revocation),
    parse: |envelope| Command::parse(envelope).map(drop),
};

/// The revocation worker. It needs no settings: its rules are the contract's.
pub struct Revocation;

impl Worker for Revocation {
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
            Command::Revoke(revoke) => revoke::handle(revoke, message, conn).await,
            Command::Contacts(change) => contacts::handle(change, message, conn).await,
        }
    }
}

/// Who did it: the operator where there is one, else the upstream system.
fn actor<'a>(operator: Option<&'a str>, message: &'a Message<'_>) -> &'a str {
    operator.unwrap_or(&message.envelope.source)
}
