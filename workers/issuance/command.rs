//! The issuance commands as typed values, parsed once at the edge from an envelope the
//! schema has already accepted. The tax code's check character and the contacts are
//! checked here; a failure is a permanent error.

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::contract::{Envelope, ParseError};
use crate::domain::{Email, Mobile, TaxCode};

/// One of the commands the issuance worker takes.
pub enum Command {
    Request(Box<PinRequest>),
    FirstAccess(FirstAccess),
    Verify(Verify),
}

#[derive(Deserialize)]
struct RequestData {
    channel: String,
    operator_id: Option<String>,
    office_id: Option<String>,
    holder: String,
    applicant: Applicant,
    postal_address: Value,
    contacts: ContactsData,
    first_half_via: Option<String>,
}

#[derive(Deserialize)]
struct Applicant {
    tax_code: String,
    given_name: String,
    family_name: String,
    birth_date: NaiveDate,
    residence_country: String,
    italian_id_document: bool,
    health_card: Option<Value>,
}

#[derive(Deserialize)]
struct ContactsData {
    mobile: Option<String>,
    email: Option<String>,
    pec: Option<String>,
}

/// Where the first half goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstHalfVia {
    Sms,
    Email,
}

/// A checked `pin.request`.
pub struct PinRequest {
    pub tax_code: TaxCode,
    /// `online`, `contact_center` or `office`.
    pub channel: String,
    pub operator_id: Option<String>,
    pub office_id: Option<String>,
    /// `citizen` or `intermediary`.
    pub holder: String,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: NaiveDate,
    pub residence_country: String,
    pub italian_id_document: bool,
    pub health_card: Option<Value>,
    pub postal_address: Value,
    pub mobile: Option<Mobile>,
    pub email: Option<Email>,
    pub pec: Option<Email>,
    pub first_half_via: Option<FirstHalfVia>,
}

impl PinRequest {
    /// Since 1 October 2021 a PIN goes only to people who reside abroad and have no
    /// Italian identity document.
    pub fn is_eligible(&self) -> bool {
        self.residence_country != "IT" && !self.italian_id_document
    }

    /// The contacts as stored on the credential.
    pub fn contacts_json(&self) -> Value {
        let mut contacts = serde_json::Map::new();
        let mut put = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                contacts.insert(name.to_owned(), Value::String(value.to_owned()));
            }
        };
        put("mobile", self.mobile.as_ref().map(Mobile::as_str));
        put("email", self.email.as_ref().map(Email::as_str));
        put("pec", self.pec.as_ref().map(Email::as_str));
        Value::Object(contacts)
    }

    /// Who asked: the operator where there is one, else the upstream system.
    pub fn actor<'a>(&'a self, source: &'a str) -> &'a str {
        self.operator_id.as_deref().unwrap_or(source)
    }
}

#[derive(Deserialize)]
struct FirstAccessData {
    tax_code: String,
    initial_pin: String,
}

/// A checked `pin.first_access`.
pub struct FirstAccess {
    pub tax_code: TaxCode,
    /// The initial PIN as typed by the citizen.
    pub initial_pin: Zeroizing<String>,
}

#[derive(Deserialize)]
struct VerifyData {
    tax_code: String,
    pin: String,
}

/// A checked `pin.verify`.
pub struct Verify {
    pub tax_code: TaxCode,
    /// The PIN as typed by the citizen.
    pub pin: Zeroizing<String>,
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> ParseError {
    ParseError::InvalidField {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

fn tax_code(text: &str) -> Result<TaxCode, ParseError> {
    TaxCode::parse(text).map_err(|e| invalid("tax_code", e))
}

fn optional<T, E: std::fmt::Display>(
    field: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, ParseError> {
    value
        .map(|v| parse(v).map_err(|e| invalid(field, e)))
        .transpose()
}

impl Command {
    /// Parses the data of an issuance command.
    pub fn parse(envelope: &Envelope) -> Result<Command, ParseError> {
        match envelope.message_type.as_str() {
            "pin.request" => {
                let data: RequestData = envelope.data_as()?;
                let first_half_via = match data.first_half_via.as_deref() {
                    Some("sms") => Some(FirstHalfVia::Sms),
                    Some("email") => Some(FirstHalfVia::Email),
                    _ => None,
                };
                Ok(Command::Request(Box::new(PinRequest {
                    tax_code: tax_code(&data.applicant.tax_code)?,
                    mobile: optional(
                        "contacts.mobile",
                        data.contacts.mobile.as_deref(),
                        Mobile::parse,
                    )?,
                    email: optional(
                        "contacts.email",
                        data.contacts.email.as_deref(),
                        Email::parse,
                    )?,
                    pec: optional("contacts.pec", data.contacts.pec.as_deref(), Email::parse)?,
                    channel: data.channel,
                    operator_id: data.operator_id,
                    office_id: data.office_id,
                    holder: data.holder,
                    given_name: data.applicant.given_name,
                    family_name: data.applicant.family_name,
                    birth_date: data.applicant.birth_date,
                    residence_country: data.applicant.residence_country,
                    italian_id_document: data.applicant.italian_id_document,
                    health_card: data.applicant.health_card,
                    postal_address: data.postal_address,
                    first_half_via,
                })))
            }
            "pin.first_access" => {
                let data: FirstAccessData = envelope.data_as()?;
                Ok(Command::FirstAccess(FirstAccess {
                    tax_code: tax_code(&data.tax_code)?,
                    initial_pin: Zeroizing::new(data.initial_pin),
                }))
            }
            "pin.verify" => {
                let data: VerifyData = envelope.data_as()?;
                Ok(Command::Verify(Verify {
                    tax_code: tax_code(&data.tax_code)?,
                    pin: Zeroizing::new(data.pin),
                }))
            }
            other => Err(ParseError::UnknownType(other.to_owned())),
        }
    }
}
