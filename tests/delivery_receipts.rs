//! The delivery-receipt worker, tried as the SMS, e-mail and postal gateways would: a
//! failed SMS half or a returned letter is announced once, with which half and which
//! channel; the latest real word of a gateway is the delivery state, whatever order
//! receipts arrive in, also when competing consumers handle them at once; a receipt
//! for an unknown notification is logged and audited, not dead-lettered;
//! `credential show` lists each notification's delivery state.

mod common;

use common::delivery_receipts::{receipt, receipts_dlq, state_of, wait_count, wait_receipts};
use common::issuance::pin_request;
use common::{TestApp, spawn_app, spawn_app_with, tax_code};
use serde_json::{Value, json};

/// Issues a PIN and returns the notification ids of its SMS and its letter, once the
/// ledger has them as sent.
async fn halves(app: &TestApp, code: &str) -> (String, String) {
    app.publish(&pin_request(code, "online")).await;
    let id = |taken: Vec<common::Taken>| {
        taken[0].body["data"]["notification_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let sms = id(app.take(&app.notify_queue("sms"), 1).await);
    let post = id(app.take(&app.notify_queue("post"), 1).await);
    for n in [&sms, &post] {
        let sql = format!(
            "select count(*) from notifications where notification_id = '{n}' and state = 'sent'"
        );
        wait_count(app, &sql, 1).await;
    }
    (sms, post)
}

async fn failure_of(app: &TestApp, notification_id: &str) -> Value {
    app.take_event_where("pin.delivery_failed", |e| {
        e["data"]["notification_id"] == notification_id
    })
    .await
}

#[tokio::test]
async fn a_failed_sms_half_and_a_returned_letter_are_announced_once_each() {
    let app = spawn_app().await;
    let code = tax_code(701);
    let (sms, post) = halves(&app, &code).await;
    let credential = app.event("pin.issued").await["data"]["credential_id"].clone();

    app.publish(&receipt(&sms, "failed", "2026-11-22T10:05:00Z"))
        .await;
    let event = failure_of(&app, &sms).await;
    let data = &event["data"];
    assert_eq!(data["tax_code"], code.as_str());
    assert_eq!(data["credential_id"], credential);
    assert_eq!(data["template"], "pin_first_half");
    assert_eq!(data["channel"], "sms");
    assert_eq!(data["carries"], "first_half");
    assert_eq!(data["status"], "failed");
    assert_eq!(state_of(&app, &sms).await, "failed");

    // The same failure again: a new report, and the same report redelivered.
    let again = receipt(&sms, "failed", "2026-11-22T10:09:00Z");
    app.publish(&again).await;
    app.publish(&again).await;
    app.publish(&receipt(&post, "returned", "2026-11-30T08:00:00Z"))
        .await;
    let letter = failure_of(&app, &post).await;
    assert_eq!(letter["data"]["template"], "pin_second_half");
    assert_eq!(letter["data"]["channel"], "post");
    assert_eq!(letter["data"]["carries"], "second_half");
    assert_eq!(letter["data"]["status"], "returned");
    wait_receipts(&app, 3).await;
    assert!(
        app.events_so_far("pin.delivery_failed").await.is_empty(),
        "the SMS failure was announced once"
    );
    assert_eq!(
        app.count("select count(*) from notification_receipts")
            .await,
        3,
        "one effect per id"
    );
    assert_eq!(
        app.count("select count(*) from notification_receipts where announced")
            .await,
        2
    );
    assert_eq!(state_of(&app, &post).await, "returned");
    app.stop().await;
}

/// Receipts for one notification handled at once by competing consumers, one per
/// transaction: the latest still wins and the failure is announced once.
#[tokio::test]
async fn receipts_handled_at_once_announce_a_failure_once_and_keep_the_latest() {
    let app = spawn_app_with(&["--consumers", "4", "--batch-size", "1"]).await;
    let (sms, _) = halves(&app, &tax_code(721)).await;
    const N: u32 = 40;
    let words = ["failed", "delivered", "returned", "failed", "delivered"];
    // Published in a scrambled order (7 is coprime to 40); the last instant's word,
    // `returned`, is the real state.
    for k in 0..N {
        let i = (k * 7) % N;
        let word = if i == N - 1 {
            "returned"
        } else {
            words[i as usize % words.len()]
        };
        let time = format!("2026-11-22T10:{:02}:{:02}Z", i / 60, i % 60);
        app.publish(&receipt(&sms, word, &time)).await;
    }
    wait_receipts(&app, i64::from(N)).await;
    assert_eq!(state_of(&app, &sms).await, "returned");
    let event = failure_of(&app, &sms).await;
    assert_eq!(event["data"]["carries"], "first_half");
    assert!(
        app.events_so_far("pin.delivery_failed").await.is_empty(),
        "announced once"
    );
    let announced = app
        .count("select count(*) from notification_receipts where announced")
        .await;
    assert_eq!(announced, 1);
    app.stop().await;
}

#[tokio::test]
async fn receipts_out_of_order_keep_the_latest_real_state() {
    let app = spawn_app().await;
    let (sms, post) = halves(&app, &tax_code(711)).await;

    // Delivered at 10:10, then a failure seen at 10:05 arrives late: still delivered.
    app.publish(&receipt(&sms, "delivered", "2026-11-22T10:10:00Z"))
        .await;
    app.publish(&receipt(&sms, "failed", "2026-11-22T10:05:00Z"))
        .await;
    // A letter delivered, then returned later: the return is the real state.
    app.publish(&receipt(&post, "delivered", "2026-11-25T09:00:00Z"))
        .await;
    app.publish(&receipt(&post, "returned", "2026-11-28T09:00:00Z"))
        .await;
    failure_of(&app, &post).await;
    wait_receipts(&app, 4).await;
    assert_eq!(state_of(&app, &sms).await, "delivered");
    assert_eq!(state_of(&app, &post).await, "returned");
    assert!(
        app.events_so_far("pin.delivery_failed").await.is_empty(),
        "a stale failure is not announced"
    );
    let late_applied = app
        .count("select count(*) from notification_receipts where status = 'failed' and not applied")
        .await;
    assert_eq!(late_applied, 1, "the late receipt is logged, not applied");

    // A delivery seen after the return does not bring a second announcement when the
    // letter comes back once more.
    app.publish(&receipt(&post, "delivered", "2026-11-29T09:00:00Z"))
        .await;
    app.publish(&receipt(&post, "returned", "2026-11-30T09:00:00Z"))
        .await;
    // At one instant a failure outranks a delivery.
    let (sms2, _) = halves(&app, &tax_code(712)).await;
    app.publish(&receipt(&sms2, "delivered", "2026-11-22T11:00:00Z"))
        .await;
    app.publish(&receipt(&sms2, "failed", "2026-11-22T11:00:00Z"))
        .await;
    failure_of(&app, &sms2).await;
    wait_receipts(&app, 8).await;
    assert_eq!(state_of(&app, &post).await, "returned");
    assert_eq!(state_of(&app, &sms2).await, "failed");
    assert!(app.events_so_far("pin.delivery_failed").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_receipt_for_an_unknown_notification_is_logged_and_audited_not_dead_lettered() {
    let app = spawn_app().await;
    let unknown = "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
    app.publish(&receipt(unknown, "failed", "2026-11-22T10:05:00Z"))
        .await;
    let (sms, _) = halves(&app, &tax_code(721)).await;
    app.publish(&receipt(&sms, "delivered", "2026-11-22T10:06:00Z"))
        .await;
    wait_receipts(&app, 2).await;
    assert_eq!(
        state_of(&app, &sms).await,
        "delivered",
        "the worker carried on"
    );
    let logged = app
        .count(&format!(
            "select count(*) from notification_receipts where notification_id = '{unknown}' and not known"
        ))
        .await;
    assert_eq!(logged, 1);
    let audited = app
        .count("select count(*) from audit_log where action = 'delivery.receipt.unknown' and actor = 'sms-gateway'")
        .await;
    assert_eq!(audited, 1);
    assert!(app.drain(&receipts_dlq(&app)).await.is_empty());
    assert!(app.events_so_far("pin.delivery_failed").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_failed_notice_without_a_pin_half_is_recorded_not_announced() {
    let app = spawn_app().await;
    let mut request = pin_request(&tax_code(731), "online");
    request["data"]["applicant"]["residence_country"] = json!("IT");
    app.publish(&request).await;
    let notice = app.take(&app.notify_queue("email"), 1).await.remove(0);
    let id = notice.body["data"]["notification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.publish(&receipt(&id, "failed", "2026-11-22T10:05:00Z"))
        .await;
    wait_receipts(&app, 1).await;
    assert_eq!(state_of(&app, &id).await, "failed");
    // A later SMS failure is announced, so the e-mail's would have come first.
    let (sms, _) = halves(&app, &tax_code(732)).await;
    app.publish(&receipt(&sms, "failed", "2026-11-22T10:06:00Z"))
        .await;
    failure_of(&app, &sms).await;
    assert!(app.events_so_far("pin.delivery_failed").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn bad_receipts_are_dead_lettered() {
    let app = spawn_app().await;
    let lost = receipt(
        "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        "lost",
        "2026-11-22T10:05:00Z",
    );
    let not_an_id = receipt("sms-42", "failed", "2026-11-22T10:05:00Z");
    let mut chatty = receipt(
        "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        "failed",
        "2026-11-22T10:05:00Z",
    );
    chatty["data"]["secret"] = json!("ABCDEFGH");
    for bad in [&lost, &not_an_id, &chatty] {
        app.publish(bad).await;
    }
    let dead = app.take(&receipts_dlq(&app), 3).await;
    for letter in &dead {
        let reason = letter.header("x-pinflow-error").unwrap();
        assert!(
            reason.starts_with("schema violation in delivery.receipt"),
            "{reason}"
        );
        assert!(!String::from_utf8_lossy(&letter.raw).contains("ABCDEFGH"));
    }
    assert_eq!(
        app.count("select count(*) from notification_receipts")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn credential_show_lists_each_notification_with_its_delivery_state() {
    let app = spawn_app().await;
    let code = tax_code(741);
    let (sms, post) = halves(&app, &code).await;
    app.publish(&receipt(&sms, "delivered", "2026-11-22T10:05:00Z"))
        .await;
    wait_receipts(&app, 1).await;
    let (ok, out, err) = app.pinflow(&["credential", "show", &code]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let listed = shown["credentials"][0]["notifications"].as_array().unwrap();
    let state = |id: &str| {
        listed
            .iter()
            .find(|n| n["notification_id"] == id)
            .map(|n| n["state"].clone())
    };
    assert_eq!(state(&sms), Some(json!("delivered")));
    assert_eq!(state(&post), Some(json!("sent")));
    app.stop().await;
}

/// A notification the ledger has as sent at noon, carrying `carries` (or no secret).
async fn seed_sent(app: &TestApp, channel: &str, carries: Option<&str>) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "insert into notifications (notification_id, template, channel, tax_code,
             credential_id, carries, state, created_at, sent_at, state_at)
         values ($1, 'pin_first_half', $2, $3, gen_random_uuid(), $4, 'sent',
             '2026-11-22T12:00:00Z', '2026-11-22T12:00:00Z', '2026-11-22T12:00:00Z')",
    )
    .bind(&id)
    .bind(channel)
    .bind(tax_code(80))
    .bind(carries)
    .execute(&app.pool)
    .await
    .expect("seed a notification");
    id
}

/// Receipts waiting when the worker starts come in batches, applied together; each
/// has the outcome it would have alone, and every one is logged once.
#[tokio::test]
async fn receipts_handled_in_batches_have_the_outcome_each_would_have_alone() {
    let (mut app, connections, rules) = common::observer_with(&[]).await;
    app.workers = vec!["delivery_receipts".into()];
    let delivered = seed_sent(&app, "sms", Some("first_half")).await;
    let failed = seed_sent(&app, "sms", Some("first_half")).await;
    let returned = seed_sent(&app, "post", Some("second_half")).await;
    let later = seed_sent(&app, "sms", Some("first_half")).await;
    let announced = seed_sent(&app, "sms", Some("first_half")).await;
    let twice = seed_sent(&app, "sms", Some("first_half")).await;
    // `later` already has a newer word; `announced` had its failure announced.
    sqlx::query(
        "update notifications set state = 'delivered', state_at = '2026-11-22T15:00:00Z'
         where notification_id = $1",
    )
    .bind(&later)
    .execute(&app.pool)
    .await
    .expect("a newer word");
    sqlx::query(
        "insert into notification_receipts (message_id, notification_id, status,
             observed_at, received_at, source, known, applied, announced)
         values ('m-0', $1, 'failed', '2026-11-22T12:30:00Z', now(), 'sms-gateway',
             true, true, true)",
    )
    .bind(&announced)
    .execute(&app.pool)
    .await
    .expect("an announced failure");
    let unknown = uuid::Uuid::new_v4().to_string();
    let receipts = [
        receipt(&delivered, "delivered", "2026-11-22T13:00:00Z"),
        receipt(&failed, "failed", "2026-11-22T13:00:00Z"),
        receipt(&returned, "returned", "2026-11-22T13:00:00Z"),
        receipt(&later, "failed", "2026-11-22T13:00:00Z"),
        receipt(&announced, "returned", "2026-11-22T13:00:00Z"),
        receipt(&unknown, "delivered", "2026-11-22T13:00:00Z"),
        receipt(&twice, "failed", "2026-11-22T13:00:00Z"),
        receipt(&twice, "failed", "2026-11-22T13:05:00Z"),
    ];
    for r in &receipts {
        app.publish(r).await;
    }
    let app = common::start_app(app, connections, rules).await;
    wait_receipts(&app, receipts.len() as i64 + 1).await;

    for (id, state) in [
        (&delivered, "delivered"),
        (&failed, "failed"),
        (&returned, "returned"),
        (&later, "delivered"),
        (&announced, "returned"),
        (&twice, "failed"),
    ] {
        assert_eq!(state_of(&app, id).await, state, "{id}");
    }
    let flags = |id: &str| {
        format!(
            "select count(*) from notification_receipts where notification_id = '{id}'
             and message_id <> 'm-0'"
        )
    };
    let logged = |id: &str, known: bool, applied: bool, announced: bool| {
        format!(
            "{} and known = {known} and applied = {applied} and announced = {announced}",
            flags(id)
        )
    };
    for (sql, n) in [
        (logged(&delivered, true, true, false), 1),
        (logged(&failed, true, true, true), 1),
        (logged(&returned, true, true, true), 1),
        (logged(&later, true, false, false), 1),
        (logged(&announced, true, true, false), 1),
        (logged(&unknown, false, false, false), 1),
        (logged(&twice, true, true, true), 1),
        (logged(&twice, true, true, false), 1),
    ] {
        assert_eq!(app.count(&sql).await, n, "{sql}");
    }
    failure_of(&app, &failed).await;
    failure_of(&app, &returned).await;
    failure_of(&app, &twice).await;
    // Every output published: nothing more can come.
    app.wait_for_empty_outbox().await;
    assert!(
        app.events_so_far("pin.delivery_failed").await.is_empty(),
        "three failures announced, once each"
    );
    app.stop().await;
}
