//! Helpers for tests of the verification and conversion workers: their queues, an
//! activated ordinary PIN to convert, the commands of the device-PIN flow as the
//! portal, the fax intake, the office counter and the back office send them, and an
//! event published as another worker would.

use pinflow::broker::Names;
use pinflow::broker::publish::publish_routed;
use serde_json::{Value, json};
use uuid::Uuid;

use super::issuance::{IssuanceApp, pin_request};
use super::{PATIENCE, TestApp, command, command_properties};

/// A citizen with an activated ordinary PIN.
pub struct Citizen {
    /// Their tax code.
    pub tax_code: String,
    /// Their credential.
    pub credential_id: String,
    /// Their 8-character PIN.
    pub pin: String,
}

/// What the device-PIN tests ask of a running pinflow.
pub trait ConversionApp {
    /// The dead-letter queue of the verification worker (`conversion.submit`).
    fn verification_dlq(&self) -> String;
    /// The dead-letter queue of the conversion worker (reviews, applications).
    fn conversion_dlq(&self) -> String;
    /// Issues an ordinary PIN (contacts: a mobile and an e-mail) and activates it.
    fn citizen(&self, tax_code: &str) -> impl Future<Output = Citizen>;
    /// `pin.verify` for the citizen's PIN: the reply's data.
    fn login(&self, citizen: &Citizen) -> impl Future<Output = Value>;
    /// Submits an upload for the citizen and returns the `conversion.review_requested`.
    fn awaiting_review(&self, citizen: &Citizen) -> impl Future<Output = Value>;
    /// Publishes an event on `pinflow.events` as another worker would.
    fn publish_event(&self, event: &Value) -> impl Future<Output = ()>;
    /// Waits for the next event of a type about a tax code.
    fn event_for(&self, event_type: &str, tax_code: &str) -> impl Future<Output = Value>;
}

impl ConversionApp for TestApp {
    fn verification_dlq(&self) -> String {
        Names::dlq(&self.names.work_queue("verification"))
    }

    fn conversion_dlq(&self) -> String {
        Names::dlq(&self.names.work_queue("conversion"))
    }

    async fn citizen(&self, tax_code: &str) -> Citizen {
        let (first, second) = self.halves_of(&pin_request(tax_code, "online")).await;
        let issued = self.event_for("pin.issued", tax_code).await;
        let initial_pin = format!("{first}{second}");
        let reply = self
            .ask(
                "pin.first_access",
                json!({ "tax_code": tax_code, "initial_pin": initial_pin }),
            )
            .await;
        assert_eq!(reply["status"], "ok", "first access");
        self.event_for("pin.activated", tax_code).await;
        Citizen {
            tax_code: tax_code.to_owned(),
            credential_id: issued["data"]["credential_id"].as_str().unwrap().to_owned(),
            pin: reply["pin"].as_str().unwrap().to_owned(),
        }
    }

    async fn login(&self, citizen: &Citizen) -> Value {
        let data = json!({ "tax_code": citizen.tax_code, "pin": citizen.pin });
        self.ask("pin.verify", data).await
    }

    async fn awaiting_review(&self, citizen: &Citizen) -> Value {
        self.publish(&submission(&citizen.tax_code, "upload")).await;
        self.event_for("conversion.review_requested", &citizen.tax_code)
            .await
    }

    async fn publish_event(&self, event: &Value) {
        let body = serde_json::to_vec(event).unwrap();
        let routing_key = event["type"].as_str().unwrap();
        let properties = command_properties(event);
        publish_routed(
            &self.channel,
            &self.names.events(),
            routing_key,
            &body,
            properties,
            PATIENCE,
        )
        .await
        .expect("event published");
    }

    async fn event_for(&self, event_type: &str, tax_code: &str) -> Value {
        self.take_event_where(event_type, |e| e["data"]["tax_code"] == tax_code)
            .await
    }
}

/// A `conversion.submit` on a channel (`upload`, `fax`, `office`) with the contract
/// example's two good documents and passport.
pub fn submission(tax_code: &str, channel: &str) -> Value {
    let mut event = pinflow::contract::schemas::Schemas::example("conversion.submit").unwrap();
    event["id"] = json!(Uuid::new_v4().to_string());
    event["data"]["tax_code"] = json!(tax_code);
    event["data"]["channel"] = json!(channel);
    match channel {
        "fax" => {
            event["data"]["fax"] = json!({ "sender_number": "+4930123456", "received_at": "2026-11-22T09:58:00Z", "pages": 3 });
            event["data"]["documents"][0]["media_type"] = json!("image/tiff");
            event["source"] = json!("fax-intake");
        }
        "office" => {
            event["data"]["operator_id"] = json!("op-office-9");
            event["source"] = json!("office-counter");
        }
        _ => {}
    }
    event
}

/// A `conversion.review` from the back office.
pub fn review(conversion_id: &str, decision: &str, operator: &str) -> Value {
    let mut event = command(
        "conversion.review",
        json!({ "conversion_id": conversion_id, "decision": decision, "operator_id": operator }),
    );
    event["source"] = json!("back-office");
    event
}

/// An `application.submit` filed at `time`.
pub fn application(tax_code: &str, application_id: &str, with: &str, time: &str) -> Value {
    let mut event = command(
        "application.submit",
        json!({ "application_id": application_id, "tax_code": tax_code, "benefit": "NASpI",
                "authenticated_with": with }),
    );
    event["time"] = json!(time);
    event
}

/// An event as pinflow publishes it (`source: pinflow`).
pub fn event(event_type: &str, data: Value) -> Value {
    let mut event = command(event_type, data);
    event["source"] = json!("pinflow");
    event
}
