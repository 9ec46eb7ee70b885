//! The reset commands as domain values, read once at the edge from an envelope the
//! schema has already accepted, through the contract's typed data. The tax code's
//! check character is checked here; a failure is a permanent error.

use crate::contract::commands::{self as wire, CommandData, CommandType, Contacts};
use crate::contract::{Envelope, ParseError};
use crate::domain::{ResetToken, TaxCode};

/// One of the commands the reset worker takes.
pub enum Command {
    Request(ResetRequest),
    Confirm(ResetConfirm),
}

/// A checked `pin.reset.request`.
pub struct ResetRequest {
    /// Whose PIN, check character verified.
    pub tax_code: TaxCode,
    /// At least two contacts (the schema says so), to match against those on record.
    pub contacts: Contacts,
}

/// A checked `pin.reset.confirm`.
pub struct ResetConfirm {
    /// The token from the link, as the citizen's browser sent it.
    pub token: ResetToken,
}

impl Command {
    /// Parses the data of a reset command.
    pub fn parse(envelope: &Envelope) -> Result<Command, ParseError> {
        match CommandType::parse(&envelope.message_type) {
            Some(CommandType::PinResetRequest) => {
                let data = wire::PinResetRequest::from_envelope(envelope)?;
                Ok(Command::Request(ResetRequest {
                    tax_code: wire::tax_code("tax_code", &data.tax_code)?,
                    contacts: data.contacts,
                }))
            }
            Some(CommandType::PinResetConfirm) => {
                let data = wire::PinResetConfirm::from_envelope(envelope)?;
                Ok(Command::Confirm(ResetConfirm { token: data.token }))
            }
            _ => Err(ParseError::UnknownType(envelope.message_type.clone())),
        }
    }
}
