//! The wire contract: the CloudEvent envelope, validation against `schemas/`, and the
//! shapes of what pinflow publishes. Parse at the edge: bytes become a checked
//! `Envelope` here, and workers turn its data into their typed commands.
//! Knows nothing of the broker or the database.

pub mod envelope;
pub mod outgoing;
pub mod schemas;
pub mod trace;

pub use envelope::{Envelope, ParseError};
pub use outgoing::{Carries, Destination, Notice, NotifyChannel, Outgoing, SecretField};

/// The CloudEvents content type of every body pinflow reads and writes.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The `source` attribute of everything pinflow publishes.
pub const SOURCE: &str = "pinflow";

/// Top-level `data` fields that hold a secret in some command or reply. Their values
/// never appear in logs, errors or dead-letter copies.
pub const SECRET_FIELDS: &[&str] = &["pin", "initial_pin", "phone_pin", "token", "secret"];
