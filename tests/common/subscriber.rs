//! A test-only worker that subscribes to `pin.issued` on `pinflow.events` and records,
//! in a table of the test's database, each event it handles: it proves that workers
//! consume each other's events, each with its own inbox.

use pinflow::contract::{Envelope, Outgoing, ParseError};
use pinflow::error::HandlerError;
use pinflow::manifest::{Binding, Description};
use pinflow::runtime::{Message, Registration, Worker};
use sqlx::PgConnection;

/// Records the `pin.issued` events it handles under its name.
pub struct Recorder(pub &'static str);

/// The table the recorders write to; create it before starting them.
pub const TABLE: &str = "create table seen_events (
    worker text not null, message_id text not null, credential_id text not null,
    at timestamptz not null default now())";

impl Worker for Recorder {
    type Command = String;
    type Prepared = String;

    fn parse(&self, envelope: &Envelope) -> Result<String, ParseError> {
        credential_of(envelope)
    }

    async fn prepare(&self, command: String) -> Result<String, HandlerError> {
        Ok(command)
    }

    async fn handle<'a>(
        &'a self,
        credential_id: &'a String,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        sqlx::query(
            "insert into seen_events (worker, message_id, credential_id) values ($1, $2, $3)",
        )
        .bind(self.0)
        .bind(&message.envelope.id)
        .bind(credential_id)
        .execute(conn)
        .await?;
        Ok(Vec::new())
    }
}

fn credential_of(envelope: &Envelope) -> Result<String, ParseError> {
    envelope.data["credential_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or(ParseError::InvalidField {
            field: "credential_id".into(),
            reason: "missing".into(),
        })
}

/// The first recorder, `audit_a`.
pub const AUDIT_A: Registration = Registration {
    description: Description {
        name: "audit_a",
        bindings: &[Binding::event("pin.issued", &[])],
        jobs: &[],
    },
    start: |starter| starter.consume(Recorder("audit_a")),
    parse: |envelope| credential_of(envelope).map(drop),
};

/// A second recorder, `audit_b`, on the same event.
pub const AUDIT_B: Registration = Registration {
    description: Description {
        name: "audit_b",
        bindings: &[Binding::event("pin.issued", &[])],
        jobs: &[],
    },
    start: |starter| starter.consume(Recorder("audit_b")),
    parse: |envelope| credential_of(envelope).map(drop),
};
