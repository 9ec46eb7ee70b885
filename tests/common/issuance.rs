//! Helpers for tests of the issuance worker: its queues, a `pin.request` builder, the
//! two halves as the gateways receive them, and a barrier made of a refused request.

use pinflow::broker::Names;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Taken, TestApp, command, tax_code};

/// What the issuance tests ask of a running pinflow.
pub trait IssuanceApp {
    /// The issuance work queue.
    fn work_queue(&self) -> String;
    /// The issuance dead-letter queue.
    fn dlq(&self) -> String;
    /// Publishes a request that is refused at once and waits for its refusal: every
    /// message published before it has then been handled and its output published.
    fn barrier(&self) -> impl Future<Output = ()>;
    /// Publishes a `pin.request` for an ordinary PIN and returns its two halves, as
    /// the SMS and the letter carry them.
    fn halves_of(&self, request: &Value) -> impl Future<Output = (String, String)>;
}

impl IssuanceApp for TestApp {
    fn work_queue(&self) -> String {
        self.names.work_queue("issuance")
    }

    fn dlq(&self) -> String {
        Names::dlq(&self.work_queue())
    }

    async fn barrier(&self) {
        let marker = format!("barrier-{}", Uuid::new_v4());
        let mut request = pin_request(&tax_code(999), "online");
        request["id"] = json!(marker);
        request["data"]["applicant"]["residence_country"] = json!("IT");
        request["data"]["contacts"] = json!({ "mobile": "+393331234567" });
        self.publish(&request).await;
        self.take_event_where("pin.request.rejected", |e| {
            e["data"]["tax_code"] == tax_code(999)
        })
        .await;
    }

    async fn halves_of(&self, request: &Value) -> (String, String) {
        self.publish(request).await;
        let half = |taken: Taken| {
            taken.body["data"]["secret"]
                .as_str()
                .expect("a half")
                .to_owned()
        };
        let first = self
            .take(&self.notify_queue(&first_half_channel(request)), 1)
            .await
            .remove(0);
        let second = self.take(&self.notify_queue("post"), 1).await.remove(0);
        (half(first), half(second))
    }
}

fn first_half_channel(request: &Value) -> String {
    match request["data"]["first_half_via"].as_str() {
        Some("email") => "email".to_owned(),
        _ => "sms".to_owned(),
    }
}

/// A `pin.request` from a citizen living in Germany, first half by SMS.
pub fn pin_request(tax_code: &str, channel: &str) -> Value {
    let mut data = json!({
        "channel": channel,
        "holder": "citizen",
        "applicant": {
            "tax_code": tax_code,
            "given_name": "Mario",
            "family_name": "Rossi",
            "birth_date": "1985-12-10",
            "residence_country": "DE",
            "italian_id_document": false
        },
        "postal_address": { "line1": "Hauptstrasse 1", "city": "Berlin", "postal_code": "10115", "country": "DE" },
        "contacts": { "mobile": "+4915112345678", "email": "mario.rossi@example.org" },
        "first_half_via": "sms"
    });
    if channel != "online" {
        data["operator_id"] = json!("op-17");
    }
    if channel == "office" {
        data["office_id"] = json!("office-rome-3");
        data.as_object_mut()
            .expect("object")
            .remove("first_half_via");
    }
    command("pin.request", data)
}

/// A valid, distinct tax code for each `n` below 28,000 (the benchmark's).
pub fn many_tax_code(n: u32) -> String {
    pinflow::app::bench::tax_code(n)
}

/// A `pin.request` for applicant `n` of a large batch, first half by SMS.
pub fn request(n: u32) -> Value {
    json!({
        "specversion": "1.0", "id": Uuid::new_v4().to_string(), "source": "bench",
        "type": "pin.request", "time": "2026-11-22T10:00:00Z", "datacontenttype": "application/json",
        "data": {
            "channel": "online", "holder": "citizen",
            "applicant": { "tax_code": many_tax_code(n), "given_name": "Laura", "family_name": "Bianchi",
                "birth_date": "1980-01-01", "residence_country": "AR", "italian_id_document": false },
            "postal_address": { "line1": "Avenida 1", "city": "Buenos Aires", "postal_code": "C1000", "country": "AR" },
            "contacts": { "mobile": "+5491112345678" },
            "first_half_via": "sms"
        }
    })
}
