//! The wire contract: the CloudEvent envelope, validation against `schemas/`, the typed
//! data of every command, and the typed shapes of what pinflow publishes. Parse at the
//! edge: bytes become a checked `Envelope` here, its data a typed command struct, and
//! workers turn that into their domain values.
//! Knows nothing of the broker or the database.

pub mod account_events;
pub mod commands;
pub mod envelope;
pub mod events;
pub mod outgoing;
pub mod replies;
pub mod schemas;
pub mod trace;

pub use commands::{CommandData, CommandType};
pub use envelope::{Envelope, ParseError};
pub use outgoing::{
    Carries, Destination, EventData, Notice, NotifyChannel, Outgoing, OutgoingData, SecretField,
};

/// The CloudEvents content type of every body pinflow reads and writes.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The `source` attribute of everything pinflow publishes.
pub const SOURCE: &str = "pinflow";

/// Top-level `data` fields that hold a secret in some command or reply. Their values
/// never appear in logs, errors or dead-letter copies.
pub const SECRET_FIELDS: &[&str] = &["pin", "initial_pin", "phone_pin", "token", "secret"];
