//! The broker drops pinflow's connections mid-run: the worker and the relay reconnect
//! with backoff, redeclare their topology and resume; nothing is lost or doubled.
//! Closes only this test's connections (by their names), so it runs beside the rest.

mod common;

use common::issuance::{IssuanceApp, pin_request};
use common::{TestApp, spawn_app, tax_code};

/// Closes every broker connection whose client-provided name starts with `prefix`;
/// returns how many.
fn close_connections(prefix: &str) -> usize {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "-s"])
        .output()
        .expect("this test needs rabbitmqctl for the broker under test");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(prefix)) {
        let pid = line.split('\t').next().expect("pid column");
        let status = std::process::Command::new("rabbitmqctl")
            .args([
                "close_connection",
                pid,
                "test: broker drops the connection",
                "-q",
            ])
            .status()
            .expect("close_connection");
        assert!(status.success(), "close {pid}");
        closed += 1;
    }
    closed
}

async fn halves(app: &TestApp) -> usize {
    app.take(&app.notify_queue("sms"), 1).await;
    app.take(&app.notify_queue("post"), 1).await;
    2
}

#[tokio::test]
async fn the_worker_and_the_relay_reconnect_when_the_broker_drops_them() {
    let app = spawn_app().await;
    app.publish(&pin_request(&tax_code(70), "online")).await;
    halves(&app).await;

    let closed = close_connections(&format!("pinflow:{}:", app.namespace));
    assert!(
        closed >= 2,
        "the issuance consumers and the relay: {closed}"
    );
    app.publish(&pin_request(&tax_code(71), "online")).await;
    halves(&app).await;
    app.barrier().await;
    assert!(
        app.drain(&app.notify_queue("sms")).await.is_empty(),
        "nothing doubled"
    );
    assert_eq!(
        app.count("select count(*) from credentials").await,
        2,
        "nothing lost"
    );
    assert_eq!(
        app.count("select count(*) from outbox").await,
        0,
        "the relay sent everything"
    );
    app.stop().await;
}
