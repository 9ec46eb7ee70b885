//! The data of the commands that look after an existing credential: reset, revoke,
//! contacts and phone PINs, as in their files under `schemas/`.

use serde::{Deserialize, Serialize};

use super::{CommandData, CommandType, Contacts, HealthCard};
use crate::domain::{Email, Mobile, PhonePin, ResetToken};

/// `pin.reset.request`: lost PIN, ask for a reset link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinResetRequest {
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// At least two contacts, to be matched against those on record.
    pub contacts: Contacts,
}

impl CommandData for PinResetRequest {
    const TYPE: CommandType = CommandType::PinResetRequest;
}

/// `pin.reset.confirm`: the citizen followed the reset link.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinResetConfirm {
    /// The single-use token from the link.
    pub token: ResetToken,
}

impl CommandData for PinResetConfirm {
    const TYPE: CommandType = CommandType::PinResetConfirm;
}

/// The channels that can revoke a PIN or change contacts: no counter is involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteChannel {
    /// The citizen portal: the citizen proves who they are with what is on record.
    Online,
    /// The contact center: an operator answers for it.
    ContactCenter,
}

/// `pin.revoke`: revoke a lost PIN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRevoke {
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// Where the revocation was asked for.
    pub channel: RemoteChannel,
    /// Required online: must match the card on record.
    pub health_card: Option<HealthCard>,
    /// Required online: must match the e-mail or PEC on record.
    pub email_or_pec: Option<Email>,
    /// Required at the contact center.
    pub operator_id: Option<String>,
    /// Free text, for the audit.
    pub reason: Option<String>,
}

impl CommandData for PinRevoke {
    const TYPE: CommandType = CommandType::PinRevoke;
}

/// `contacts.update`: change or add contacts (at least one of them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsUpdate {
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// Where the change was asked for.
    pub channel: RemoteChannel,
    /// Required at the contact center.
    pub operator_id: Option<String>,
    /// A new mobile number.
    pub mobile: Option<Mobile>,
    /// A new e-mail address.
    pub email: Option<Email>,
    /// A new PEC address.
    pub pec: Option<Email>,
}

impl CommandData for ContactsUpdate {
    const TYPE: CommandType = CommandType::ContactsUpdate;
}

/// How a caller proved who they are before asking for a phone PIN: only strong,
/// device-level means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrongAuth {
    /// Sistema Pubblico di Identità Digitale.
    Spid,
    /// Carta d'Identità Elettronica.
    Cie,
    /// Carta Nazionale dei Servizi.
    Cns,
}

impl StrongAuth {
    /// The name on the wire and in the database (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            StrongAuth::Spid => "spid",
            StrongAuth::Cie => "cie",
            StrongAuth::Cns => "cns",
        }
    }
}

/// How long a phone PIN lasts: the ISO 8601 durations the contract allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhonePinValidity {
    /// `P1D`.
    #[serde(rename = "P1D")]
    OneDay,
    /// `P7D`.
    #[serde(rename = "P7D")]
    SevenDays,
    /// `P1M`.
    #[serde(rename = "P1M")]
    OneMonth,
    /// `P3M`.
    #[serde(rename = "P3M")]
    ThreeMonths,
}

impl PhonePinValidity {
    /// The name on the wire and in the database (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            PhonePinValidity::OneDay => "P1D",
            PhonePinValidity::SevenDays => "P7D",
            PhonePinValidity::OneMonth => "P1M",
            PhonePinValidity::ThreeMonths => "P3M",
        }
    }
}

/// `phone_pin.request` (RPC): a temporary PIN for the contact center.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhonePinRequest {
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// How the caller authenticated.
    pub authenticated_with: StrongAuth,
    /// How long the phone PIN lasts.
    pub validity: PhonePinValidity,
}

impl CommandData for PhonePinRequest {
    const TYPE: CommandType = CommandType::PhonePinRequest;
}

/// `phone_pin.verify` (RPC): an operator checks a caller's phone PIN.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhonePinVerify {
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// The phone PIN the caller said.
    pub phone_pin: PhonePin,
    /// The operator who asks.
    pub operator_id: String,
}

impl CommandData for PhonePinVerify {
    const TYPE: CommandType = CommandType::PhonePinVerify;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_in_the_database_are_the_wire_names() {
        for auth in [StrongAuth::Spid, StrongAuth::Cie, StrongAuth::Cns] {
            assert_eq!(serde_json::to_value(auth).unwrap(), auth.as_str());
        }
        let validities = [
            PhonePinValidity::OneDay,
            PhonePinValidity::SevenDays,
            PhonePinValidity::OneMonth,
            PhonePinValidity::ThreeMonths,
        ];
        for validity in validities {
            assert_eq!(serde_json::to_value(validity).unwrap(), validity.as_str());
        }
    }
}
