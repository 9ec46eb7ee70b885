//! The reset worker: `pin.reset.request` (two of the given contacts must be those on
//! record; a single-use link goes by e-mail or PEC; requests are rate-limited per tax
//! code) and `pin.reset.confirm` (the link's token, once and in time: a new initial
//! PIN of the same kind replaces the PIN at once and lifts a lock; its halves go by
//! SMS and by e-mail or PEC). Tokens are kept only as SHA-256.

mod command;
mod confirm;
mod matching;
mod request;
mod store;

use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::config::Rules;
use crate::contract::account_events::{PinResetRejected, ResetRejection};
use crate::contract::{Envelope, Outgoing, ParseError};
use crate::domain::{PinHasher, TaxCode};
use crate::error::HandlerError;
use crate::manifest::{Binding, Description};
use crate::runtime::{Message, Registration, Worker};
pub use command::{Command, ResetConfirm, ResetRequest};

/// The reset worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "reset",
        bindings: &[
            Binding::command("pin.reset.request", &["notify.email"]),
            Binding::command(
                "pin.reset.confirm",
                &["notify.sms", "notify.email", "pin.reset"],
            )
            .hashing(),
        ],
        jobs: &[],
    },
    start: |starter| {
        starter.consume(Reset {
            rules: starter.rules().clone(),
            hasher: starter.hasher().clone(),
        })
    },
    parse: |envelope| Command::parse(envelope).map(drop),
};

/// The reset worker.
pub struct Reset {
    /// Token TTL, rate limit, initial PIN window.
    rules: Rules,
    /// Argon2id for the new initial PIN, run on the hashing threads.
    hasher: PinHasher,
}

/// A command with its slow part done: the new token, or the presented token's hash
/// and the new initial PIN with its Argon2id hash.
pub enum Prepared {
    Request(ResetRequest, request::NewToken),
    Confirm([u8; 32], confirm::NewInitialPin),
}

/// The SHA-256 of a token, as stored.
fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Worker for Reset {
    type Command = Command;
    type Prepared = Prepared;

    fn parse(&self, envelope: &Envelope) -> Result<Command, ParseError> {
        Command::parse(envelope)
    }

    async fn prepare(&self, command: Command) -> Result<Prepared, HandlerError> {
        Ok(match command {
            Command::Request(request) => Prepared::Request(request, request::NewToken::generate()),
            Command::Confirm(confirm) => Prepared::Confirm(
                sha256(confirm.token.expose()),
                confirm::NewInitialPin::generate(&self.hasher).await?,
            ),
        })
    }

    async fn handle<'a>(
        &'a self,
        prepared: &'a Prepared,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        match prepared {
            Prepared::Request(request, token) => {
                request::handle(self, request, token, message, conn).await
            }
            Prepared::Confirm(sha256, pin) => {
                confirm::handle(self, sha256, pin, message, conn).await
            }
        }
    }
}

/// A refusal: audited, and event `pin.reset.rejected`, which never says which contact
/// failed.
fn refuse(
    message: &Message<'_>,
    tax_code: &TaxCode,
    credential_id: Option<Uuid>,
    reason: ResetRejection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let event = PinResetRejected {
        tax_code: tax_code.clone(),
        reason,
    };
    let detail = crate::contract::outgoing::encode(&event)?;
    message.audit(
        &message.envelope.source,
        "pin.reset.rejected",
        Some(tax_code.as_str()),
        credential_id,
        detail,
    );
    Ok(vec![Outgoing::typed_event(&event, message.now)?])
}
