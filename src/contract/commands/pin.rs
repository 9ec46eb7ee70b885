//! The data of `pin.request`, `pin.first_access` and `pin.verify`, as in
//! `schemas/pin.request.json`, `pin.first_access.json` and `pin.verify.json`.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{CommandData, CommandType, Contacts, HealthCard, PostalAddress};
use crate::domain::credential::Holder;
use crate::domain::{Country, InitialPin, Pin};

/// Where a PIN request was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The citizen portal: an ordinary PIN, delivered in two halves.
    Online,
    /// The contact center, with an operator: an ordinary PIN, in two halves.
    ContactCenter,
    /// An office counter: a device PIN, handed over whole.
    Office,
}

impl Channel {
    /// The name on the wire and in the database (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Online => "online",
            Channel::ContactCenter => "contact_center",
            Channel::Office => "office",
        }
    }
}

/// How the first half of a split initial PIN travels (the second goes by post).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstHalfVia {
    /// By SMS to `contacts.mobile`.
    Sms,
    /// By e-mail to `contacts.email`.
    Email,
}

/// `pin.request`: ask for a PIN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// Where it was asked for; decides the kind of PIN and how it is delivered.
    pub channel: Channel,
    /// The operator, required for `contact_center` and `office`.
    pub operator_id: Option<String>,
    /// The counter, required for `office`.
    pub office_id: Option<String>,
    /// Citizen or intermediary: decides the validity period.
    pub holder: Holder,
    /// Who the PIN is for.
    pub applicant: Applicant,
    /// Where the second half goes by post.
    pub postal_address: PostalAddress,
    /// At least one contact.
    pub contacts: Contacts,
    /// Required unless `channel` is `office`.
    pub first_half_via: Option<FirstHalfVia>,
}

/// The person a PIN is requested for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applicant {
    /// Codice fiscale, as text: read it with [`super::tax_code`].
    pub tax_code: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Date of birth.
    pub birth_date: NaiveDate,
    /// Where the applicant lives; a PIN is only for people abroad.
    pub residence_country: Country,
    /// Whether the applicant has an Italian identity document (then: no PIN).
    pub italian_id_document: bool,
    /// The health card, if given.
    pub health_card: Option<HealthCard>,
}

impl CommandData for PinRequest {
    const TYPE: CommandType = CommandType::PinRequest;
}

/// `pin.first_access` (RPC): exchange the initial PIN for the 8-character PIN.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFirstAccess {
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// The initial PIN as typed by the citizen.
    pub initial_pin: InitialPin,
}

impl CommandData for PinFirstAccess {
    const TYPE: CommandType = CommandType::PinFirstAccess;
}

/// `pin.verify` (RPC): check a PIN at login.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinVerify {
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// The PIN as typed by the citizen.
    pub pin: Pin,
}

impl CommandData for PinVerify {
    const TYPE: CommandType = CommandType::PinVerify;
}
