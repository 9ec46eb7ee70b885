//! The typed contract, without a broker or a database: every example command passes
//! the envelope and schema check and reads into its typed data, enums hold only what
//! the schemas list, an unknown value is an error (never `None`), and the typed data
//! keeps secrets out of `Debug` and reasons.

use std::path::Path;

use pinflow::contract::commands::{self as wire, Channel, CommandData, CommandType, FirstHalfVia};
use pinflow::contract::schemas::Schemas;
use pinflow::contract::{Envelope, ParseError};
use pinflow::domain::Country;
use pinflow::domain::credential::{Holder, Kind};
use pinflow::workers::issuance::Command;
use serde_json::{Value, json};

fn examples() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let mut all: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            (
                name.clone(),
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}")),
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn checked(name: &str, event: &Value) -> Envelope {
    let body = serde_json::to_vec(event).unwrap();
    let content_type = Some(pinflow::contract::CONTENT_TYPE);
    Envelope::parse(&body, content_type, Schemas::embedded(), |_| true)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// An envelope whose data no schema has seen: what a worker would get if the schema
/// check were bypassed or the schema and the type drifted apart.
fn unchecked(message_type: &str, data: Value) -> Envelope {
    Envelope {
        id: "t-1".into(),
        source: "test".into(),
        message_type: message_type.into(),
        time: None,
        data,
    }
}

fn example_data(file: &str) -> Value {
    let (_, event) = examples()
        .into_iter()
        .find(|(name, _)| name == file)
        .unwrap();
    event["data"].clone()
}

fn typed<T: CommandData>(envelope: &Envelope) -> Result<T, ParseError> {
    T::from_envelope(envelope)
}

/// Reads an envelope into its typed data (the issuance commands through the worker's
/// own parse, which checks their tax codes) and returns the other tax codes it names.
fn read(envelope: &Envelope) -> Result<(CommandType, Vec<String>), ParseError> {
    use wire::*;
    let command_type = CommandType::parse(&envelope.message_type).expect("a command type");
    let codes = match command_type {
        CommandType::PinRequest | CommandType::PinFirstAccess | CommandType::PinVerify => {
            Command::parse(envelope).map(|_| vec![])?
        }
        CommandType::ApplicationSubmit => vec![typed::<ApplicationSubmit>(envelope)?.tax_code],
        CommandType::ConversionSubmit => vec![typed::<ConversionSubmit>(envelope)?.tax_code],
        CommandType::ConversionReview => typed::<ConversionReview>(envelope).map(|_| vec![])?,
        CommandType::PinResetRequest => vec![typed::<PinResetRequest>(envelope)?.tax_code],
        CommandType::PinResetConfirm => typed::<PinResetConfirm>(envelope).map(|_| vec![])?,
        CommandType::PinRevoke => vec![typed::<PinRevoke>(envelope)?.tax_code],
        CommandType::ContactsUpdate => vec![typed::<ContactsUpdate>(envelope)?.tax_code],
        CommandType::PhonePinRequest => vec![typed::<PhonePinRequest>(envelope)?.tax_code],
        CommandType::PhonePinVerify => vec![typed::<PhonePinVerify>(envelope)?.tax_code],
        CommandType::DelegationGrant => {
            let grant = typed::<DelegationGrant>(envelope)?;
            vec![grant.delegator_tax_code, grant.delegate_tax_code]
        }
        CommandType::DelegationRevoke => typed::<DelegationRevoke>(envelope).map(|_| vec![])?,
        CommandType::DeliveryReceipt => typed::<DeliveryReceipt>(envelope).map(|_| vec![])?,
    };
    Ok((command_type, codes))
}

#[test]
fn every_example_passes_the_schema_and_reads_into_its_typed_command() {
    let mut seen = Vec::new();
    for (name, event) in examples() {
        let envelope = checked(&name, &event);
        let (command_type, codes) = read(&envelope).unwrap_or_else(|e| panic!("{name}: {e}"));
        for code in codes {
            wire::tax_code("tax_code", &code).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        seen.push(command_type);
    }
    for command_type in CommandType::ALL {
        assert!(
            seen.contains(&command_type),
            "no example of {}",
            command_type.as_str()
        );
    }
}

#[test]
fn the_issuance_examples_read_into_the_schemas_enums() {
    let data = example_data("pin.request.json");
    let request: wire::PinRequest = serde_json::from_value(data).unwrap();
    assert_eq!(request.channel, Channel::Online);
    assert_eq!(request.holder, Holder::Citizen);
    assert_eq!(request.first_half_via, Some(FirstHalfVia::Sms));
    assert_eq!(
        request.applicant.residence_country,
        Country::parse("DE").unwrap()
    );
    assert_eq!(request.postal_address.city, "Berlin");
    assert!(request.contacts.mobile.is_some() && request.contacts.pec.is_none());

    let office: wire::PinRequest =
        serde_json::from_value(example_data("pin.request.office.json")).unwrap();
    assert_eq!(
        (office.channel, office.first_half_via),
        (Channel::Office, None)
    );
    let center: wire::PinRequest =
        serde_json::from_value(example_data("pin.request.contact_center.json")).unwrap();
    assert_eq!(center.channel, Channel::ContactCenter);
    assert_eq!(center.first_half_via, Some(FirstHalfVia::Email));
}

#[test]
fn an_unknown_enum_value_is_an_error_not_none() {
    let mut fax = example_data("pin.request.json");
    fax["first_half_via"] = json!("fax");
    let refused = Envelope::parse(
        &serde_json::to_vec(&json!({ "specversion": "1.0", "id": "x", "source": "s",
            "type": "pin.request", "data": fax.clone() }))
        .unwrap(),
        None,
        Schemas::embedded(),
        |_| true,
    );
    assert!(
        matches!(refused, Err(ParseError::SchemaViolation { .. })),
        "the schema refuses it"
    );
    let Err(error) = Command::parse(&unchecked("pin.request", fax)) else {
        panic!("first_half_via `fax` read as something");
    };
    assert!(
        matches!(error, ParseError::SchemaViolation { .. }),
        "{error}"
    );
    assert!(
        !error.to_string().contains("fax"),
        "{error} quotes the value"
    );

    let base = example_data("pin.request.json");
    let cases: [(&str, Value); 5] = [
        ("channel", json!("fax")),
        ("holder", json!("robot")),
        ("surprise", json!(1)),
        (
            "postal_address",
            json!({ "line1": "x", "city": "y", "postal_code": "1", "country": "de" }),
        ),
        ("contacts", json!({ "email": "a@b" })),
    ];
    for (field, value) in cases {
        let mut data = base.clone();
        data[field] = value;
        assert!(
            Command::parse(&unchecked("pin.request", data)).is_err(),
            "{field}"
        );
    }
}

#[test]
fn the_other_commands_refuse_values_their_schemas_do_not_list() {
    let cases = [
        (
            "application.submit.json",
            "authenticated_with",
            json!("password"),
        ),
        ("conversion.submit.json", "channel", json!("pigeon")),
        ("conversion.review.json", "decision", json!("maybe")),
        ("pin.revoke.json", "channel", json!("office")),
        ("contacts.update.json", "channel", json!("office")),
        ("phone_pin.request.json", "validity", json!("P2D")),
        (
            "phone_pin.request.json",
            "authenticated_with",
            json!("pin_ordinary"),
        ),
        ("delivery.receipt.json", "status", json!("lost")),
    ];
    for (file, field, value) in cases {
        let mut data = example_data(file);
        data[field] = value.clone();
        let envelope = unchecked(file.trim_end_matches(".json"), data);
        let result = read(&envelope).err();
        assert!(result.is_some(), "{file}: {field} = {value} was accepted");
    }
    let verify = unchecked("pin.verify", example_data("pin.verify.json"));
    assert!(
        matches!(
            wire::PinRequest::from_envelope(&verify),
            Err(ParseError::UnknownType(_))
        ),
        "typed data of one type never reads another type's envelope"
    );
}

#[test]
fn typed_secrets_never_show_in_debug_or_reasons() {
    let secret = "K7M2P9QXW3";
    let envelope = unchecked(
        "pin.verify",
        json!({ "tax_code": "RSSMRA85T10A562S", "pin": secret }),
    );
    let verify = wire::PinVerify::from_envelope(&envelope).unwrap();
    assert!(!format!("{verify:?}").contains(secret), "{verify:?}");
    let access: wire::PinFirstAccess =
        serde_json::from_value(json!({ "tax_code": "RSSMRA85T10A562S", "initial_pin": secret }))
            .unwrap();
    assert!(!format!("{access:?}").contains(secret));
    let phone: wire::PhonePinVerify = serde_json::from_value(
        json!({ "tax_code": "RSSMRA85T10A562S", "phone_pin": secret, "operator_id": "op-1" }),
    )
    .unwrap();
    assert!(!format!("{phone:?}").contains(secret));
    let confirm: wire::PinResetConfirm =
        serde_json::from_value(json!({ "token": secret })).unwrap();
    assert!(!format!("{confirm:?}").contains(secret));

    let numeric = unchecked(
        "pin.verify",
        json!({ "tax_code": "RSSMRA85T10A562S", "pin": 73519246 }),
    );
    let Err(error) = Command::parse(&numeric) else {
        panic!("a number read as a PIN");
    };
    assert!(!error.to_string().contains("73519246"), "{error}");
}

#[test]
fn command_types_round_trip_and_the_rpc_ones_are_those_with_a_reply_schema() {
    let schemas = Schemas::embedded();
    for command_type in CommandType::ALL {
        let name = command_type.as_str();
        assert_eq!(CommandType::parse(name), Some(command_type));
        assert!(schemas.get(name).is_some(), "no schema for {name}");
        let has_reply = schemas.get(&format!("{name}.reply")).is_some();
        assert_eq!(command_type.is_rpc(), has_reply, "{name}");
    }
    assert_eq!(CommandType::parse("pin.bogus"), None);
}

#[test]
fn wire_names_and_stored_names_are_the_same() {
    for kind in [Kind::Ordinary, Kind::Device] {
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
    for holder in [Holder::Citizen, Holder::Intermediary] {
        assert_eq!(serde_json::to_value(holder).unwrap(), holder.as_str());
        let back: Holder = serde_json::from_value(json!(holder.as_str())).unwrap();
        assert_eq!(back, holder);
    }
    for channel in [Channel::Online, Channel::ContactCenter, Channel::Office] {
        assert_eq!(serde_json::to_value(channel).unwrap(), channel.as_str());
    }
}
