//! The contract's files: every schema compiles, every example command is valid, and
//! the schemas refuse what the contract forbids.

use std::path::Path;

use pinflow::contract::schemas::Schemas;
use serde_json::{Value, json};

fn example(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples")
        .join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

const COMMANDS: &[&str] = &[
    "pin.request",
    "pin.first_access",
    "pin.verify",
    "application.submit",
    "conversion.submit",
    "conversion.review",
    "pin.reset.request",
    "pin.reset.confirm",
    "pin.revoke",
    "contacts.update",
    "phone_pin.request",
    "phone_pin.verify",
    "delegation.grant",
    "delegation.revoke",
    "delivery.receipt",
];

const EVENTS: &[&str] = &[
    "pin.issued",
    "pin.request.rejected",
    "pin.activated",
    "pin.locked",
    "pin.converted",
    "pin.reset",
    "pin.reset.rejected",
    "pin.revoked",
    "pin.expiring",
    "pin.expired",
    "pin.delivery_failed",
    "conversion.review_requested",
    "conversion.rejected",
    "application.accepted",
    "application.held",
    "application.released",
    "contacts.updated",
    "phone_pin.issued",
    "delegation.granted",
    "delegation.revoked",
];

#[test]
fn every_message_type_in_the_contract_has_a_schema() {
    let schemas = Schemas::embedded();
    let replies = [
        "pin.first_access.reply",
        "pin.verify.reply",
        "phone_pin.request.reply",
        "phone_pin.verify.reply",
    ];
    let notifications = [
        "notify.sms",
        "notify.email",
        "notify.pec",
        "notify.post",
        "notify.office",
    ];
    for name in COMMANDS
        .iter()
        .chain(EVENTS)
        .chain(&replies)
        .chain(&notifications)
        .chain(&["cloudevent"])
    {
        assert!(schemas.get(name).is_some(), "no schema for {name}");
    }
}

#[test]
fn every_example_command_is_valid() {
    let schemas = Schemas::embedded();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let event = example(&name);
        schemas
            .check("cloudevent", &event)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let message_type = event["type"].as_str().unwrap();
        assert!(
            name.starts_with(message_type),
            "{name} holds a {message_type}"
        );
        schemas
            .check(message_type, &event["data"])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let tax_code = event["data"]["tax_code"]
            .as_str()
            .or(event["data"]["applicant"]["tax_code"].as_str());
        if let Some(code) = tax_code {
            pinflow::domain::TaxCode::parse(code).unwrap_or_else(|e| panic!("{name}: {code}: {e}"));
        }
        checked += 1;
    }
    for command in COMMANDS {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("schemas/examples/{command}.json"))
                .exists(),
            "no example of {command}"
        );
    }
    assert!(checked >= COMMANDS.len());
}

#[test]
fn the_request_schema_refuses_what_the_contract_forbids() {
    let schemas = Schemas::embedded();
    let valid = example("pin.request.json")["data"].clone();
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut data = valid.clone();
        change(&mut data);
        schemas.check("pin.request", &data)
    };
    assert!(broken(&|_| {}).is_ok());
    assert!(
        broken(&|d| d["contacts"] = json!({})).is_err(),
        "at least one contact"
    );
    assert!(
        broken(&|d| d["contacts"] = json!({ "email": "a@example.org" })).is_err(),
        "sms needs a mobile"
    );
    assert!(
        broken(&|d| {
            d.as_object_mut().unwrap().remove("first_half_via");
        })
        .is_err(),
        "first_half_via unless office"
    );
    assert!(
        broken(&|d| d["channel"] = json!("office")).is_err(),
        "office needs office_id and operator_id"
    );
    assert!(
        broken(&|d| d["applicant"]["tax_code"] = json!("12345678901")).is_err(),
        "numeric codes are invalid"
    );
    assert!(
        broken(&|d| d["surprise"] = json!(1)).is_err(),
        "commands are strict"
    );
    assert!(
        broken(&|d| d["contacts"]["mobile"] = json!("0039333")).is_err(),
        "E.164"
    );
}

#[test]
fn an_event_can_never_carry_a_pin() {
    let schemas = Schemas::embedded();
    let event = json!({ "tax_code": "RSSMRA85T10A562S", "credential_id": "7d0c6e0a-2b59-4d8e-9a8e-0f4f3c1b6a11",
        "kind": "ordinary", "holder": "citizen", "channel": "online" });
    assert!(schemas.check("pin.issued", &event).is_ok());
    let mut leaky = event.clone();
    leaky["pin"] = json!("ABCDEFGH");
    assert!(schemas.check("pin.issued", &leaky).is_err());
}

#[test]
fn schema_errors_never_quote_the_value() {
    let schemas = Schemas::embedded();
    let data = json!({ "tax_code": "RSSMRA85T10A562S", "pin": 12345678 });
    let error = schemas.check("pin.verify", &data).unwrap_err();
    assert!(!error.contains("12345678"), "{error}");
}

#[test]
fn formats_are_checked_and_their_errors_never_quote_the_value() {
    let schemas = Schemas::embedded();
    let request = example("pin.request.json")["data"].clone();
    for (at, bad) in [
        ("/contacts/email", "mario.rossi.example.org"),
        ("/applicant/birth_date", "1985-13-10"),
    ] {
        let mut data = request.clone();
        *data.pointer_mut(at).unwrap() = json!(bad);
        let error = schemas.check("pin.request", &data).unwrap_err();
        assert!(error.starts_with(at), "{error}");
        assert!(!error.contains(bad), "{error}");
    }
    let event = json!({ "tax_code": "RSSMRA85T10A562S", "credential_id": "7d0c6e0a-2b59-4d8e-9a8e-0f4f3c1b6a1",
        "kind": "ordinary", "holder": "citizen", "channel": "online" });
    let error = schemas.check("pin.issued", &event).unwrap_err();
    assert!(error.starts_with("/credential_id"), "{error}");
    assert!(!error.contains("0f4f3c1b6a1"), "{error}");
}

#[test]
fn every_payload_the_asyncapi_document_names_exists() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let text = std::fs::read_to_string(dir.join("asyncapi.yaml")).unwrap();
    let refs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("$ref: './"))
        .map(|r| r.trim_end_matches('\''))
        .collect();
    assert!(refs.len() >= 45, "one payload per message type");
    for file in refs {
        assert!(
            dir.join(file).exists(),
            "asyncapi.yaml names {file}, which does not exist"
        );
    }
}
