//! Property tests for the edge parser (`Envelope::parse`): whatever bytes arrive, it
//! answers with a checked envelope or a reason, never panics, and never quotes the
//! input back in its reason (it may be a secret).

use pinflow::contract::Envelope;
use pinflow::contract::schemas::Schemas;
use proptest::prelude::*;
use serde_json::{Value, json};

fn valid_request() -> Value {
    serde_json::from_str(include_str!("../schemas/examples/pin.request.json")).unwrap()
}

fn parse(body: &[u8]) -> Result<Envelope, pinflow::contract::ParseError> {
    Envelope::parse(
        body,
        Some("application/cloudevents+json"),
        Schemas::embedded(),
        |t| ["pin.request", "pin.verify", "pin.first_access"].contains(&t),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&body);
    }

    #[test]
    fn a_mutated_valid_request_is_accepted_only_if_it_is_still_valid(
        position in 0usize..2000,
        byte in any::<u8>(),
    ) {
        let mut body = serde_json::to_vec(&valid_request()).unwrap();
        let at = position % body.len();
        body[at] = byte;
        if let Ok(envelope) = parse(&body) {
            prop_assert!(Schemas::embedded().check(&envelope.message_type, &envelope.data).is_ok());
            prop_assert_eq!(envelope.message_type, "pin.request");
        }
    }

    #[test]
    // Never 16 characters: the schema would take some as a tax code (with letters for
    // digits), and the case that puts the value there would not be refused.
    fn a_reason_never_quotes_the_value_it_refused(secret in "[A-Z2-9]{12,15}|[A-Z2-9]{17,20}") {
        let cases = [
            json!({ "specversion": "1.0", "id": "x", "source": "s", "type": "pin.verify",
                    "data": { "tax_code": "RSSMRA85T10A562S", "pin": secret, "extra": secret } }),
            json!({ "specversion": "1.0", "id": "x", "source": "s", "type": "pin.verify",
                    "data": { "tax_code": secret, "pin": "ABCDEFGH" } }),
            json!({ "specversion": "1.0", "id": "x", "source": "s", "type": secret, "data": {} }),
            json!({ "specversion": secret, "id": "x", "source": "s", "type": "pin.verify", "data": {} }),
        ];
        for case in cases {
            let reason = parse(&serde_json::to_vec(&case).unwrap()).err().map(|e| e.to_string());
            let reason = reason.expect("each case is invalid");
            prop_assert!(!reason.contains(&secret), "{} quotes the input", reason);
        }
    }

    #[test]
    fn any_text_in_a_name_field_is_accepted_or_refused_by_the_schema(name in "\\PC{0,150}") {
        let mut request = valid_request();
        request["data"]["applicant"]["given_name"] = json!(name);
        match parse(&serde_json::to_vec(&request).unwrap()) {
            Ok(envelope) => prop_assert_eq!(envelope.data["applicant"]["given_name"].as_str(), Some(name.as_str())),
            Err(e) => prop_assert!(e.to_string().starts_with("schema violation"), "{}", e),
        }
    }
}
