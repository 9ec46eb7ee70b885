//! The notification ledger and trace context: every notification is kept with its
//! template, channel, tax code, credential and which secret it carried (never the
//! secret), marked sent once the broker confirms it, and shown by `pinflow credential
//! show`; `traceparent` and `tracestate` continue into what a command causes. The
//! ledger's entries go in with a batch's audit and outbox rows.

mod common;

use std::time::Duration;

use common::issuance::{IssuanceApp, pin_request};
use common::{PATIENCE, spawn_app, tax_code};
use lapin::types::{AMQPValue, FieldTable};
use pinflow::contract::Outgoing;
use pinflow::contract::trace::TraceContext;
use pinflow::store::audit::Record;
use pinflow::store::outbox::Caused;
use serde_json::Value;

async fn wait_sent(app: &common::TestApp, n: i64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app
        .count("select count(*) from notifications where state = 'sent'")
        .await
        < n
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "notifications marked sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_notification_is_in_the_ledger_without_its_secret() {
    let app = spawn_app().await;
    let code = tax_code(41);
    let (first, second) = app.halves_of(&pin_request(&code, "online")).await;
    wait_sent(&app, 2).await;
    let rows = sqlx::query_as::<_, (String, String, String, String, Option<String>, String)>(
        "select notification_id, template, channel, tax_code, carries, state
         from notifications order by carries",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2.as_str(), rows[0].4.as_deref()),
        ("pin_first_half", "sms", Some("first_half"))
    );
    assert_eq!(
        (rows[1].1.as_str(), rows[1].2.as_str(), rows[1].4.as_deref()),
        ("pin_second_half", "post", Some("second_half"))
    );
    assert!(rows.iter().all(|r| r.3 == code && r.5 == "sent"));
    let credential: uuid::Uuid = sqlx::query_scalar("select id from credentials")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let linked = app
        .count(&format!(
            "select count(*) from notifications where credential_id = '{credential}'"
        ))
        .await;
    assert_eq!(linked, 2);
    let whole_table: String =
        sqlx::query_scalar("select coalesce(string_agg(n::text, ' '), '') from notifications n")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        !whole_table.contains(&first) && !whole_table.contains(&second),
        "no half in the ledger"
    );

    let (ok, out, err) = app.pinflow(&["credential", "show", &code]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let listed = shown["credentials"][0]["notifications"].as_array().unwrap();
    let ids: Vec<&str> = listed
        .iter()
        .map(|n| n["notification_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    for row in &rows {
        assert!(ids.contains(&row.0.as_str()));
    }
    assert!(!out.contains(&first) && !out.contains(&second));
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_notice_is_in_the_ledger_without_a_credential() {
    let app = spawn_app().await;
    let mut request = pin_request(&tax_code(42), "online");
    request["data"]["applicant"]["residence_country"] = serde_json::json!("IT");
    app.publish(&request).await;
    app.event("pin.request.rejected").await;
    wait_sent(&app, 1).await;
    let (template, carries, credential): (String, Option<String>, Option<uuid::Uuid>) =
        sqlx::query_as("select template, carries, credential_id from notifications")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (template.as_str(), carries, credential),
        ("not_eligible", None, None)
    );
    app.stop().await;
}

#[tokio::test]
async fn trace_parent_and_trace_state_reach_the_gateway() {
    let app = spawn_app().await;
    let request = pin_request(&tax_code(43), "online");
    let mut headers = FieldTable::default();
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    headers.insert("traceparent".into(), AMQPValue::LongString(parent.into()));
    headers.insert(
        "tracestate".into(),
        AMQPValue::LongString("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into()),
    );
    let properties = common::command_properties(&request).with_headers(headers);
    let body = serde_json::to_vec(&request).unwrap();
    app.publish_raw("pin.request", &body, properties).await;
    for queue in ["sms", "post"] {
        let sent = app.take(&app.notify_queue(queue), 1).await.remove(0);
        let traceparent = sent.header("traceparent").expect("traceparent");
        assert!(
            traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{traceparent}"
        );
        assert!(
            !traceparent.contains("b7ad6b7169203331"),
            "a span of its own"
        );
        assert_eq!(
            sent.header("tracestate").as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
    }
    let event = app.take(&app.events_queue(), 1).await.remove(0);
    assert_eq!(
        event.header("tracestate").as_deref(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    app.stop().await;
}

/// An audit entry of the message `message` about applicant `n`.
fn record(action: &str, n: u32, message: &str, credential_id: Option<uuid::Uuid>) -> Record {
    Record {
        at: chrono::Utc::now(),
        actor: "portal".to_owned(),
        action: action.to_owned(),
        tax_code: Some(tax_code(n)),
        credential_id,
        message_id: Some(message.to_owned()),
        detail: serde_json::json!({}),
    }
}

/// Two messages' outgoing messages, each caused by the message id beside it.
fn two_caused<'a>(
    trace: &'a TraceContext,
    [(first, first_by), (second, second_by)]: [(&'a [Outgoing], &'a str); 2],
) -> [Caused<'a>; 2] {
    let caused = |messages, by| Caused {
        messages,
        trace,
        caused_by: Some(by),
    };
    [caused(first, first_by), caused(second, second_by)]
}

/// A batch's audit entries, its outgoing messages and the ledger's entries for its
/// notifications are written by one call, in their order (the outbox ids come back in
/// the messages' order); audit entries with nothing to publish are written too.
#[tokio::test]
async fn a_batch_writes_its_audit_outbox_and_ledger_rows_in_one_call() {
    use pinflow::contract::{Notice, NotifyChannel};
    use pinflow::seal::{KeyRing, OutboxKey};
    use pinflow::store::outbox;

    let (app, _, _) = common::observer_with(&[]).await;
    let now = chrono::Utc::now();
    let notice = |n| Notice {
        channel: NotifyChannel::Sms,
        template: "pin_first_half",
        to: serde_json::json!("+393331234567"),
        params: serde_json::json!({}),
        tax_code: tax_code(n),
        credential_id: Some(uuid::Uuid::new_v4()),
        secret: None,
    };
    let audit = |action, n| record(action, n, &format!("m-{n}"), None);
    let first = vec![
        Outgoing::notification(notice(44), now),
        Outgoing::event("pin.issued", serde_json::json!({ "n": 1 }), now),
    ];
    let second = vec![Outgoing::notification(notice(45), now)];
    let trace = TraceContext::start();
    let groups = two_caused(&trace, [(&first, "m-44"), (&second, "m-45")]);
    let keys = KeyRing::single(OutboxKey::generate());
    let mut conn = app.pool.acquire().await.unwrap();

    let audited = [audit("pin.issued", 44), audit("pin.issued_again", 45)];
    let ids = outbox::insert_held(&mut conn, &audited, &groups, &keys, None)
        .await
        .unwrap();
    let rows: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("select id, message_id, caused_by from outbox order by id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let in_order: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(ids, rows.iter().map(|r| r.0).collect::<Vec<_>>());
    assert_eq!(
        rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        in_order
    );
    assert_eq!(
        rows.iter().map(|r| r.2.as_deref()).collect::<Vec<_>>(),
        [Some("m-44"), Some("m-44"), Some("m-45")]
    );
    let ledger: Vec<(String, String, String)> = sqlx::query_as(
        "select notification_id, tax_code, state from notifications order by tax_code",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        ledger,
        [
            (
                first[0].message_id.clone(),
                tax_code(44),
                "pending".to_owned()
            ),
            (
                second[0].message_id.clone(),
                tax_code(45),
                "pending".to_owned()
            ),
        ]
    );

    let alone = [audit("pin.revoked", 46)];
    let none = outbox::insert_held(&mut conn, &alone, &[], &keys, None)
        .await
        .unwrap();
    assert!(none.is_empty());
    let actions: Vec<(String, Option<String>)> =
        sqlx::query_as("select action, message_id from audit_log order by id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        actions,
        [
            ("pin.issued".to_owned(), Some("m-44".to_owned())),
            ("pin.issued_again".to_owned(), Some("m-45".to_owned())),
            ("pin.revoked".to_owned(), Some("m-46".to_owned())),
        ]
    );
    assert_eq!(app.count("select count(*) from outbox").await, 3);
    drop(conn);
    app.stop().await;
}

/// A reply's outbox row carries the tax code and credential of its request's last
/// audit entry (what `reply.returned` is recorded against when the caller's queue is
/// gone); other rows, and a reply whose request audited nothing, carry neither.
#[tokio::test]
async fn a_reply_row_carries_its_requests_last_audit_entry() {
    use pinflow::seal::{KeyRing, OutboxKey};
    use pinflow::store::outbox;

    let (app, _, _) = common::observer_with(&[]).await;
    let now = chrono::Utc::now();
    let audit = |n, message, credential_id| record("pin.verify_failed", n, message, credential_id);
    let reply = |n| {
        Outgoing::reply(
            "pin.verify",
            "portal.replies",
            Some(&format!("c-{n}")),
            serde_json::json!({ "status": "invalid" }),
            None,
            now,
        )
    };
    let (earlier, later, other) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let audited = [
        audit(47, "m-47", Some(earlier)),
        audit(48, "m-48", Some(other)),
        audit(47, "m-47", Some(later)),
    ];
    let first = vec![
        Outgoing::event("pin.locked", serde_json::json!({ "n": 1 }), now),
        reply(47),
    ];
    let second = vec![reply(49)];
    let trace = TraceContext::start();
    let groups = two_caused(&trace, [(&first, "m-47"), (&second, "m-49")]);
    let keys = KeyRing::single(OutboxKey::generate());
    let mut conn = app.pool.acquire().await.unwrap();
    outbox::insert_held(&mut conn, &audited, &groups, &keys, None)
        .await
        .unwrap();
    drop(conn);
    let rows: Vec<(String, Option<String>, Option<uuid::Uuid>)> = sqlx::query_as(
        "select destination, request_tax_code, request_credential_id from outbox order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("event".to_owned(), None, None),
            ("reply".to_owned(), Some(tax_code(47)), Some(later)),
            ("reply".to_owned(), None, None),
        ]
    );
    app.stop().await;
}
