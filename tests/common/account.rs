//! Helpers for tests of the expiry, reset and revocation workers: their queues, a live
//! PIN made the way a citizen gets one, reset links as the e-mail gateway receives
//! them, the expiry sweeps run by hand, and waiting for the database to show
//! something.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pinflow::broker::Names;
use pinflow::runtime::{Deps, Job};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::issuance::{IssuanceApp, pin_request};
use super::{PATIENCE, Taken, TestApp, command};

/// A live, activated PIN.
pub struct Live {
    /// The 8-character PIN.
    pub pin: String,
    /// Its deadline, from the first-access reply.
    pub valid_until: DateTime<Utc>,
    /// Its credential.
    pub credential_id: String,
}

/// What the tests of these workers ask of a running pinflow.
pub trait AccountApp {
    /// A worker's dead-letter queue.
    fn dlq_of(&self, worker: &str) -> String;
    /// Issues a PIN for `request` and makes its first access.
    fn live_pin(&self, request: &Value) -> impl Future<Output = Live>;
    /// Sends a `pin.reset.request` and returns the e-mail (or PEC) that carries the
    /// link.
    fn reset_link(&self, tax_code: &str, contacts: Value) -> impl Future<Output = Taken>;
    /// Sends a `pin.reset.confirm` and returns the two halves as the gateways get
    /// them (SMS, then e-mail or PEC).
    fn confirm_reset(&self, token: &str, second: &str) -> impl Future<Output = (Taken, Taken)>;
    /// `pin.verify`'s status.
    fn verify_status(&self, tax_code: &str, pin: &str) -> impl Future<Output = String>;
    /// `pin.first_access`'s reply data.
    fn first_access(&self, tax_code: &str, initial_pin: &str) -> impl Future<Output = Value>;
}

impl AccountApp for TestApp {
    fn dlq_of(&self, worker: &str) -> String {
        Names::dlq(&self.names.work_queue(worker))
    }

    async fn live_pin(&self, request: &Value) -> Live {
        let (first, second) = self.halves_of(request).await;
        let tax_code = request["data"]["applicant"]["tax_code"]
            .as_str()
            .expect("tax code");
        let reply = self
            .first_access(tax_code, &format!("{first}{second}"))
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
        let activated = self
            .take_event_where("pin.activated", |e| e["data"]["tax_code"] == tax_code)
            .await;
        Live {
            pin: reply["pin"].as_str().expect("pin").to_owned(),
            valid_until: reply["valid_until"]
                .as_str()
                .expect("valid_until")
                .parse()
                .expect("instant"),
            credential_id: activated["data"]["credential_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        }
    }

    async fn reset_link(&self, tax_code: &str, contacts: Value) -> Taken {
        let request = command(
            "pin.reset.request",
            json!({ "tax_code": tax_code, "contacts": contacts }),
        );
        self.publish(&request).await;
        let link = self.take(&self.notify_queue("email"), 1).await.remove(0);
        super::assert_valid(&link.body);
        assert_eq!(link.body["data"]["template"], "reset_link");
        link
    }

    async fn confirm_reset(&self, token: &str, second: &str) -> (Taken, Taken) {
        self.publish(&command("pin.reset.confirm", json!({ "token": token })))
            .await;
        let sms = self.take(&self.notify_queue("sms"), 1).await.remove(0);
        let other = self.take(&self.notify_queue(second), 1).await.remove(0);
        for half in [&sms, &other] {
            super::assert_valid(&half.body);
            assert_eq!(half.body["data"]["template"], "pin_reset_half");
        }
        (sms, other)
    }

    async fn verify_status(&self, tax_code: &str, pin: &str) -> String {
        let reply = self
            .ask("pin.verify", json!({ "tax_code": tax_code, "pin": pin }))
            .await;
        reply["status"].as_str().expect("status").to_owned()
    }

    async fn first_access(&self, tax_code: &str, initial_pin: &str) -> Value {
        self.ask(
            "pin.first_access",
            json!({ "tax_code": tax_code, "initial_pin": initial_pin }),
        )
        .await
    }
}

/// A `pin.request` as the citizen portal sends it, with e-mail and a health card.
pub fn request_with_card(tax_code: &str, holder: &str) -> Value {
    let mut request = pin_request(tax_code, "online");
    request["data"]["holder"] = json!(holder);
    request["data"]["applicant"]["health_card"] =
        json!({ "number": "80380001200012345678", "expires_on": "2030-06-30" });
    request
}

/// The secret a notification carries.
pub fn secret(taken: &Taken) -> String {
    taken.body["data"]["secret"]
        .as_str()
        .expect("a secret")
        .to_owned()
}

/// Waits until `check` holds, asking again every 50 ms (for work that happens in the
/// background, such as a sweep's pass); fails after `PATIENCE`.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a timed job needs, for tests that run passes by hand (no pinflow running).
pub fn deps(app: &TestApp) -> Arc<Deps> {
    Arc::new(Deps {
        pool: app.pool.clone(),
        names: app.names.clone(),
        amqp_url: app.amqp_url.clone(),
        runtime: app.runtime.clone(),
        keys: Arc::new(pinflow::seal::KeyRing::single(
            pinflow::seal::OutboxKey::from_base64(&app.key).expect("key"),
        )),
        clock: Arc::new(app.clock.clone()),
        relay_wake: Arc::new(Notify::new()),
        at_commit: Default::default(),
        workers: pinflow::runtime::descriptions(&app.registry).into(),
        declared: Default::default(),
        jobs_now: Default::default(),
        health: Default::default(),
        other_work: Default::default(),
    })
}

/// Runs one pass of a job, as a replica would; returns the rows it handled.
pub async fn pass<J: Job>(job: &J, deps: &Deps) -> usize {
    pinflow::runtime::job::pass(job, deps)
        .await
        .expect("a pass")
}
