//! The phone-PIN worker: `phone_pin.request` (a temporary PIN for the contact center,
//! only for a tax code with a live credential, returned once in the reply and kept as
//! a hash; a new one replaces the last), `phone_pin.verify` (an operator checks a
//! caller's phone PIN, with the same lockout as `pin.verify`) and a timed job that
//! clears the hashes of phone PINs past their validity.

mod command;
mod request;
mod state;
mod store;
mod tidy;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tracing::{Instrument as _, Span};

use crate::clock::Clock;
use crate::config::Rules;
use crate::contract::outgoing::encode;
use crate::contract::{Envelope, Outgoing, OutgoingData, ParseError, SecretField};
use crate::domain::checked::Checked;
use crate::domain::{PhonePin, PinHasher};
use crate::error::HandlerError;
use crate::manifest::{Binding, Description, JobSpec};
use crate::runtime::{Handling, Message, Registration, Worker, prepare_each, together};
use crate::store::credentials;
pub use command::{Command, Request, Verify};

/// The phone-PIN worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "phone_pins",
        bindings: &[
            Binding::rpc("phone_pin.request", &["reply", "phone_pin.issued"])
                .after(&["pin.request"])
                .hashing(),
            Binding::rpc("phone_pin.verify", &["reply"])
                .after(&["pin.request", "phone_pin.request"])
                .hashing(),
        ],
        jobs: &[JobSpec {
            name: "tidy",
            interval_setting: "PINFLOW_SWEEP_INTERVAL",
        }],
    },
    start: |starter| {
        starter.consume(PhonePins {
            rules: starter.rules().clone(),
            hasher: starter.hasher().clone(),
            pool: starter.pool().clone(),
            clock: starter.clock().clone(),
        });
        starter.every(tidy::Tidy::new(starter.runtime().sweep_interval));
    },
    parse: |envelope| Command::parse(envelope).map(drop),
};

/// The phone-PIN worker.
pub struct PhonePins {
    /// The lockout threshold (the same as `pin.verify`'s).
    rules: Rules,
    /// Argon2id, run on the hashing threads.
    hasher: PinHasher,
    /// For reading a stored hash before the transaction (see `verify::check_before`).
    pool: PgPool,
    /// The handlers' clock, for the same reads.
    clock: Arc<dyn Clock>,
}

/// A command with its slow part (generating and hashing a new phone PIN, checking a
/// presented one) done.
pub enum Prepared {
    Request(Request, NewPhonePin),
    Verify(Verify, Option<Checked>),
}

/// A phone PIN generated and hashed before the transaction.
pub struct NewPhonePin {
    pin: PhonePin,
    hash: String,
}

impl PhonePins {
    /// Prepares a command, given its tax code's phone PIN read without a lock when it
    /// checks a presented one.
    async fn prepare_with(
        &self,
        command: Command,
        stored: Option<store::Stored>,
    ) -> Result<Prepared, HandlerError> {
        Ok(match command {
            Command::Request(request) => {
                let pin = PhonePin::generate();
                let hash = self.hasher.hash_off_thread(pin.expose().to_owned()).await?;
                Prepared::Request(request, NewPhonePin { pin, hash })
            }
            Command::Verify(verify) => {
                let checked = verify::check_before(self, &verify, stored).await?;
                Prepared::Verify(verify, checked)
            }
        })
    }

    /// Locks the batch's rows before any handler runs, in the one order every
    /// transaction of this worker keeps: first the latest credentials of its
    /// `phone_pin.request`s, then the phone PINs of its tax codes, each in tax-code
    /// order (a lone command's handler keeps it too: a request locks its credential
    /// before it writes its phone PIN, a verify locks only its phone PIN). So two
    /// batches that name the same tax codes, one verifying where the other requests,
    /// wait for each other in that order instead of each holding a row the other
    /// needs (which PostgreSQL would end as a deadlock). A new phone PIN has no row to
    /// lock; its credential's lock keeps two requests from writing it at once.
    ///
    /// The commands whose tax code no other command of the batch names (two or more of
    /// a kind, see `together`) get what was locked for them; the others lock again in
    /// their handlers, rows their transaction already holds. When every command is
    /// such a request, the phone PINs are left to the one statement that writes them
    /// after the handlers (`store::replace_all`, in tax-code order too).
    async fn stage(
        &self,
        batch: &[Handling<'_, Prepared>],
        conn: &mut PgConnection,
    ) -> Result<Vec<Option<Staged>>, HandlerError> {
        let mut staged: Vec<Option<Staged>> = batch.iter().map(|_| None).collect();
        if batch.len() < 2 {
            return Ok(staged);
        }
        let codes: Vec<&str> = batch.iter().map(|i| i.prepared.tax_code()).collect();
        let is_request = |i: usize| matches!(batch[i].prepared, Prepared::Request(..));
        let requested: Vec<&str> = (0..batch.len())
            .filter(|&i| is_request(i))
            .map(|i| codes[i])
            .collect();
        let mut latest = credentials::latest_for_update_all(conn, &requested).await?;
        let requests = together(&codes, |i| is_request(i).then_some(codes[i]));
        let mut found = if requests.len() == batch.len() {
            HashMap::new()
        } else {
            store::for_update_all(conn, &codes).await?
        };
        let verifies = together(&codes, |i| {
            matches!(batch[i].prepared, Prepared::Verify(..)).then_some(codes[i])
        });
        for (i, code) in verifies {
            staged[i] = Some(Staged::PhonePin(verify::Locked(found.remove(code))));
        }
        for (i, code) in requests {
            staged[i] = Some(Staged::Credential(latest.remove(code)));
        }
        Ok(staged)
    }

    async fn handle_staged<'a>(
        &self,
        prepared: &'a Prepared,
        staged: Option<Staged>,
        message: &Message<'_>,
        conn: &mut PgConnection,
        later: &mut Vec<store::Replacement<'a>>,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        match prepared {
            Prepared::Request(request, pin) => {
                let batched = match staged {
                    Some(Staged::Credential(latest)) => Some(request::Batched { latest, later }),
                    _ => None,
                };
                request::handle(request, pin, batched, message, conn).await
            }
            Prepared::Verify(verify, checked) => {
                let locked = match staged {
                    Some(Staged::PhonePin(locked)) => Some(locked),
                    _ => None,
                };
                verify::handle(self, verify, checked.as_ref(), locked, message, conn).await
            }
        }
    }
}

/// What a command's batch did for it before its handler ran (see `PhonePins::stage`).
enum Staged {
    /// A `phone_pin.request`'s latest credential, locked with the batch's.
    Credential(Option<credentials::Stored>),
    /// A `phone_pin.verify`'s phone PIN, locked with the batch's.
    PhonePin(verify::Locked),
}

impl Command {
    /// The tax code whose phone PIN the command checks, if it checks one.
    fn checked_against(&self) -> Option<&str> {
        match self {
            Command::Request(_) => None,
            Command::Verify(verify) => Some(verify.tax_code.as_str()),
        }
    }
}

impl Prepared {
    /// Whose phone PIN the command is about.
    fn tax_code(&self) -> &str {
        match self {
            Prepared::Request(request, _) => request.tax_code.as_str(),
            Prepared::Verify(verify, _) => verify.tax_code.as_str(),
        }
    }
}

impl Worker for PhonePins {
    type Command = Command;
    type Prepared = Prepared;

    fn parse(&self, envelope: &Envelope) -> Result<Command, ParseError> {
        Command::parse(envelope)
    }

    async fn prepare(&self, command: Command) -> Result<Prepared, HandlerError> {
        let stored = match command.checked_against() {
            Some(tax_code) => store::read(&self.pool, tax_code).await?,
            None => None,
        };
        self.prepare_with(command, stored).await
    }

    /// A batch's `phone_pin.verify` read their phone PINs in one statement; then every
    /// command is prepared as `prepare` would. When that read fails, each command reads
    /// alone, and fails with its own error.
    async fn prepare_batch(
        &self,
        batch: Vec<(Command, Span)>,
    ) -> Vec<Result<Prepared, HandlerError>> {
        let codes: Vec<&str> = batch
            .iter()
            .filter_map(|(command, _)| command.checked_against())
            .collect();
        let found = store::read_all(&self.pool, &codes).await;
        prepare_each(
            self,
            batch,
            found,
            Command::checked_against,
            |command, stored| self.prepare_with(command, stored),
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

    /// The batch's rows locked in one statement per kind of command (see
    /// `PhonePins::stage`); then every command is handled in order, and the new phone
    /// PINs of the requests the batch locked for are stored in one statement.
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
        store::replace_all(conn, &later).await?;
        Ok(all)
    }
}

/// The RPC reply to `message` from its typed data.
fn answer<R: OutgoingData>(
    message: &Message<'_>,
    data: &R,
    secret: Option<SecretField>,
) -> Result<Outgoing, HandlerError> {
    Ok(Outgoing::reply(
        &message.envelope.message_type,
        message.reply_to.unwrap_or_default(),
        message.correlation_id,
        encode(data)?,
        secret,
        message.now,
    ))
}
