//! The typed data of every command in the contract: one struct per message type whose
//! enums are exactly its schema's enums, whose nested shapes are structs and whose
//! secrets are the zeroizing, redacted domain types. `Envelope::parse` checks the data
//! against its schema first; reading it into its struct here is the second half of the
//! edge, and an unknown value is an error in both, never a silent `None`.
//!
//! Values the schema checks exactly as the domain does (mobile, e-mail, country) are
//! domain types here. A tax code stays text: its check character is a domain rule the
//! schema cannot express, and a worker reads it with [`tax_code`], whose refusal names
//! the field. Depends on `domain` only; knows nothing of the broker or the database.

mod account;
mod conversion;
mod delegation;
mod pin;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Envelope, ParseError};
use crate::domain::{Country, Email, Mobile, TaxCode};

pub use account::{
    ContactsUpdate, PhonePinRequest, PhonePinValidity, PhonePinVerify, PinResetConfirm,
    PinResetRequest, PinRevoke, RemoteChannel, StrongAuth,
};
pub use conversion::{
    ApplicationSubmit, AuthenticatedWith, ConversionChannel, ConversionReview, ConversionSubmit,
    Decision, Document, DocumentKind, Fax, IdentityDocument, IdentityDocumentType,
};
pub use delegation::{DelegationGrant, DelegationRevoke, DeliveryReceipt, ReceiptStatus};
pub use pin::{Applicant, Channel, FirstHalfVia, PinFirstAccess, PinRequest, PinVerify};

/// Every command type of the contract: the routing key on `pinflow.commands` and the
/// CloudEvent `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandType {
    PinRequest,
    PinFirstAccess,
    PinVerify,
    ApplicationSubmit,
    ConversionSubmit,
    ConversionReview,
    PinResetRequest,
    PinResetConfirm,
    PinRevoke,
    ContactsUpdate,
    PhonePinRequest,
    PhonePinVerify,
    DelegationGrant,
    DelegationRevoke,
    DeliveryReceipt,
}

impl CommandType {
    /// All of them, in the contract's order.
    pub const ALL: [CommandType; 15] = [
        CommandType::PinRequest,
        CommandType::PinFirstAccess,
        CommandType::PinVerify,
        CommandType::ApplicationSubmit,
        CommandType::ConversionSubmit,
        CommandType::ConversionReview,
        CommandType::PinResetRequest,
        CommandType::PinResetConfirm,
        CommandType::PinRevoke,
        CommandType::ContactsUpdate,
        CommandType::PhonePinRequest,
        CommandType::PhonePinVerify,
        CommandType::DelegationGrant,
        CommandType::DelegationRevoke,
        CommandType::DeliveryReceipt,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandType::PinRequest => "pin.request",
            CommandType::PinFirstAccess => "pin.first_access",
            CommandType::PinVerify => "pin.verify",
            CommandType::ApplicationSubmit => "application.submit",
            CommandType::ConversionSubmit => "conversion.submit",
            CommandType::ConversionReview => "conversion.review",
            CommandType::PinResetRequest => "pin.reset.request",
            CommandType::PinResetConfirm => "pin.reset.confirm",
            CommandType::PinRevoke => "pin.revoke",
            CommandType::ContactsUpdate => "contacts.update",
            CommandType::PhonePinRequest => "phone_pin.request",
            CommandType::PhonePinVerify => "phone_pin.verify",
            CommandType::DelegationGrant => "delegation.grant",
            CommandType::DelegationRevoke => "delegation.revoke",
            CommandType::DeliveryReceipt => "delivery.receipt",
        }
    }

    /// The inverse of `as_str`; `None` for a type the contract does not have.
    pub fn parse(text: &str) -> Option<CommandType> {
        CommandType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether the command needs an answer (RPC): it must carry `reply_to` and
    /// `correlation_id`.
    pub fn is_rpc(self) -> bool {
        matches!(
            self,
            CommandType::PinFirstAccess
                | CommandType::PinVerify
                | CommandType::PhonePinRequest
                | CommandType::PhonePinVerify
        )
    }
}

/// The typed data of one command type.
pub trait CommandData: DeserializeOwned {
    /// The command type whose `data` this is.
    const TYPE: CommandType;

    /// Reads the data of a checked envelope of this type. A failure is permanent:
    /// the schema accepted what the type refuses, or the envelope is another type.
    fn from_envelope(envelope: &Envelope) -> Result<Self, ParseError> {
        if CommandType::parse(&envelope.message_type) != Some(Self::TYPE) {
            return Err(ParseError::UnknownType(envelope.message_type.clone()));
        }
        envelope.data_as()
    }
}

/// `postal_address`: where the second half of an initial PIN goes by post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostalAddress {
    /// Street and number.
    pub line1: String,
    /// More of the address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City or town.
    pub city: String,
    /// Postal code, in the country's own form.
    pub postal_code: String,
    /// Region or state, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The country the letter goes to.
    pub country: Country,
}

/// `health_card`: the tessera sanitaria, which proves who is revoking a PIN online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCard {
    /// Its 20-digit number.
    pub number: String,
    /// Its expiry date.
    pub expires_on: chrono::NaiveDate,
}

/// `contacts`: how to reach the citizen; which ones must be present is each command's
/// rule (its schema's `minProperties`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contacts {
    /// E.164 mobile number, for SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<Mobile>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// Certified e-mail (PEC) address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pec: Option<Email>,
}

/// Reads the tax code in `field`; the refusal names the field and never quotes the
/// value.
pub fn tax_code(field: &str, text: &str) -> Result<TaxCode, ParseError> {
    TaxCode::parse(text).map_err(|e| ParseError::InvalidField {
        field: field.to_owned(),
        reason: e.to_string(),
    })
}
