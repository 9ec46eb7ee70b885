//! The real `pinflow` binary, logging at its most verbose, handles phone PINs: the phone
//! PIN leaves it only in the reply to the caller's own queue, never in the logs, the
//! events, the dead letters or the database.

mod common;

use common::phone_pins::PhonePinApp;
use common::process::{key, start};
use common::{command, observer_with, tax_code};
use serde_json::json;

#[tokio::test]
async fn no_phone_pin_leaks_into_logs_events_dead_letters_or_the_database() {
    let (app, connections, _) = observer_with(&[]).await;
    let pinflow = start(&connections, &key(), &[]);
    for worker in ["issuance", "phone_pins"] {
        app.wait_for_consumer(&app.names.work_queue(worker)).await;
    }
    let mut secrets = Vec::new();
    for n in 0..3 {
        let code = tax_code(550 + n);
        app.live_credential(&code).await;
        let reply = app.request_phone_pin(&code, "P7D").await;
        let phone_pin = reply["phone_pin"].as_str().expect("a phone PIN").to_owned();
        assert_eq!(
            app.verify_phone_pin(&code, &phone_pin).await["status"],
            "ok"
        );
        // A verify that dead-letters (no reply_to) with the right phone PIN in it.
        let data = json!({ "tax_code": code, "phone_pin": phone_pin, "operator_id": "op-17" });
        app.publish(&command("phone_pin.verify", data)).await;
        secrets.push(phone_pin);
    }
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(app.event("phone_pin.issued").await.to_string());
    }
    let dead_letters: Vec<String> = app
        .take(&app.phone_dlq(), 3)
        .await
        .iter()
        .map(|d| format!("{:?} {}", d.headers, String::from_utf8_lossy(&d.raw)))
        .collect();
    let (status, log) = pinflow.terminate().await;
    assert!(status.success());
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "a verbose log"
    );
    let dump = std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(&app.database_url)
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(
        dump.contains("phone_pin_credentials"),
        "the dump holds the table"
    );
    let mut leaks = Vec::new();
    for secret in &secrets {
        for (place, text) in [("log", &log), ("database", &dump)] {
            if text.contains(secret.as_str()) {
                leaks.push(place);
            }
        }
        leaks.extend(
            events
                .iter()
                .filter(|e| e.contains(secret.as_str()))
                .map(|_| "event"),
        );
        leaks.extend(
            dead_letters
                .iter()
                .filter(|d| d.contains(secret.as_str()))
                .map(|_| "dead letter"),
        );
    }
    assert!(leaks.is_empty(), "phone PINs leaked into: {leaks:?}");
    app.stop().await;
}
