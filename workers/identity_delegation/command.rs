//! The delegation commands as domain values, read once at the edge through the
//! contract's typed data. Both tax codes' check characters are checked here; a failure
//! is a permanent error.

use chrono::NaiveDate;
use uuid::Uuid;

use crate::contract::commands::{self as wire, CommandData, CommandType};
use crate::contract::{Envelope, ParseError};
use crate::domain::TaxCode;

/// One of the commands the delegation worker takes.
pub enum Command {
    Grant(Grant),
    Revoke(Revoke),
}

/// A checked `delegation.grant`.
pub struct Grant {
    /// Who delegates.
    pub delegator: TaxCode,
    /// Who is delegated.
    pub delegate: TaxCode,
    /// The last day of the delegation, if it has one.
    pub valid_until: Option<NaiveDate>,
    /// The operator who registers it.
    pub operator_id: String,
}

/// A checked `delegation.revoke`.
pub struct Revoke {
    /// From `delegation.granted`.
    pub delegation_id: Uuid,
    /// The operator who revokes it.
    pub operator_id: String,
}

impl Command {
    /// Parses the data of a delegation command.
    pub fn parse(envelope: &Envelope) -> Result<Command, ParseError> {
        match CommandType::parse(&envelope.message_type) {
            Some(CommandType::DelegationGrant) => {
                let data = wire::DelegationGrant::from_envelope(envelope)?;
                Ok(Command::Grant(Grant {
                    delegator: wire::tax_code("delegator_tax_code", &data.delegator_tax_code)?,
                    delegate: wire::tax_code("delegate_tax_code", &data.delegate_tax_code)?,
                    valid_until: data.valid_until,
                    operator_id: data.operator_id,
                }))
            }
            Some(CommandType::DelegationRevoke) => {
                let data = wire::DelegationRevoke::from_envelope(envelope)?;
                Ok(Command::Revoke(Revoke {
                    delegation_id: data.delegation_id,
                    operator_id: data.operator_id,
                }))
            }
            _ => Err(ParseError::UnknownType(envelope.message_type.clone())),
        }
    }
}
