//! Reply safety: an RPC whose `reply_to` names a pinflow queue, or that lacks
//! `reply_to` or `correlation_id`, is dead-lettered before anything changes (so the
//! initial PIN is still usable afterwards), and a reply to a vanished queue is recorded
//! against the request instead of being lost silently.

mod common;

use common::issuance::{IssuanceApp, pin_request};
use common::{PATIENCE, command, spawn_app, tax_code};
use serde_json::json;
use std::time::Duration;

fn reason(taken: &common::Taken) -> String {
    taken.header("x-pinflow-error").unwrap_or_default()
}

#[tokio::test]
async fn a_first_access_aimed_at_a_gateway_queue_is_refused_and_spends_nothing() {
    let app = spawn_app().await;
    let code = tax_code(51);
    let (first, second) = app.halves_of(&pin_request(&code, "online")).await;
    let initial_pin = format!("{first}{second}");
    let access = command(
        "pin.first_access",
        json!({ "tax_code": code, "initial_pin": initial_pin }),
    );
    let sms = app.notify_queue("sms");
    app.publish_with(&access, Some(&sms), Some("c-1")).await;
    let dead = app.take(&app.dlq(), 1).await.remove(0);
    assert!(
        reason(&dead).contains("reply_to names a pinflow"),
        "{}",
        reason(&dead)
    );
    assert!(
        !String::from_utf8_lossy(&dead.raw).contains(&initial_pin),
        "sealed in the dead letter"
    );
    // Without a correlation id: refused too.
    let again = command(
        "pin.first_access",
        json!({ "tax_code": code, "initial_pin": initial_pin }),
    );
    app.publish_with(&again, Some("portal.replies.nowhere"), None)
        .await;
    let dead = app.take(&app.dlq(), 1).await.remove(0);
    assert!(
        reason(&dead).contains("correlation_id"),
        "{}",
        reason(&dead)
    );
    app.barrier().await;
    assert!(
        app.drain(&sms).await.is_empty(),
        "nothing went into the SMS gateway's queue"
    );
    // The initial PIN was not spent.
    let reply = app
        .ask(
            "pin.first_access",
            json!({ "tax_code": code, "initial_pin": initial_pin }),
        )
        .await;
    assert_eq!(reply["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn a_reply_to_a_vanished_queue_is_recorded_not_lost_silently() {
    let app = spawn_app().await;
    let code = tax_code(52);
    let (first, second) = app.halves_of(&pin_request(&code, "online")).await;
    let access = command(
        "pin.first_access",
        json!({ "tax_code": code, "initial_pin": format!("{first}{second}") }),
    );
    let access_id = access["id"].as_str().unwrap().to_owned();
    app.publish_with(&access, Some("portal.replies.vanished"), Some("c-2"))
        .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let recorded = app
            .count(&format!(
                "select count(*) from audit_log where action = 'reply.returned' and message_id = '{access_id}' and tax_code = '{code}'"
            ))
            .await;
        if recorded == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the returned reply is recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count("select count(*) from outbox where destination = 'reply'")
            .await,
        0,
        "the reply and its PIN are gone"
    );
    assert_eq!(
        app.count(&format!(
            "select count(*) from audit_log r join credentials c on c.id = r.credential_id
             where r.action = 'reply.returned' and r.message_id = '{access_id}'
               and c.tax_code = '{code}'"
        ))
        .await,
        1,
        "recorded against the credential the request activated"
    );
    let (ok, out, err) = app.pinflow(&["credential", "show", &code]);
    assert!(ok, "{err}");
    assert!(out.contains("reply.returned"), "operators see it: {out}");
    app.stop().await;
}
