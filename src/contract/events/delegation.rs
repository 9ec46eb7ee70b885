//! The typed data of the delegation events: `delegation.granted`, `delegation.rejected`,
//! `delegation.revoked` and `delegation.expired`, shaped as their schemas. `tax_code`
//! is always the delegator's. Depends on `domain` only.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::instant;
use crate::contract::outgoing::{EventData, OutgoingData};
use crate::domain::TaxCode;

fn optional_instant<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => instant(t, serializer),
        None => serializer.serialize_none(),
    }
}

/// `delegation.granted`: the delegate may now act for the delegator.
#[derive(Debug, Clone, Serialize)]
pub struct DelegationGranted {
    /// The delegator.
    pub tax_code: TaxCode,
    /// The new delegation, for `delegation.revoke`.
    pub delegation_id: Uuid,
    /// The delegate.
    pub delegate_tax_code: TaxCode,
    /// The last day, as granted; absent for a delegation without an end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<NaiveDate>,
    /// The instant it ends: the start of the day after `valid_until`, Italian time.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_instant"
    )]
    pub ends_at: Option<DateTime<Utc>>,
}

impl OutgoingData for DelegationGranted {
    const TYPE: &'static str = "delegation.granted";
}
impl EventData for DelegationGranted {}

/// Why a `delegation.grant` or `delegation.revoke` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DelegationRefusal {
    /// The delegator named themself as delegate.
    SelfDelegation,
    /// The delegate holds no live credential (none, expired or revoked).
    DelegateNotLive,
    /// The pair already has a live delegation; nothing changed.
    AlreadyDelegated,
    /// `valid_until` is a day that has already ended.
    ValidUntilPast,
    /// The delegation to revoke has already ended (revoked or expired).
    NotLive,
}

/// `delegation.rejected`: a grant or revocation was refused, and why.
#[derive(Debug, Clone, Serialize)]
pub struct DelegationRejected {
    /// The delegator.
    pub tax_code: TaxCode,
    /// Why.
    pub reason: DelegationRefusal,
    /// The delegate named in the command.
    pub delegate_tax_code: TaxCode,
    /// The delegation concerned: the live one for `already_delegated`, the one named
    /// for a refused revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegation_id: Option<Uuid>,
}

impl OutgoingData for DelegationRejected {
    const TYPE: &'static str = "delegation.rejected";
}
impl EventData for DelegationRejected {}

/// `delegation.revoked`: an operator ended a delegation.
#[derive(Debug, Clone, Serialize)]
pub struct DelegationRevoked {
    /// The delegator.
    pub tax_code: TaxCode,
    /// The delegation.
    pub delegation_id: Uuid,
    /// The delegate.
    pub delegate_tax_code: TaxCode,
}

impl OutgoingData for DelegationRevoked {
    const TYPE: &'static str = "delegation.revoked";
}
impl EventData for DelegationRevoked {}

/// `delegation.expired`: a dated delegation reached its end.
#[derive(Debug, Clone, Serialize)]
pub struct DelegationExpired {
    /// The delegator.
    pub tax_code: TaxCode,
    /// The delegation.
    pub delegation_id: Uuid,
    /// The delegate.
    pub delegate_tax_code: TaxCode,
    /// Its last day.
    pub valid_until: NaiveDate,
    /// The instant it ended.
    #[serde(serialize_with = "instant")]
    pub expired_at: DateTime<Utc>,
}

impl OutgoingData for DelegationExpired {
    const TYPE: &'static str = "delegation.expired";
}
impl EventData for DelegationExpired {}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::Value;

    use super::*;
    use crate::contract::outgoing::encode;
    use crate::contract::schemas::Schemas;

    fn delegator() -> TaxCode {
        TaxCode::parse("RSSMRA85T10A562S").unwrap()
    }

    fn delegate() -> TaxCode {
        TaxCode::parse("BNCLRA80A01Z000G").unwrap()
    }

    fn valid<E: EventData>(event: &E) -> Value {
        let data = encode(event).unwrap();
        Schemas::embedded()
            .check(E::TYPE, &data)
            .unwrap_or_else(|e| panic!("{}: {e}: {data}", E::TYPE));
        data
    }

    #[test]
    fn a_grant_with_and_without_an_end_its_schema_accepts() {
        let day = NaiveDate::from_ymd_opt(2030, 1, 15).unwrap();
        let end = Utc.with_ymd_and_hms(2030, 1, 15, 23, 0, 0).unwrap();
        let data = valid(&DelegationGranted {
            tax_code: delegator(),
            delegation_id: Uuid::new_v4(),
            delegate_tax_code: delegate(),
            valid_until: Some(day),
            ends_at: Some(end),
        });
        assert_eq!(data["valid_until"], "2030-01-15");
        assert_eq!(data["ends_at"], "2030-01-15T23:00:00.000Z");
        let data = valid(&DelegationGranted {
            valid_until: None,
            ends_at: None,
            tax_code: delegator(),
            delegation_id: Uuid::new_v4(),
            delegate_tax_code: delegate(),
        });
        assert!(data.get("valid_until").is_none() && data.get("ends_at").is_none());
    }

    #[test]
    fn every_refusal_its_schema_accepts() {
        let reasons = [
            (DelegationRefusal::SelfDelegation, "self_delegation"),
            (DelegationRefusal::DelegateNotLive, "delegate_not_live"),
            (DelegationRefusal::AlreadyDelegated, "already_delegated"),
            (DelegationRefusal::ValidUntilPast, "valid_until_past"),
            (DelegationRefusal::NotLive, "not_live"),
        ];
        for (reason, wire) in reasons {
            let data = valid(&DelegationRejected {
                tax_code: delegator(),
                reason,
                delegate_tax_code: delegate(),
                delegation_id: Some(Uuid::new_v4()),
            });
            assert_eq!(data["reason"], wire);
        }
    }

    #[test]
    fn revoked_and_expired_their_schemas_accept() {
        let id = Uuid::new_v4();
        let data = valid(&DelegationRevoked {
            tax_code: delegator(),
            delegation_id: id,
            delegate_tax_code: delegate(),
        });
        assert_eq!(data["delegation_id"], id.to_string());
        let data = valid(&DelegationExpired {
            tax_code: delegator(),
            delegation_id: id,
            delegate_tax_code: delegate(),
            valid_until: NaiveDate::from_ymd_opt(2030, 7, 15).unwrap(),
            expired_at: Utc.with_ymd_and_hms(2030, 7, 15, 22, 0, 0).unwrap(),
        });
        assert_eq!(data["expired_at"], "2030-07-15T22:00:00.000Z");
    }
}
