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

use std::sync::Arc;

use sqlx::{PgConnection, PgPool};

use crate::clock::Clock;
use crate::config::Rules;
use crate::contract::outgoing::encode;
use crate::contract::{Envelope, Outgoing, OutgoingData, ParseError, SecretField};
use crate::domain::checked::Checked;
use crate::domain::{PhonePin, PinHasher};
use crate::error::HandlerError;
use crate::manifest::{Binding, Description, JobSpec};
use crate::runtime::{Message, Registration, Worker};
pub use command::{Command, Request, Verify};

/// The phone-PIN worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "phone_pins",
        bindings: &[
            Binding::rpc("phone_pin.request", &["reply", "phone_pin.issued"]),
            Binding::rpc("phone_pin.verify", &["reply"])
                .after(&["pin.request", "phone_pin.request"]),
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

impl Worker for PhonePins {
    type Command = Command;
    type Prepared = Prepared;

    fn parse(&self, envelope: &Envelope) -> Result<Command, ParseError> {
        Command::parse(envelope)
    }

    async fn prepare(&self, command: Command) -> Result<Prepared, HandlerError> {
        Ok(match command {
            Command::Request(request) => {
                let pin = PhonePin::generate();
                let hash = self.hasher.hash_off_thread(pin.expose().to_owned()).await?;
                Prepared::Request(request, NewPhonePin { pin, hash })
            }
            Command::Verify(verify) => {
                let checked = verify::check_before(self, &verify).await?;
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
        match prepared {
            Prepared::Request(request, pin) => request::handle(request, pin, message, conn).await,
            Prepared::Verify(verify, checked) => {
                verify::handle(self, verify, checked.as_ref(), message, conn).await
            }
        }
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
