//! One known secret fed through every hostile path at once — a mistyped routing key, a
//! truncated body, a secret of the wrong JSON type, an RPC aimed at a gateway's queue,
//! a command the broker dead-letters at its limit — and then every queue of the
//! namespace except the `notify.*` delivery queues, every table and the operators'
//! export file are scanned for it.

mod common;

use std::time::Duration;

use common::issuance::IssuanceApp;
use common::{PATIENCE, TestApp, command, observer_with, start_app, tax_code};
use serde_json::json;

const SECRET: &str = "LEAKME7QZX";

fn queues_of(app: &TestApp) -> Vec<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name"])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|q| q.starts_with(&format!("{}.", app.namespace)))
        .filter(|q| !q.contains(".pinflow.notify."))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_known_secret_rests_nowhere_but_the_delivery_queues() {
    let (app, connections, rules) = observer_with(&["--delivery-limit", "1"]).await;
    // The broker dead-letters one at its limit while no worker runs.
    let verify = command(
        "pin.verify",
        json!({ "tax_code": tax_code(81), "pin": SECRET }),
    );
    app.publish_with(&verify, Some("portal.replies"), Some("c-1"))
        .await;
    app.hand_back_until_dead_lettered(&app.work_queue()).await;
    let app = start_app(app, connections, rules).await;
    let mistyped = command(
        "pin.verfy",
        json!({ "tax_code": tax_code(82), "pin": SECRET }),
    );
    let body = serde_json::to_vec(&mistyped).unwrap();
    app.publish_raw("pin.verfy", &body, common::command_properties(&mistyped))
        .await;
    let truncated = format!(
        r#"{{"specversion":"1.0","type":"pin.first_access","data":{{"initial_pin":"{SECRET}""#
    );
    app.publish_raw(
        "pin.first_access",
        truncated.as_bytes(),
        common::command_properties(&mistyped),
    )
    .await;
    let odd = command(
        "pin.verify",
        json!({ "tax_code": tax_code(83), "pin": { "typed": SECRET } }),
    );
    app.publish_with(&odd, Some("portal.replies"), Some("c-2"))
        .await;
    let aimed = command(
        "pin.first_access",
        json!({ "tax_code": tax_code(84), "initial_pin": format!("{SECRET}ABCDEF") }),
    );
    app.publish_with(&aimed, Some(&app.notify_queue("sms")), Some("c-3"))
        .await;

    // Everything has landed: 4 in the issuance dead-letter queue, 1 unrouted.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.ready(&app.dlq()).await < 4 || app.ready(&app.names.unrouted_dlq()).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hostile messages were dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let export = std::env::temp_dir().join(format!("{}-export.jsonl", app.namespace));
    let (ok, _, err) = app.pinflow(&["dlq", "export", "--out", export.to_str().unwrap()]);
    assert!(ok, "{err}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&export).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export is the operator's alone");
    let exported = std::fs::read_to_string(&export).unwrap();
    let _ = std::fs::remove_file(&export);
    assert!(!exported.contains(SECRET), "the export holds no secret");

    let mut leaks = Vec::new();
    let queues = queues_of(&app);
    assert!(queues.iter().any(|q| q.ends_with(".dlq")), "{queues:?}");
    let mut scanned = 0;
    for queue in &queues {
        for taken in app.drain(queue).await {
            scanned += 1;
            if String::from_utf8_lossy(&taken.raw).contains(SECRET) {
                leaks.push(format!("queue {queue}"));
            }
        }
    }
    assert!(scanned >= 5, "the scan read the dead letters ({scanned})");
    let dump = std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(&app.database_url)
        .output()
        .expect("pg_dump");
    assert!(dump.status.success());
    if String::from_utf8_lossy(&dump.stdout).contains(SECRET) {
        leaks.push("the database".into());
    }
    assert!(leaks.is_empty(), "the secret rests in: {leaks:?}");
    app.stop().await;
}
