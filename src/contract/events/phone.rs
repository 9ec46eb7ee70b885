//! The typed data of the phone-PIN events, `phone_pin.issued` and `phone_pin.locked`,
//! shaped as their schemas. Neither has a field for the phone PIN. Depends on `domain`
//! and the command enums only.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::instant;
use crate::contract::commands::{PhonePinValidity, StrongAuth};
use crate::contract::outgoing::{EventData, OutgoingData};
use crate::domain::TaxCode;

/// `phone_pin.issued`: a phone PIN was issued (and replaced any earlier one).
#[derive(Debug, Clone, Serialize)]
pub struct PhonePinIssued {
    /// Whose phone PIN.
    pub tax_code: TaxCode,
    /// The live credential it was issued against.
    pub credential_id: Uuid,
    /// Until when it works.
    #[serde(serialize_with = "instant")]
    pub valid_until: DateTime<Utc>,
    /// The validity the citizen chose.
    pub validity: PhonePinValidity,
    /// How the citizen logged in to ask for it.
    pub authenticated_with: StrongAuth,
}

impl OutgoingData for PhonePinIssued {
    const TYPE: &'static str = "phone_pin.issued";
}
impl EventData for PhonePinIssued {}

/// `phone_pin.locked`: too many consecutive wrong phone PINs; only a new phone PIN
/// replaces the locked one.
#[derive(Debug, Clone, Serialize)]
pub struct PhonePinLocked {
    /// Whose phone PIN.
    pub tax_code: TaxCode,
    /// The credential it was issued against.
    pub credential_id: Uuid,
    /// The consecutive failures that locked it.
    pub failed_attempts: u32,
}

impl OutgoingData for PhonePinLocked {
    const TYPE: &'static str = "phone_pin.locked";
}
impl EventData for PhonePinLocked {}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::contract::outgoing::encode;
    use crate::contract::schemas::Schemas;

    fn valid<E: EventData>(event: &E) -> serde_json::Value {
        let data = encode(event).unwrap();
        Schemas::embedded()
            .check(E::TYPE, &data)
            .unwrap_or_else(|e| panic!("{}: {e}: {data}", E::TYPE));
        data
    }

    #[test]
    fn every_phone_pin_issued_its_schema_accepts() {
        let validities = [
            (PhonePinValidity::OneDay, "P1D"),
            (PhonePinValidity::SevenDays, "P7D"),
            (PhonePinValidity::OneMonth, "P1M"),
            (PhonePinValidity::ThreeMonths, "P3M"),
        ];
        for (validity, wire) in validities {
            let data = valid(&PhonePinIssued {
                tax_code: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
                credential_id: Uuid::new_v4(),
                valid_until: Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap(),
                validity,
                authenticated_with: StrongAuth::Cie,
            });
            assert_eq!(data["validity"], wire);
            assert_eq!(data["authenticated_with"], "cie");
            assert_eq!(data["valid_until"], "2026-11-29T10:00:00.000Z");
        }
    }

    #[test]
    fn phone_pin_locked_its_schema_accepts() {
        let data = valid(&PhonePinLocked {
            tax_code: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
            credential_id: Uuid::new_v4(),
            failed_attempts: 5,
        });
        assert_eq!(data["failed_attempts"], 5);
    }
}
