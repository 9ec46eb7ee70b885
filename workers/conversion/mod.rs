//! The conversion worker: an operator's `conversion.review` (approved: the ordinary PIN
//! becomes a device PIN; rejected: the citizen is told why), `application.submit`
//! (accepted with device-level authentication, held with an ordinary PIN), and two
//! events: `pin.converted` releases the citizen's held applications in filing order,
//! `pin.revoked` leaves them held and says so. Its `record` (the conversions table)
//! and `outcome` (how a conversion ends) are shared with the verification worker, so an
//! office conversion is approved by the same code as a review.

mod applications;
mod command;
pub mod outcome;
pub mod record;
mod review;

use sqlx::PgConnection;
use tracing::Instrument as _;

use crate::contract::{Envelope, Outgoing, ParseError};
use crate::error::HandlerError;
use crate::manifest::{Binding, Description};
use crate::runtime::{Handling, Message, Registration, Worker};
pub use command::{Application, Command, CredentialEvent, PIN_REVOKED, Review};

/// The conversion worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "conversion",
        bindings: &[
            Binding::command("conversion.review", &["pin.converted", "notify.email"]),
            Binding::command("application.submit", &["application.held"]),
            Binding::event("pin.converted", &["application.released"]),
            Binding::event(PIN_REVOKED, &["application.held"]),
        ],
        jobs: &[],
    },
    start: |starter| starter.consume(Conversion),
    parse: |envelope| Command::parse(envelope).map(drop),
};

/// The conversion worker. It needs no settings: its rules are the credential's.
pub struct Conversion;

impl Worker for Conversion {
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
        command: &'a Command,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        handle_staged(command, None, message, conn).await
    }

    /// A batch's applications are filed in one statement (see `applications::stage`),
    /// then every command is handled in order.
    async fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handling<'a, Command>],
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Vec<Outgoing>>, HandlerError> {
        let staged = applications::stage(batch, conn).await?;
        let mut all = Vec::with_capacity(batch.len());
        for (item, staged) in batch.iter().zip(staged) {
            let handled = handle_staged(item.prepared, staged, item.message, conn);
            all.push(handled.instrument(item.span.clone()).await?);
        }
        Ok(all)
    }
}

async fn handle_staged(
    command: &Command,
    staged: Option<applications::Staged>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    match command {
        Command::Review(review) => review::handle(review, message, conn).await,
        Command::Application(app) => applications::submit(app, staged, message, conn).await,
        Command::Converted(converted) => applications::release(converted, message, conn).await,
        Command::Revoked(revoked) => applications::still_held(revoked, message, conn).await,
    }
}
