//! The typed data of the events pinflow publishes on `pinflow.events`, one struct per
//! event type, shaped as its schema in `schemas/`. Built from typed values, so an enum
//! on the wire can only hold what the schema lists; no event has a field for a secret.
//! Depends on `domain` only.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::commands::Channel;
use super::outgoing::{EventData, OutgoingData};
use crate::domain::TaxCode;
use crate::domain::credential::{Holder, Kind};

/// Writes an instant as pinflow writes them everywhere: RFC 3339, milliseconds, `Z`.
pub(crate) fn instant<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `pin.issued`: a new credential exists and its initial PIN is on its way.
#[derive(Debug, Clone, Serialize)]
pub struct PinIssued {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The new credential.
    pub credential_id: Uuid,
    /// Ordinary (split delivery) or device (issued at a counter).
    pub kind: Kind,
    /// Citizen or intermediary.
    pub holder: Holder,
    /// Where it was requested.
    pub channel: Channel,
    /// Until when the initial PIN may be used for first access.
    #[serde(serialize_with = "instant")]
    pub initial_pin_expires_at: DateTime<Utc>,
}

impl OutgoingData for PinIssued {
    const TYPE: &'static str = "pin.issued";
}
impl EventData for PinIssued {}

/// Why a PIN request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// Resident in Italy or holding an Italian identity document.
    NotEligible,
    /// A live PIN exists for the tax code.
    AlreadyActive,
}

/// What someone who cannot have a PIN uses instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Alternative {
    /// Sistema Pubblico di Identità Digitale.
    Spid,
    /// Carta d'Identità Elettronica.
    Cie,
    /// Carta Nazionale dei Servizi.
    Cns,
}

impl Alternative {
    /// All of them, in the order the contract lists them.
    pub const ALL: [Alternative; 3] = [Alternative::Spid, Alternative::Cie, Alternative::Cns];
}

/// `pin.request.rejected`: no PIN, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PinRequestRejected {
    /// Whose request.
    pub tax_code: TaxCode,
    /// Why.
    pub reason: RejectionReason,
    /// What to use instead (only for `not_eligible`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
}

impl PinRequestRejected {
    /// Not eligible: pointed to SPID, CIE or CNS.
    pub fn not_eligible(tax_code: TaxCode) -> PinRequestRejected {
        PinRequestRejected {
            tax_code,
            reason: RejectionReason::NotEligible,
            alternatives: Alternative::ALL.to_vec(),
        }
    }

    /// A live PIN exists already.
    pub fn already_active(tax_code: TaxCode) -> PinRequestRejected {
        PinRequestRejected {
            tax_code,
            reason: RejectionReason::AlreadyActive,
            alternatives: Vec::new(),
        }
    }
}

impl OutgoingData for PinRequestRejected {
    const TYPE: &'static str = "pin.request.rejected";
}
impl EventData for PinRequestRejected {}

/// `pin.activated`: first access succeeded and the validity period started.
#[derive(Debug, Clone, Serialize)]
pub struct PinActivated {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The credential.
    pub credential_id: Uuid,
    /// Ordinary or device.
    pub kind: Kind,
    /// Until when the 8-character PIN works.
    #[serde(serialize_with = "instant")]
    pub valid_until: DateTime<Utc>,
}

impl OutgoingData for PinActivated {
    const TYPE: &'static str = "pin.activated";
}
impl EventData for PinActivated {}

/// `pin.locked`: too many consecutive failures; only a reset unlocks.
#[derive(Debug, Clone, Serialize)]
pub struct PinLocked {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The credential.
    pub credential_id: Uuid,
    /// The consecutive failures that locked it.
    pub failed_attempts: u32,
}

impl OutgoingData for PinLocked {
    const TYPE: &'static str = "pin.locked";
}
impl EventData for PinLocked {}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::Value;

    use super::*;
    use crate::contract::outgoing::encode;
    use crate::contract::schemas::Schemas;

    fn tax_code() -> TaxCode {
        TaxCode::parse("RSSMRA85T10A562S").unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
    }

    fn valid<E: EventData>(event: &E) -> Value {
        let data = encode(event).unwrap();
        Schemas::embedded()
            .check(E::TYPE, &data)
            .unwrap_or_else(|e| panic!("{}: {e}: {data}", E::TYPE));
        data
    }

    #[test]
    fn every_pin_issued_its_schema_accepts() {
        for (kind, holder, channel) in [
            (Kind::Ordinary, Holder::Citizen, Channel::Online),
            (Kind::Ordinary, Holder::Intermediary, Channel::ContactCenter),
            (Kind::Device, Holder::Citizen, Channel::Office),
        ] {
            let data = valid(&PinIssued {
                tax_code: tax_code(),
                credential_id: Uuid::new_v4(),
                kind,
                holder,
                channel,
                initial_pin_expires_at: at(),
            });
            assert_eq!(data["kind"], kind.as_str());
            assert_eq!(data["holder"], holder.as_str());
            assert_eq!(data["channel"], channel.as_str());
            assert_eq!(data["initial_pin_expires_at"], "2026-11-22T10:00:00.000Z");
        }
    }

    #[test]
    fn both_rejections_their_schema_accepts_and_only_not_eligible_lists_alternatives() {
        let data = valid(&PinRequestRejected::not_eligible(tax_code()));
        assert_eq!(data["reason"], "not_eligible");
        assert_eq!(
            data["alternatives"],
            serde_json::json!(["SPID", "CIE", "CNS"])
        );
        let data = valid(&PinRequestRejected::already_active(tax_code()));
        assert_eq!(data["reason"], "already_active");
        assert!(data.get("alternatives").is_none());
    }

    #[test]
    fn activated_and_locked_their_schemas_accept() {
        let data = valid(&PinActivated {
            tax_code: tax_code(),
            credential_id: Uuid::new_v4(),
            kind: Kind::Device,
            valid_until: at(),
        });
        assert_eq!(data["valid_until"], "2026-11-22T10:00:00.000Z");
        let data = valid(&PinLocked {
            tax_code: tax_code(),
            credential_id: Uuid::new_v4(),
            failed_attempts: 5,
        });
        assert_eq!(data["failed_attempts"], 5);
    }
}

// Phone PINs, delegation of digital identity and delivery receipts: one file each.
mod delegation;
mod delivery;
mod phone;

pub use delegation::{
    DelegationExpired, DelegationGranted, DelegationRefusal, DelegationRejected, DelegationRevoked,
};
pub use delivery::{DeliveryFailure, PinDeliveryFailed, PinPart};
pub use phone::{PhonePinIssued, PhonePinLocked};

// The events of the device-PIN flow (the verification and conversion workers).
mod device;
pub use device::{
    ApplicationAccepted, ApplicationHeld, ApplicationReleased, ConversionRejected,
    ConversionReviewRejected, ConversionReviewRequested, HoldReason, PinConverted, ReviewChannel,
    ReviewRefusal,
};
