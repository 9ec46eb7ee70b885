//! The automatic checks one by one, and all of them at once.

use chrono::{Duration, TimeZone};
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::domain::credential::{Holder, Kind, Status};

const MAX: u64 = 10 * 1024 * 1024;
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
}

fn document(kind: &str, media_type: &str, size: u64, sha256: &str) -> Value {
    json!({ "kind": kind, "media_type": media_type, "size_bytes": size, "sha256": sha256,
            "uri": "s3://docs/x" })
}

fn check(documents: Value, expires_on: &str) -> Vec<&'static str> {
    let documents: Vec<Document> = serde_json::from_value(documents).unwrap();
    let identity: IdentityDocument = serde_json::from_value(json!({
        "type": "passport", "number": "C01X00T47", "issuing_country": "DE", "expires_on": expires_on
    }))
    .unwrap();
    super::documents(&documents, &identity, today(), MAX)
        .into_iter()
        .map(Failure::as_str)
        .collect()
}

fn good() -> Value {
    json!([
        document("request_form", "application/pdf", 1, SHA),
        document("identity_document", "image/jpeg", MAX, &SHA.to_uppercase()),
    ])
}

#[test]
fn good_documents_pass_and_the_limits_are_inclusive() {
    assert!(
        check(good(), "2026-11-22").is_empty(),
        "valid through its expiry day"
    );
    let mut all_types = good();
    for media_type in ["image/png", "image/tiff", "Application/PDF; version=1.7"] {
        all_types
            .as_array_mut()
            .unwrap()
            .push(document("request_form", media_type, 10, SHA));
    }
    assert!(check(all_types, "2030-01-01").is_empty());
}

#[test]
fn each_failing_check_is_named() {
    let cases = [
        (
            json!([document("identity_document", "image/png", 5, SHA)]),
            "missing_request_form",
        ),
        (
            json!([document("request_form", "image/png", 5, SHA)]),
            "missing_identity_document",
        ),
        (
            json!([
                document("request_form", "image/gif", 5, SHA),
                document("identity_document", "image/png", 5, SHA)
            ]),
            "unsupported_media_type",
        ),
        (
            json!([
                document("request_form", "application/pdf", 0, SHA),
                document("identity_document", "image/png", 5, SHA)
            ]),
            "empty_document",
        ),
        (
            json!([
                document("request_form", "application/pdf", MAX + 1, SHA),
                document("identity_document", "image/png", 5, SHA)
            ]),
            "document_too_large",
        ),
        (
            json!([
                document("request_form", "application/pdf", 5, &SHA[1..]),
                document("identity_document", "image/png", 5, SHA)
            ]),
            "malformed_sha256",
        ),
        (
            json!([
                document("request_form", "application/pdf", 5, &SHA.replace('9', "g")),
                document("identity_document", "image/png", 5, SHA)
            ]),
            "malformed_sha256",
        ),
    ];
    for (documents, expected) in cases {
        assert_eq!(check(documents, "2030-01-01"), vec![expected]);
    }
    assert_eq!(
        check(good(), "2026-11-21"),
        vec!["identity_document_expired"]
    );
}

#[test]
fn every_failure_is_reported_at_once_each_name_once_in_the_contracts_order() {
    let documents = json!([
        document("identity_document", "text/plain", 0, "abc"),
        document("identity_document", "image/gif", MAX * 2, ""),
    ]);
    assert_eq!(
        check(documents, "2020-01-01"),
        vec![
            "missing_request_form",
            "unsupported_media_type",
            "empty_document",
            "document_too_large",
            "malformed_sha256",
            "identity_document_expired",
        ]
    );
}

#[test]
fn only_a_live_ordinary_pin_passes_and_each_other_state_is_named() {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let active = Credential {
        id: Uuid::nil(),
        kind: Kind::Ordinary,
        holder: Holder::Citizen,
        status: Status::Active,
        initial_pin_expires_at: None,
        activated_at: Some(now - Duration::days(10)),
        valid_until: Some(now + Duration::days(170)),
        failed_attempts: 0,
    };
    assert_eq!(pin(Some(&active), now), Ok(()));
    assert_eq!(pin(None, now), Err(Failure::PinNotFound));
    let later = now + Duration::days(171);
    assert_eq!(pin(Some(&active), later), Err(Failure::PinExpired));
    let revoked = Credential {
        status: Status::Revoked,
        ..active.clone()
    };
    assert_eq!(pin(Some(&revoked), now), Err(Failure::PinRevoked));
    let device = Credential {
        kind: Kind::Device,
        ..active
    };
    assert_eq!(pin(Some(&device), now), Err(Failure::PinAlreadyDevice));
    let names: Vec<_> = [
        Failure::PinNotFound,
        Failure::PinExpired,
        Failure::PinRevoked,
        Failure::PinAlreadyDevice,
    ]
    .map(Failure::as_str)
    .to_vec();
    assert_eq!(
        names,
        [
            "pin_not_found",
            "pin_expired",
            "pin_revoked",
            "pin_already_device"
        ]
    );
}
