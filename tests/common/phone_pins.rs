//! Helpers for tests of the phone-PIN worker: a live credential to ask against, the two
//! RPCs, moving the clock to an instant, and everything the database holds as text (to
//! look for a phone PIN in clear).

use chrono::{DateTime, Utc};
use pinflow::broker::Names;
use pinflow::clock::Clock as _;
use serde_json::{Value, json};

use super::TestApp;
use super::issuance::pin_request;

/// What the phone-PIN tests ask of a running pinflow.
pub trait PhonePinApp {
    /// The phone-PIN dead-letter queue.
    fn phone_dlq(&self) -> String;
    /// Issues a PIN for `tax_code` (a live credential, waiting for first access) and
    /// waits until it exists.
    fn live_credential(&self, tax_code: &str) -> impl Future<Output = ()>;
    /// `phone_pin.request` with SPID; returns the reply's data.
    fn request_phone_pin(&self, tax_code: &str, validity: &str) -> impl Future<Output = Value>;
    /// `phone_pin.verify` by operator `op-17`; returns the reply's data.
    fn verify_phone_pin(&self, tax_code: &str, phone_pin: &str) -> impl Future<Output = Value>;
    /// Moves the injected clock so that "now" is `at` (the wall clock keeps running).
    fn move_clock_to(&self, at: DateTime<Utc>);
    /// Every row of every table of the test's database, as text.
    fn database_text(&self) -> impl Future<Output = String>;
}

impl PhonePinApp for TestApp {
    fn phone_dlq(&self) -> String {
        Names::dlq(&self.names.work_queue("phone_pins"))
    }

    async fn live_credential(&self, tax_code: &str) {
        self.publish(&pin_request(tax_code, "online")).await;
        self.take_event_where("pin.issued", |e| e["data"]["tax_code"] == tax_code)
            .await;
    }

    async fn request_phone_pin(&self, tax_code: &str, validity: &str) -> Value {
        let data =
            json!({ "tax_code": tax_code, "authenticated_with": "spid", "validity": validity });
        self.ask("phone_pin.request", data).await
    }

    async fn verify_phone_pin(&self, tax_code: &str, phone_pin: &str) -> Value {
        let data = json!({ "tax_code": tax_code, "phone_pin": phone_pin, "operator_id": "op-17" });
        self.ask("phone_pin.verify", data).await
    }

    fn move_clock_to(&self, at: DateTime<Utc>) {
        self.clock.advance(at - self.clock.now());
    }

    async fn database_text(&self) -> String {
        let tables: Vec<String> = sqlx::query_scalar(
            "select table_name::text from information_schema.tables
             where table_schema = 'public' and table_type = 'BASE TABLE'",
        )
        .fetch_all(&self.pool)
        .await
        .expect("tables");
        let mut text = String::new();
        for table in tables {
            let rows: String = sqlx::query_scalar(&format!(
                "select coalesce(string_agg(t::text, ' '), '') from {table} t"
            ))
            .fetch_one(&self.pool)
            .await
            .expect("rows as text");
            text.push_str(&rows);
        }
        text
    }
}
