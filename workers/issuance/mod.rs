//! The issuance worker: `pin.request` (split delivery, office issue), `pin.first_access`
//! (the initial PIN for the 8-character PIN) and `pin.verify` (login, lockout).

mod access;
mod command;
mod request;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument as _;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Rules;
use crate::contract::{Envelope, Outgoing, ParseError};
use crate::domain::PinHasher;
use crate::domain::checked::Checked;
use crate::error::HandlerError;
use crate::manifest::{Binding, Description};
use crate::runtime::{Handling, Message, Registration, Worker};
pub use command::{Command, FirstAccess, PinRequest, Verify};

/// The issuance worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "issuance",
        bindings: &[
            Binding::command("pin.request", &["notify.sms", "notify.post", "pin.issued"]),
            Binding::rpc("pin.first_access", &["reply", "pin.activated"]).after(&["pin.request"]),
            Binding::rpc("pin.verify", &["reply"]).after(&["pin.request", "pin.first_access"]),
        ],
        jobs: &[],
    },
    start: |starter| {
        starter.consume(Issuance::new(
            starter.rules().clone(),
            starter.hasher().clone(),
            starter.pool().clone(),
            starter.clock().clone(),
        ))
    },
    parse: |envelope| Command::parse(envelope).map(drop),
};

/// The issuance worker.
pub struct Issuance {
    /// Periods, lockout threshold.
    rules: Rules,
    /// Argon2id, run on the hashing threads.
    hasher: PinHasher,
    /// For reading a stored hash before the transaction (see `access::check_before`).
    pool: PgPool,
    /// The handlers' clock, for the same reads.
    clock: Arc<dyn Clock>,
}

impl Issuance {
    /// A worker with these rules.
    pub fn new(rules: Rules, hasher: PinHasher, pool: PgPool, clock: Arc<dyn Clock>) -> Issuance {
        Issuance {
            rules,
            hasher,
            pool,
            clock,
        }
    }
}

/// A command with its slow part (generating and hashing a new PIN) done.
pub enum Prepared {
    Request(Box<PinRequest>, Option<request::NewInitialPin>),
    FirstAccess(FirstAccess, access::NewPin, Option<Checked>),
    Verify(Verify, Option<Checked>),
}

impl Prepared {
    /// Whose credential the command is about.
    fn tax_code(&self) -> &str {
        match self {
            Prepared::Request(request, _) => request.tax_code.as_str(),
            Prepared::FirstAccess(access, ..) => access.tax_code.as_str(),
            Prepared::Verify(verify, _) => verify.tax_code.as_str(),
        }
    }
}

impl Worker for Issuance {
    type Command = Command;
    type Prepared = Prepared;

    fn parse(&self, envelope: &Envelope) -> Result<Command, ParseError> {
        Command::parse(envelope)
    }

    async fn prepare(&self, command: Command) -> Result<Prepared, HandlerError> {
        use access::Against::{InitialPin, Pin};
        Ok(match command {
            Command::Request(request) => {
                let pin = if request.is_eligible() {
                    Some(request::NewInitialPin::generate(&self.hasher).await?)
                } else {
                    None
                };
                Prepared::Request(request, pin)
            }
            Command::FirstAccess(access) => {
                let presented = access.initial_pin.expose();
                let (pin, checked) = tokio::join!(
                    access::NewPin::generate(&self.hasher),
                    access::check_before(self, &access.tax_code, presented, InitialPin),
                );
                Prepared::FirstAccess(access, pin?, checked?)
            }
            Command::Verify(verify) => {
                let presented = verify.pin.expose();
                let checked = access::check_before(self, &verify.tax_code, presented, Pin);
                let checked = checked.await?;
                Prepared::Verify(verify, checked)
            }
        })
    }

    async fn handle<'a>(
        &'a self,
        prepared: &'a Prepared,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        self.handle_staged(prepared, None, message, conn).await
    }

    /// A batch's `pin.request`s insert their credentials in one statement (see
    /// `request::stage`), then every command is handled in order.
    async fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handling<'a, Prepared>],
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Vec<Outgoing>>, HandlerError> {
        let staged = request::stage(self, batch, conn).await?;
        let mut all = Vec::with_capacity(batch.len());
        for (item, staged) in batch.iter().zip(staged) {
            let handled = self.handle_staged(item.prepared, staged, item.message, conn);
            all.push(handled.instrument(item.span.clone()).await?);
        }
        Ok(all)
    }
}

impl Issuance {
    async fn handle_staged(
        &self,
        prepared: &Prepared,
        staged: Option<request::Staged<'_>>,
        message: &Message<'_>,
        conn: &mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        match prepared {
            Prepared::Request(request, pin) => {
                request::handle(self, request, pin.as_ref(), staged, message, conn).await
            }
            Prepared::FirstAccess(access, pin, checked) => {
                let checked = checked.as_ref();
                access::first_access(self, access, pin, checked, message, conn).await
            }
            Prepared::Verify(verify, checked) => {
                access::verify(self, verify, checked.as_ref(), message, conn).await
            }
        }
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The RPC reply to `message`.
fn reply(
    message: &Message<'_>,
    data: Value,
    secret: Option<crate::contract::SecretField>,
) -> Outgoing {
    Outgoing::reply(
        &message.envelope.message_type,
        message.reply_to.unwrap_or_default(),
        message.correlation_id,
        data,
        secret,
        message.now,
    )
}
