//! The issuance worker: `pin.request` (split delivery, office issue), `pin.first_access`
//! (the initial PIN for the 8-character PIN) and `pin.verify` (login, lockout).

mod access;
mod command;
mod request;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tracing::{Instrument as _, Span};

use crate::clock::Clock;
use crate::config::Rules;
use crate::contract::{Envelope, Outgoing, ParseError};
use crate::domain::PinHasher;
use crate::domain::checked::Checked;
use crate::error::HandlerError;
use crate::manifest::{Binding, Description};
use crate::runtime::{Handling, Message, Registration, Worker, prepare_each, together};
use crate::store::credentials::{self, Saved, Stored};
pub use command::{Command, FirstAccess, PinRequest, Verify};

/// The issuance worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "issuance",
        bindings: &[
            Binding::command("pin.request", &["notify.sms", "notify.post", "pin.issued"]).hashing(),
            Binding::rpc("pin.first_access", &["reply", "pin.activated"])
                .after(&["pin.request"])
                .hashing(),
            Binding::rpc("pin.verify", &["reply"])
                .after(&["pin.request", "pin.first_access"])
                .hashing(),
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

    /// Prepares a command, given its tax code's credential read without a lock when
    /// it checks a presented PIN (see `Command::checked_against`).
    async fn prepare_with(
        &self,
        command: Command,
        latest: Option<Stored>,
    ) -> Result<Prepared, HandlerError> {
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
                    access::check_before(self, latest, presented, InitialPin),
                );
                Prepared::FirstAccess(access, pin?, checked?)
            }
            Command::Verify(verify) => {
                let presented = verify.pin.expose();
                let checked = access::check_before(self, latest, presented, Pin).await?;
                Prepared::Verify(verify, checked)
            }
        })
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
        let latest = match command.checked_against() {
            Some(tax_code) => credentials::latest(&self.pool, tax_code).await?,
            None => None,
        };
        self.prepare_with(command, latest).await
    }

    /// A batch's `pin.first_access` and `pin.verify` read their credentials' hashes
    /// in one statement; then every command is prepared as `prepare` would. When that
    /// read fails, each command reads alone, and fails with its own error.
    async fn prepare_batch(
        &self,
        batch: Vec<(Command, Span)>,
    ) -> Vec<Result<Prepared, HandlerError>> {
        let codes: Vec<&str> = batch
            .iter()
            .filter_map(|(command, _)| command.checked_against())
            .collect();
        let found = credentials::latest_all(&self.pool, &codes).await;
        prepare_each(
            self,
            batch,
            found,
            Command::checked_against,
            |command, latest| self.prepare_with(command, latest),
        )
        .await
    }

    async fn handle<'a>(
        &'a self,
        prepared: &'a Prepared,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        self.handle_staged(prepared, None, message, conn, &mut Vec::new())
            .await
    }

    /// A batch's `pin.request`s insert their credentials in one statement, and its
    /// `pin.first_access` and `pin.verify` lock their credentials in one (see
    /// `Issuance::stage`), then every command is handled in order.
    async fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handling<'a, Prepared>],
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Vec<Outgoing>>, HandlerError> {
        let staged = self.stage(batch, conn).await?;
        let mut later = Vec::new();
        let mut all = Vec::with_capacity(batch.len());
        for (item, staged) in batch.iter().zip(staged) {
            let handled = self.handle_staged(item.prepared, staged, item.message, conn, &mut later);
            all.push(handled.instrument(item.span.clone()).await?);
        }
        credentials::save_all(conn, &later).await?;
        Ok(all)
    }
}

/// What a command's batch did for it before its handler ran (see `Issuance::stage`).
enum Staged<'a> {
    /// A `pin.request`'s credential, inserted (or not) with the batch's.
    Issued(request::Staged<'a>),
    /// The tax code's latest credential, locked with the batch's.
    Latest(Option<credentials::Stored>),
}

impl Issuance {
    /// The batch's work done in one statement for the commands whose tax code no other
    /// command of the batch names (whose outcome cannot depend on the batch's order):
    /// the new credentials of `pin.request`s (see `request::stage`), and the latest
    /// credential of each `pin.first_access` and `pin.verify`, locked, in the order of
    /// their tax codes (fewer than two: left to the handlers).
    async fn stage<'a>(
        &self,
        batch: &'a [Handling<'a, Prepared>],
        conn: &mut PgConnection,
    ) -> Result<Vec<Option<Staged<'a>>>, HandlerError> {
        let codes: Vec<&str> = batch.iter().map(|i| i.prepared.tax_code()).collect();
        let issued = request::stage(self, batch, &codes, conn).await?;
        let mut staged: Vec<Option<Staged<'a>>> =
            issued.into_iter().map(|s| s.map(Staged::Issued)).collect();
        let locking = together(&codes, |i| {
            (!matches!(batch[i].prepared, Prepared::Request(..))).then_some(codes[i])
        });
        let locked: Vec<&str> = locking.iter().map(|&(_, code)| code).collect();
        let mut latest = credentials::latest_for_update_all(conn, &locked).await?;
        for (i, code) in locking {
            staged[i] = Some(Staged::Latest(latest.remove(code)));
        }
        Ok(staged)
    }

    async fn handle_staged(
        &self,
        prepared: &Prepared,
        staged: Option<Staged<'_>>,
        message: &Message<'_>,
        conn: &mut PgConnection,
        later: &mut Vec<Saved>,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        let (issued, batched) = match staged {
            Some(Staged::Issued(issued)) => (Some(issued), None),
            Some(Staged::Latest(latest)) => (None, Some(access::Batched { latest, later })),
            None => (None, None),
        };
        match prepared {
            Prepared::Request(request, pin) => {
                request::handle(self, request, pin.as_ref(), issued, message, conn).await
            }
            Prepared::FirstAccess(access, pin, checked) => {
                let checked = checked.as_ref();
                access::first_access(self, access, pin, checked, batched, message, conn).await
            }
            Prepared::Verify(verify, checked) => {
                access::verify(self, verify, checked.as_ref(), batched, message, conn).await
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
