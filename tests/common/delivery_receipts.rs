//! Helpers for tests of the delivery-receipt worker: a receipt as a gateway sends it
//! (with the instant it saw the outcome), waiting until receipts are logged, and its
//! dead-letter queue.

use std::time::Duration;

use pinflow::broker::Names;
use serde_json::{Value, json};

use super::{PATIENCE, TestApp, command};

/// A `delivery.receipt` from a gateway that saw `status` at `time`.
pub fn receipt(notification_id: &str, status: &str, time: &str) -> Value {
    let mut receipt = command(
        "delivery.receipt",
        json!({ "notification_id": notification_id, "status": status }),
    );
    receipt["source"] = json!("sms-gateway");
    receipt["time"] = json!(time);
    receipt
}

/// Waits until a query's count reaches `n`.
pub async fn wait_count(app: &TestApp, sql: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let count = app.count(sql).await;
        if count >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {count} < {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `n` receipts have been handled (each is logged, known or not).
pub async fn wait_receipts(app: &TestApp, n: i64) {
    wait_count(app, "select count(*) from notification_receipts", n).await;
}

/// The delivery state of a notification in the ledger.
pub async fn state_of(app: &TestApp, notification_id: &str) -> String {
    sqlx::query_scalar("select state from notifications where notification_id = $1")
        .bind(notification_id)
        .fetch_one(&app.pool)
        .await
        .expect("a ledger row")
}

/// The delivery-receipt worker's dead-letter queue.
pub fn receipts_dlq(app: &TestApp) -> String {
    Names::dlq(&app.names.work_queue("delivery_receipts"))
}
