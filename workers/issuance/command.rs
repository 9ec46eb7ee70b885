//! The issuance commands as domain values, read once at the edge from an envelope the
//! schema has already accepted, through the contract's typed data. The tax code's
//! check character is checked here; a failure is a permanent error.

use chrono::NaiveDate;

use crate::contract::commands::{
    self as wire, Channel, CommandData, CommandType, Contacts, FirstHalfVia, HealthCard,
    PostalAddress,
};
use crate::contract::{Envelope, ParseError};
use crate::domain::credential::Holder;
use crate::domain::{Country, InitialPin, Pin, TaxCode};

/// One of the commands the issuance worker takes.
pub enum Command {
    Request(Box<PinRequest>),
    FirstAccess(FirstAccess),
    Verify(Verify),
}

/// A checked `pin.request`.
pub struct PinRequest {
    /// Whose PIN, check character verified.
    pub tax_code: TaxCode,
    /// Decides the kind of PIN and how it is delivered.
    pub channel: Channel,
    /// The operator, for `contact_center` and `office`.
    pub operator_id: Option<String>,
    /// The counter, for `office`.
    pub office_id: Option<String>,
    /// Decides the validity period.
    pub holder: Holder,
    /// The applicant's given name.
    pub given_name: String,
    /// The applicant's family name.
    pub family_name: String,
    /// The applicant's date of birth.
    pub birth_date: NaiveDate,
    /// Where the applicant lives.
    pub residence_country: Country,
    /// Whether the applicant has an Italian identity document.
    pub italian_id_document: bool,
    /// The health card, if given.
    pub health_card: Option<HealthCard>,
    /// Where the second half goes by post.
    pub postal_address: PostalAddress,
    /// At least one contact.
    pub contacts: Contacts,
    /// Required unless the channel is `office` (the schema says so).
    pub first_half_via: Option<FirstHalfVia>,
}

impl PinRequest {
    /// Since 1 October 2021 a PIN goes only to people who reside abroad and have no
    /// Italian identity document.
    pub fn is_eligible(&self) -> bool {
        self.residence_country != Country::ITALY && !self.italian_id_document
    }

    /// Who asked: the operator where there is one, else the upstream system.
    pub fn actor<'a>(&'a self, source: &'a str) -> &'a str {
        self.operator_id.as_deref().unwrap_or(source)
    }

    fn from_wire(tax_code: TaxCode, data: wire::PinRequest) -> PinRequest {
        let applicant = data.applicant;
        PinRequest {
            tax_code,
            channel: data.channel,
            operator_id: data.operator_id,
            office_id: data.office_id,
            holder: data.holder,
            given_name: applicant.given_name,
            family_name: applicant.family_name,
            birth_date: applicant.birth_date,
            residence_country: applicant.residence_country,
            italian_id_document: applicant.italian_id_document,
            health_card: applicant.health_card,
            postal_address: data.postal_address,
            contacts: data.contacts,
            first_half_via: data.first_half_via,
        }
    }
}

/// A checked `pin.first_access`.
pub struct FirstAccess {
    /// Whose PIN, check character verified.
    pub tax_code: TaxCode,
    /// The initial PIN as typed by the citizen.
    pub initial_pin: InitialPin,
}

/// A checked `pin.verify`.
pub struct Verify {
    /// Whose PIN, check character verified.
    pub tax_code: TaxCode,
    /// The PIN as typed by the citizen.
    pub pin: Pin,
}

impl Command {
    /// The tax code whose stored hash preparing the command checks a presented PIN
    /// against: `pin.first_access` and `pin.verify` (see `access::check_before`).
    pub fn checked_against(&self) -> Option<&str> {
        match self {
            Command::Request(_) => None,
            Command::FirstAccess(access) => Some(access.tax_code.as_str()),
            Command::Verify(verify) => Some(verify.tax_code.as_str()),
        }
    }

    /// Parses the data of an issuance command.
    pub fn parse(envelope: &Envelope) -> Result<Command, ParseError> {
        match CommandType::parse(&envelope.message_type) {
            Some(CommandType::PinRequest) => {
                let data = wire::PinRequest::from_envelope(envelope)?;
                let tax_code = wire::tax_code("tax_code", &data.applicant.tax_code)?;
                Ok(Command::Request(Box::new(PinRequest::from_wire(
                    tax_code, data,
                ))))
            }
            Some(CommandType::PinFirstAccess) => {
                let data = wire::PinFirstAccess::from_envelope(envelope)?;
                Ok(Command::FirstAccess(FirstAccess {
                    tax_code: wire::tax_code("tax_code", &data.tax_code)?,
                    initial_pin: data.initial_pin,
                }))
            }
            Some(CommandType::PinVerify) => {
                let data = wire::PinVerify::from_envelope(envelope)?;
                Ok(Command::Verify(Verify {
                    tax_code: wire::tax_code("tax_code", &data.tax_code)?,
                    pin: data.pin,
                }))
            }
            _ => Err(ParseError::UnknownType(envelope.message_type.clone())),
        }
    }
}
