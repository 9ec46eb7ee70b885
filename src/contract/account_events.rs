//! The typed data of the events that follow a credential after issue: the expiry
//! reminder and expiry, reset, revocation and contact changes, each shaped as its
//! schema in `schemas/`. Like `events`, built from typed values only and with no field
//! for a secret. Depends on `domain` and the commands' enums only.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::commands::RemoteChannel;
use super::events::instant;
use super::outgoing::{EventData, OutgoingData};
use crate::domain::TaxCode;
use crate::domain::credential::Kind;

macro_rules! event {
    ($ty:ident, $name:literal) => {
        impl OutgoingData for $ty {
            const TYPE: &'static str = $name;
        }
        impl EventData for $ty {}
    };
}

/// `pin.expiring`: the reminder, a configurable time before the deadline.
#[derive(Debug, Clone, Serialize)]
pub struct PinExpiring {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The credential.
    pub credential_id: Uuid,
    /// When it expires.
    #[serde(serialize_with = "instant")]
    pub valid_until: DateTime<Utc>,
}
event!(PinExpiring, "pin.expiring");

/// Which deadline ended a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deadline {
    /// The validity period that started at first access.
    Validity,
    /// The initial PIN's window, which passed without a first access.
    InitialPin,
}

/// `pin.expired`: a PIN reached its deadline.
#[derive(Debug, Clone, Serialize)]
pub struct PinExpired {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The credential.
    pub credential_id: Uuid,
    /// The deadline (not when the sweep noticed it).
    #[serde(serialize_with = "instant")]
    pub expired_at: DateTime<Utc>,
    /// Which deadline it was.
    pub deadline: Deadline,
}
event!(PinExpired, "pin.expired");

/// `pin.reset`: a new initial PIN replaced the PIN.
#[derive(Debug, Clone, Serialize)]
pub struct PinReset {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The credential, which keeps its id.
    pub credential_id: Uuid,
    /// Ordinary or device: the same as before.
    pub kind: Kind,
    /// Until when the new initial PIN may be used for first access.
    #[serde(serialize_with = "instant")]
    pub initial_pin_expires_at: DateTime<Utc>,
}
event!(PinReset, "pin.reset");

/// Why a reset was refused; never which contact failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetRejection {
    /// Fewer than two of the given contacts are those on record.
    ContactsMismatch,
    /// The token was used, has expired, was replaced by a newer one, or its PIN can
    /// no longer be reset.
    TokenInvalid,
    /// No PIN that a reset could renew (none, revoked, or expired).
    NotFound,
    /// Too many reset requests for the tax code lately; nothing was sent.
    RateLimited,
}

/// `pin.reset.rejected`.
#[derive(Debug, Clone, Serialize)]
pub struct PinResetRejected {
    /// Whose reset.
    pub tax_code: TaxCode,
    /// Why.
    pub reason: ResetRejection,
}
event!(PinResetRejected, "pin.reset.rejected");

/// `pin.revoked`: the PIN never works again.
#[derive(Debug, Clone, Serialize)]
pub struct PinRevoked {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The credential.
    pub credential_id: Uuid,
    /// Where the revocation was asked for.
    pub channel: RemoteChannel,
}
event!(PinRevoked, "pin.revoked");

/// Why a revocation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeRejection {
    /// Online: the health card or the e-mail/PEC is not the one on record (which of
    /// them is not said).
    IdentityMismatch,
    /// No PIN to revoke (none, or revoked already).
    NotFound,
}

/// `pin.revoke.rejected`: nothing was revoked.
#[derive(Debug, Clone, Serialize)]
pub struct PinRevokeRejected {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// Why.
    pub reason: RevokeRejection,
    /// Where the revocation was asked for.
    pub channel: RemoteChannel,
}
event!(PinRevokeRejected, "pin.revoke.rejected");

/// One of the contacts on record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactField {
    Mobile,
    Email,
    Pec,
}

/// `contacts.updated`.
#[derive(Debug, Clone, Serialize)]
pub struct ContactsUpdated {
    /// Whose contacts.
    pub tax_code: TaxCode,
    /// The credential they belong to.
    pub credential_id: Uuid,
    /// Which ones changed (empty when the new values were those on record).
    pub changed: Vec<ContactField>,
}
event!(ContactsUpdated, "contacts.updated");

/// Why a contact change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactsRejection {
    /// No live PIN (none, expired or revoked) whose contacts could change.
    NotFound,
}

/// `contacts.update.rejected`: nothing changed.
#[derive(Debug, Clone, Serialize)]
pub struct ContactsUpdateRejected {
    /// Whose contacts.
    pub tax_code: TaxCode,
    /// Why.
    pub reason: ContactsRejection,
}
event!(ContactsUpdateRejected, "contacts.update.rejected");

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;
    use crate::contract::outgoing::encode;
    use crate::contract::schemas::Schemas;

    fn tax_code() -> TaxCode {
        TaxCode::parse("RSSMRA85T10A562S").unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 5, 22, 10, 0, 0).unwrap()
    }

    fn valid<E: EventData>(event: &E) -> Value {
        let data = encode(event).unwrap();
        Schemas::embedded()
            .check(E::TYPE, &data)
            .unwrap_or_else(|e| panic!("{}: {e}: {data}", E::TYPE));
        data
    }

    #[test]
    fn the_reminder_and_both_expiries_their_schemas_accept() {
        let id = Uuid::new_v4();
        let data = valid(&PinExpiring {
            tax_code: tax_code(),
            credential_id: id,
            valid_until: at(),
        });
        assert_eq!(data["valid_until"], "2027-05-22T10:00:00.000Z");
        for (deadline, text) in [
            (Deadline::Validity, "validity"),
            (Deadline::InitialPin, "initial_pin"),
        ] {
            let data = valid(&PinExpired {
                tax_code: tax_code(),
                credential_id: id,
                expired_at: at(),
                deadline,
            });
            assert_eq!(data["deadline"], text);
            assert_eq!(data["expired_at"], "2027-05-22T10:00:00.000Z");
        }
    }

    #[test]
    fn a_reset_and_every_reset_refusal_their_schemas_accept() {
        let data = valid(&PinReset {
            tax_code: tax_code(),
            credential_id: Uuid::new_v4(),
            kind: Kind::Device,
            initial_pin_expires_at: at(),
        });
        assert_eq!(data["kind"], "device");
        for (reason, text) in [
            (ResetRejection::ContactsMismatch, "contacts_mismatch"),
            (ResetRejection::TokenInvalid, "token_invalid"),
            (ResetRejection::NotFound, "not_found"),
            (ResetRejection::RateLimited, "rate_limited"),
        ] {
            let data = valid(&PinResetRejected {
                tax_code: tax_code(),
                reason,
            });
            assert_eq!(
                data,
                json!({ "tax_code": "RSSMRA85T10A562S", "reason": text })
            );
        }
    }

    #[test]
    fn revocations_and_their_refusals_their_schemas_accept() {
        let data = valid(&PinRevoked {
            tax_code: tax_code(),
            credential_id: Uuid::new_v4(),
            channel: RemoteChannel::ContactCenter,
        });
        assert_eq!(data["channel"], "contact_center");
        for (reason, text) in [
            (RevokeRejection::IdentityMismatch, "identity_mismatch"),
            (RevokeRejection::NotFound, "not_found"),
        ] {
            let data = valid(&PinRevokeRejected {
                tax_code: tax_code(),
                reason,
                channel: RemoteChannel::Online,
            });
            assert_eq!(data["reason"], text);
        }
    }

    #[test]
    fn contact_changes_and_their_refusal_their_schemas_accept() {
        let data = valid(&ContactsUpdated {
            tax_code: tax_code(),
            credential_id: Uuid::new_v4(),
            changed: vec![ContactField::Mobile, ContactField::Email, ContactField::Pec],
        });
        assert_eq!(data["changed"], json!(["mobile", "email", "pec"]));
        let data = valid(&ContactsUpdateRejected {
            tax_code: tax_code(),
            reason: ContactsRejection::NotFound,
        });
        assert_eq!(data["reason"], "not_found");
    }
}
