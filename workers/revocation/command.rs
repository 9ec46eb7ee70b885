//! The revocation worker's commands as domain values, read once at the edge from an
//! envelope the schema has already accepted, through the contract's typed data. Who
//! answers for a command (the citizen's proofs online, an operator at the contact
//! center) becomes one value here, so no handler looks at the channel to find out.

use crate::contract::commands::{
    self as wire, CommandData, CommandType, HealthCard, RemoteChannel,
};
use crate::contract::{Envelope, ParseError};
use crate::domain::{Email, Mobile, TaxCode};

/// One of the commands the revocation worker takes.
pub enum Command {
    Revoke(Revoke),
    Contacts(ContactsChange),
}

/// Who answers for a revocation.
pub enum Proof {
    /// Online: the citizen's health card and an e-mail or PEC, to match the record.
    Citizen {
        /// The tessera sanitaria, number and expiry date.
        health_card: HealthCard,
        /// An e-mail or PEC address.
        email_or_pec: Email,
    },
    /// At the contact center: the operator who took the call.
    Operator(String),
}

/// A checked `pin.revoke`.
pub struct Revoke {
    /// Whose PIN, check character verified.
    pub tax_code: TaxCode,
    /// Where it was asked for.
    pub channel: RemoteChannel,
    /// Who answers for it.
    pub proof: Proof,
    /// Free text, for the audit.
    pub reason: Option<String>,
}

/// A checked `contacts.update`.
pub struct ContactsChange {
    /// Whose contacts, check character verified.
    pub tax_code: TaxCode,
    /// Where it was asked for.
    pub channel: RemoteChannel,
    /// The operator, at the contact center.
    pub operator_id: Option<String>,
    /// A new mobile number.
    pub mobile: Option<Mobile>,
    /// A new e-mail address.
    pub email: Option<Email>,
    /// A new PEC address.
    pub pec: Option<Email>,
}

fn required(field: &str, channel: &str) -> ParseError {
    ParseError::InvalidField {
        field: field.to_owned(),
        reason: format!("required when channel is {channel}"),
    }
}

fn proof(data: wire::PinRevoke) -> Result<(Proof, Option<String>), ParseError> {
    let proof = match data.channel {
        RemoteChannel::Online => Proof::Citizen {
            health_card: data
                .health_card
                .ok_or_else(|| required("health_card", "online"))?,
            email_or_pec: data
                .email_or_pec
                .ok_or_else(|| required("email_or_pec", "online"))?,
        },
        RemoteChannel::ContactCenter => Proof::Operator(
            data.operator_id
                .ok_or_else(|| required("operator_id", "contact_center"))?,
        ),
    };
    Ok((proof, data.reason))
}

impl Command {
    /// Parses the data of a revocation worker's command.
    pub fn parse(envelope: &Envelope) -> Result<Command, ParseError> {
        match CommandType::parse(&envelope.message_type) {
            Some(CommandType::PinRevoke) => {
                let data = wire::PinRevoke::from_envelope(envelope)?;
                let tax_code = wire::tax_code("tax_code", &data.tax_code)?;
                let channel = data.channel;
                let (proof, reason) = proof(data)?;
                Ok(Command::Revoke(Revoke {
                    tax_code,
                    channel,
                    proof,
                    reason,
                }))
            }
            Some(CommandType::ContactsUpdate) => {
                let data = wire::ContactsUpdate::from_envelope(envelope)?;
                if data.channel == RemoteChannel::ContactCenter && data.operator_id.is_none() {
                    return Err(required("operator_id", "contact_center"));
                }
                Ok(Command::Contacts(ContactsChange {
                    tax_code: wire::tax_code("tax_code", &data.tax_code)?,
                    channel: data.channel,
                    operator_id: data.operator_id,
                    mobile: data.mobile,
                    email: data.email,
                    pec: data.pec,
                }))
            }
            _ => Err(ParseError::UnknownType(envelope.message_type.clone())),
        }
    }
}
