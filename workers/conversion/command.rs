//! What the conversion worker takes, as domain values, read once at the edge from an
//! envelope its schema has already accepted: two commands through the contract's typed
//! data, and two events that other workers (or this one) publish. Tax codes are
//! checked here; a failure is a permanent error.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::contract::commands::{
    self as wire, AuthenticatedWith, CommandData, CommandType, Decision,
};
use crate::contract::events::PinConverted;
use crate::contract::{Envelope, OutgoingData, ParseError};
use crate::domain::TaxCode;

/// The event the revocation of a PIN publishes (its typed data belongs to the worker
/// that publishes it).
pub const PIN_REVOKED: &str = "pin.revoked";

/// One of the messages the conversion worker takes.
pub enum Command {
    /// `conversion.review`.
    Review(Review),
    /// `application.submit`.
    Application(Application),
    /// The event `pin.converted`: release the citizen's held applications.
    Converted(CredentialEvent),
    /// The event `pin.revoked`: held applications stay held and say so.
    Revoked(CredentialEvent),
}

/// A checked `conversion.review`.
pub struct Review {
    /// The conversion decided on.
    pub conversion_id: Uuid,
    /// Approved or rejected.
    pub decision: Decision,
    /// The operator's reasons for a rejection (may be empty).
    pub reasons: Vec<String>,
    /// Who decided.
    pub operator_id: String,
}

/// A checked `application.submit`.
pub struct Application {
    /// The applicant, check character verified.
    pub tax_code: TaxCode,
    /// The portal's id.
    pub application_id: String,
    /// What is applied for.
    pub benefit: String,
    /// How the applicant logged in.
    pub authenticated_with: AuthenticatedWith,
    /// The legal filing time: the envelope's `time` (to the microsecond, as stored),
    /// or when pinflow received it if the portal sent none.
    pub filed_at: Option<DateTime<Utc>>,
}

/// An event about a credential: whose, and which.
pub struct CredentialEvent {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The credential.
    pub credential_id: Uuid,
}

/// The part of a credential event this worker reads; events may carry more.
#[derive(Deserialize)]
struct CredentialEventData {
    tax_code: String,
    credential_id: Uuid,
}

impl Command {
    /// Parses a message of one of the conversion worker's types.
    pub fn parse(envelope: &Envelope) -> Result<Command, ParseError> {
        match CommandType::parse(&envelope.message_type) {
            Some(CommandType::ConversionReview) => {
                let data = wire::ConversionReview::from_envelope(envelope)?;
                Ok(Command::Review(Review {
                    conversion_id: data.conversion_id,
                    decision: data.decision,
                    reasons: data.reasons,
                    operator_id: data.operator_id,
                }))
            }
            Some(CommandType::ApplicationSubmit) => {
                let data = wire::ApplicationSubmit::from_envelope(envelope)?;
                Ok(Command::Application(Application {
                    tax_code: wire::tax_code("tax_code", &data.tax_code)?,
                    application_id: data.application_id,
                    benefit: data.benefit,
                    authenticated_with: data.authenticated_with,
                    filed_at: envelope.time.map(|t| t.trunc_subsecs(6)),
                }))
            }
            Some(_) => Err(ParseError::UnknownType(envelope.message_type.clone())),
            None if envelope.message_type == PinConverted::TYPE => {
                Ok(Command::Converted(credential_event(envelope)?))
            }
            None if envelope.message_type == PIN_REVOKED => {
                Ok(Command::Revoked(credential_event(envelope)?))
            }
            None => Err(ParseError::UnknownType(envelope.message_type.clone())),
        }
    }
}

fn credential_event(envelope: &Envelope) -> Result<CredentialEvent, ParseError> {
    let data: CredentialEventData = envelope.data_as()?;
    Ok(CredentialEvent {
        tax_code: wire::tax_code("tax_code", &data.tax_code)?,
        credential_id: data.credential_id,
    })
}
