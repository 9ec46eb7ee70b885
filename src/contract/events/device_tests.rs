//! Every event of the device-PIN flow, built from typed values, is accepted by its
//! schema, and its enums write the schema's names.

use chrono::TimeZone;
use serde_json::{Value, json};

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

fn example_submission() -> (Vec<Document>, IdentityDocument) {
    let event = Schemas::example("conversion.submit").unwrap();
    let data = &event["data"];
    (
        serde_json::from_value(data["documents"].clone()).unwrap(),
        serde_json::from_value(data["identity_document"].clone()).unwrap(),
    )
}

#[test]
fn a_review_request_carries_what_the_operator_looks_at_and_its_schema_accepts_it() {
    let (documents, identity_document) = example_submission();
    let fax: Fax = serde_json::from_value(
        json!({ "sender_number": "+4930123456", "received_at": "2026-11-22T09:58:00Z", "pages": 3 }),
    )
    .unwrap();
    for (channel, fax) in [
        (ReviewChannel::Upload, None),
        (ReviewChannel::Fax, Some(fax)),
    ] {
        let data = valid(&ConversionReviewRequested {
            tax_code: tax_code(),
            conversion_id: Uuid::new_v4(),
            credential_id: Uuid::new_v4(),
            channel,
            documents: documents.clone(),
            identity_document: identity_document.clone(),
            fax: fax.clone(),
            submitted_at: at(),
        });
        assert_eq!(
            data["documents"][1]["uri"],
            "s3://pinflow-docs/2026/11/passport.jpg"
        );
        assert_eq!(data["identity_document"]["type"], "passport");
        assert_eq!(data["identity_document"]["expires_on"], "2031-05-01");
        assert_eq!(data.get("fax").is_some(), channel == ReviewChannel::Fax);
    }
    assert_eq!(ReviewChannel::of(ConversionChannel::Office), None);
    assert_eq!(
        ReviewChannel::of(ConversionChannel::Fax),
        Some(ReviewChannel::Fax)
    );
}

#[test]
fn converted_and_rejected_their_schemas_accept() {
    let data = valid(&PinConverted {
        tax_code: tax_code(),
        credential_id: Uuid::new_v4(),
        conversion_id: Uuid::new_v4(),
    });
    assert_eq!(data["tax_code"], "RSSMRA85T10A562S");
    let data = valid(&ConversionRejected {
        tax_code: tax_code(),
        conversion_id: Uuid::new_v4(),
        reasons: vec!["unsupported_media_type".into(), "malformed_sha256".into()],
    });
    assert_eq!(data["reasons"][1], "malformed_sha256");
}

#[test]
fn every_review_refusal_its_schema_accepts_with_or_without_a_tax_code() {
    let refusals = [
        ReviewRefusal::UnknownConversion,
        ReviewRefusal::AlreadyDecided,
        ReviewRefusal::from(ConvertRefusal::Expired),
        ReviewRefusal::from(ConvertRefusal::Revoked),
        ReviewRefusal::from(ConvertRefusal::AlreadyDevice),
    ];
    let names = [
        "unknown_conversion",
        "already_decided",
        "pin_expired",
        "pin_revoked",
        "pin_already_device",
    ];
    for (reason, name) in refusals.into_iter().zip(names) {
        let known = reason != ReviewRefusal::UnknownConversion;
        let data = valid(&ConversionReviewRejected {
            tax_code: known.then(tax_code),
            conversion_id: Uuid::new_v4(),
            reason,
            decision: Decision::Approved,
            operator_id: "op-17".into(),
        });
        assert_eq!(data["reason"], name);
        assert_eq!(data["decision"], "approved");
        assert_eq!(data.get("tax_code").is_some(), known);
    }
    for refusal in [
        ConvertRefusal::Expired,
        ConvertRefusal::Revoked,
        ConvertRefusal::AlreadyDevice,
    ] {
        let data = encode(&ConversionReviewRejected {
            tax_code: None,
            conversion_id: Uuid::nil(),
            reason: refusal.into(),
            decision: Decision::Rejected,
            operator_id: "op-1".into(),
        })
        .unwrap();
        assert_eq!(data["reason"], refusal.as_str(), "one name for one refusal");
    }
}

#[test]
fn application_events_their_schemas_accept_and_keep_the_filing_time_exactly() {
    let data = valid(&ApplicationAccepted {
        tax_code: tax_code(),
        application_id: "APP-1".into(),
        benefit: "NASpI".into(),
    });
    assert_eq!(data["benefit"], "NASpI");
    let filed_at = Utc
        .with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
        .unwrap()
        .checked_add_signed(chrono::Duration::microseconds(123_456))
        .unwrap();
    for (reason, name) in [
        (HoldReason::OrdinaryPin, "ordinary_pin"),
        (HoldReason::PinRevoked, "pin_revoked"),
    ] {
        let data = valid(&ApplicationHeld {
            tax_code: tax_code(),
            application_id: "APP-1".into(),
            filed_at,
            reason,
            credential_id: None,
        });
        assert_eq!(data["reason"], name);
        assert_eq!(reason.as_str(), name);
        assert_eq!(data["filed_at"], "2026-11-22T10:00:00.123456Z");
    }
    let data = valid(&ApplicationReleased {
        tax_code: tax_code(),
        application_id: "APP-1".into(),
        filed_at: at(),
        credential_id: Uuid::new_v4(),
        benefit: "NASpI".into(),
    });
    assert_eq!(data["filed_at"], "2026-11-22T10:00:00Z");
}
