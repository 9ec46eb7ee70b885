//! Applications for benefits, tried as the portal would: accepted at once with
//! device-level authentication, held with an ordinary PIN (the envelope's `time` kept
//! as the filing time), released once each and in filing order when the PIN becomes a
//! device PIN, even when the conversion's messages arrive twice, and left held, saying
//! so, when the PIN is revoked.

mod common;

use common::conversion::{ConversionApp, application, event, review, submission};
use common::{PATIENCE, Seed, TestApp, seed_credential, spawn_app, tax_code};
use serde_json::{Value, json};

/// Waits until `n` `application.released` events about `tax_code` have come, then
/// returns them in the order they came.
async fn released(app: &TestApp, tax_code: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(app.event_for("application.released", tax_code).await);
    }
    out
}

fn ids(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["data"]["application_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn device_level_authentication_is_accepted_at_once() {
    let app = spawn_app().await;
    for (n, with) in ["pin_device", "spid", "cie", "cns"].into_iter().enumerate() {
        let code = tax_code(n as u32 + 1);
        app.publish(&application(
            &code,
            &format!("APP-{n}"),
            with,
            "2026-11-22T10:00:00Z",
        ))
        .await;
        let accepted = app.event_for("application.accepted", &code).await;
        assert_eq!(accepted["data"]["application_id"], format!("APP-{n}"));
        assert_eq!(accepted["data"]["benefit"], "NASpI");
    }
    assert!(app.events_so_far("application.held").await.is_empty());
    let accepted = app
        .count("select count(*) from applications where status = 'accepted'")
        .await;
    assert_eq!(accepted, 4);
    app.stop().await;
}

#[tokio::test]
async fn held_applications_are_released_once_each_in_filing_order_with_their_filing_time() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(10)).await;
    let code = citizen.tax_code.as_str();
    // Filed out of arrival order; the legal time is the envelope's.
    let filings = [
        ("APP-C", "2026-11-20T09:00:00+01:00"),
        ("APP-A", "2026-11-01T08:00:00.123456Z"),
        ("APP-B", "2026-11-10T12:30:00Z"),
    ];
    for (id, time) in filings {
        app.publish(&application(code, id, "pin_ordinary", time))
            .await;
        let held = app.event_for("application.held", code).await;
        assert_eq!(held["data"]["application_id"], id);
        assert_eq!(held["data"]["reason"], "ordinary_pin");
        assert_eq!(
            held["data"]["credential_id"],
            citizen.credential_id.as_str()
        );
        let filed: chrono::DateTime<chrono::Utc> =
            held["data"]["filed_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            filed,
            time.parse::<chrono::DateTime<chrono::Utc>>().unwrap()
        );
    }
    let requested = app.awaiting_review(&citizen).await;
    let conversion_id = requested["data"]["conversion_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approval = review(&conversion_id, "approved", "op-17");
    app.publish(&approval).await;
    app.publish(&approval).await;
    let converted = app.event_for("pin.converted", code).await;
    let out = released(&app, code, 3).await;
    assert_eq!(ids(&out), ["APP-A", "APP-B", "APP-C"], "in filing order");
    assert_eq!(out[0]["data"]["filed_at"], "2026-11-01T08:00:00.123456Z");
    assert_eq!(out[2]["data"]["filed_at"], "2026-11-20T08:00:00Z");
    assert!(
        out.iter()
            .all(|e| e["data"]["credential_id"] == citizen.credential_id.as_str())
    );

    // The conversion's event delivered again, straight to the worker's queue, and a
    // second conversion event for the same citizen: nothing is released twice.
    let again = serde_json::to_vec(&converted).unwrap();
    let queue = app.names.work_queue("conversion");
    let properties = common::command_properties(&converted);
    pinflow::broker::publish::publish_routed(
        &app.channel,
        "",
        &queue,
        &again,
        properties,
        PATIENCE,
    )
    .await
    .unwrap();
    let mut other = converted.clone();
    other["id"] = json!(uuid::Uuid::new_v4().to_string());
    app.publish_event(&other).await;
    // Behind them in the queue: an application accepted at once.
    app.publish(&application(code, "APP-D", "spid", "2026-11-22T10:00:00Z"))
        .await;
    app.event_for("application.accepted", code).await;
    assert!(
        app.events_so_far("application.released").await.is_empty(),
        "once each"
    );
    let seen: Vec<Value> = app.events_so_far("pin.converted").await;
    assert_eq!(seen.len(), 1, "only the copy this test published");
    assert_eq!(seen[0]["id"], other["id"]);
    let rows = app
        .count("select count(*) from applications where status = 'released'")
        .await;
    assert_eq!(rows, 3);
    let audit = app
        .count("select count(*) from audit_log where action = 'application.released'")
        .await;
    assert_eq!(audit, 3);
    app.stop().await;
}

#[tokio::test]
async fn an_application_filed_after_the_conversion_is_released_at_once() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(11)).await;
    let code = citizen.tax_code.as_str();
    app.publish(&submission(code, "office")).await;
    app.event_for("pin.converted", code).await;
    app.publish(&application(
        code,
        "APP-LATE",
        "pin_ordinary",
        "2026-12-01T10:00:00Z",
    ))
    .await;
    let held = app.event_for("application.held", code).await;
    let out = released(&app, code, 1).await;
    assert_eq!(out[0]["data"]["filed_at"], held["data"]["filed_at"]);
    assert_eq!(out[0]["data"]["application_id"], "APP-LATE");
    app.stop().await;
}

#[tokio::test]
async fn applications_held_for_a_revoked_pin_stay_held_and_say_so() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(12)).await;
    let code = citizen.tax_code.as_str();
    app.publish(&application(
        code,
        "APP-1",
        "pin_ordinary",
        "2026-11-05T10:00:00Z",
    ))
    .await;
    let held = app.event_for("application.held", code).await;
    // The revocation as its worker records and announces it.
    sqlx::query("update credentials set status = 'revoked', ended_at = now() where tax_code = $1")
        .bind(code)
        .execute(&app.pool)
        .await
        .unwrap();
    let revoked = event(
        "pin.revoked",
        json!({ "tax_code": code, "credential_id": citizen.credential_id, "channel": "online" }),
    );
    app.publish_event(&revoked).await;
    app.publish_event(&revoked).await;
    let still = app
        .take_event_where("application.held", |e| e["data"]["reason"] == "pin_revoked")
        .await;
    assert_eq!(still["data"]["application_id"], "APP-1");
    assert_eq!(still["data"]["filed_at"], held["data"]["filed_at"]);
    assert_eq!(
        still["data"]["credential_id"],
        citizen.credential_id.as_str()
    );
    let reason: String = sqlx::query_scalar("select hold_reason from applications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(reason, "pin_revoked");

    // A new PIN, converted: the application goes ahead at last, as of its filing time.
    let renewed = app.citizen(code).await;
    app.publish(&submission(code, "office")).await;
    app.event_for("pin.converted", code).await;
    let out = released(&app, code, 1).await;
    assert_eq!(out[0]["data"]["filed_at"], held["data"]["filed_at"]);
    assert_eq!(
        out[0]["data"]["credential_id"],
        renewed.credential_id.as_str()
    );
    assert!(
        app.events_so_far("application.held").await.is_empty(),
        "said once"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_application_is_filed_once_and_bad_input_is_dead_lettered() {
    let app = spawn_app().await;
    let code = tax_code(13);
    let first = application(&code, "APP-9", "pin_ordinary", "2026-11-05T10:00:00Z");
    app.publish(&first).await;
    app.event_for("application.held", &code).await;
    let resent = application(&code, "APP-9", "pin_ordinary", "2026-11-06T10:00:00Z");
    app.publish(&resent).await;
    let unknown = application(&code, "APP-10", "password", "2026-11-06T10:00:00Z");
    app.publish(&unknown).await;
    // The same portal id for someone else is their own application.
    let other = tax_code(14);
    app.publish(&application(
        &other,
        "APP-9",
        "spid",
        "2026-11-06T10:00:00Z",
    ))
    .await;
    let accepted = app.event_for("application.accepted", &other).await;
    assert_eq!(accepted["data"]["application_id"], "APP-9");
    let dead = app.take(&app.conversion_dlq(), 1).await;
    assert_eq!(dead[0].body["id"], unknown["id"]);
    let reason = dead[0].header("x-pinflow-error").unwrap();
    assert!(reason.contains("application.submit"), "{reason}");
    assert!(
        app.events_so_far("application.held").await.is_empty(),
        "filed once"
    );
    let filed: String = sqlx::query_scalar(
        "select to_char(filed_at at time zone 'UTC', 'YYYY-MM-DD') from applications
         where tax_code = $1 and application_id = 'APP-9'",
    )
    .bind(&code)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(filed, "2026-11-05", "the first filing time stands");
    assert_eq!(app.count("select count(*) from applications").await, 2);
    app.stop().await;
}

/// Applications waiting when the worker starts come in batches, filed together; each
/// has the outcome it would have alone.
#[tokio::test]
async fn applications_filed_in_batches_have_the_outcome_each_would_have_alone() {
    let (mut app, connections, rules) = common::observer_with(&[]).await;
    app.workers = vec!["conversion".into()];
    let [ordinary, other, device, refiled, unknown, spid, twice] =
        [70, 71, 72, 73, 74, 75, 76].map(tax_code);
    let ordinary_id = seed_credential(&app, &ordinary, Seed::default()).await;
    seed_credential(&app, &other, Seed::default()).await;
    let device_pin = Seed {
        kind: "device",
        ..Seed::default()
    };
    let device_id = seed_credential(&app, &device, device_pin).await;
    sqlx::query(
        "insert into applications (application_id, tax_code, benefit, authenticated_with,
             status, hold_reason, filed_at, submit_message_id, received_at)
         values ('APP-R', $1, 'NASpI', 'pin_ordinary', 'held', 'ordinary_pin', now(), 'm-0', now())",
    )
    .bind(&refiled)
    .execute(&app.pool)
    .await
    .expect("seed an application");
    let time = "2026-11-22T10:00:00Z";
    let filings = [
        application(&ordinary, "APP-O", "pin_ordinary", time),
        application(&other, "APP-P", "pin_ordinary", time),
        application(&device, "APP-D", "pin_ordinary", time),
        application(&refiled, "APP-R", "pin_ordinary", time),
        application(&unknown, "APP-N", "pin_ordinary", time),
        application(&spid, "APP-S", "spid", time),
        application(&twice, "APP-T1", "pin_ordinary", time),
        application(&twice, "APP-T2", "pin_ordinary", time),
    ];
    for filing in &filings {
        app.publish(filing).await;
    }
    let app = common::start_app(app, connections, rules).await;

    let held = app.event_for("application.held", &ordinary).await;
    assert_eq!(held["data"]["credential_id"], ordinary_id.as_str());
    assert_eq!(held["data"]["filed_at"], "2026-11-22T10:00:00Z");
    app.event_for("application.held", &other).await;
    let unknown_held = app.event_for("application.held", &unknown).await;
    assert!(
        unknown_held["data"]
            .get("credential_id")
            .is_none_or(Value::is_null)
    );
    let device_held = app.event_for("application.held", &device).await;
    assert_eq!(device_held["data"]["credential_id"], device_id.as_str());
    let out = released(&app, &device, 1).await;
    assert_eq!(
        ids(&out),
        ["APP-D"],
        "held and released at once: a device PIN"
    );
    app.event_for("application.accepted", &spid).await;
    app.event_for("application.held", &twice).await;
    app.event_for("application.held", &twice).await;
    assert_eq!(
        app.count("select count(*) from applications").await,
        8,
        "seven filed, the refiled one once"
    );
    assert_eq!(
        app.count(&format!(
            "select count(*) from applications where tax_code = '{refiled}'"
        ))
        .await,
        1
    );
    app.wait_for_count(
        "select count(*) from inbox where message_type = 'application.submit'",
        filings.len() as i64,
    )
    .await;
    assert!(
        app.events_so_far("application.held").await.is_empty(),
        "six held, none for the refiled application"
    );
    assert!(app.events_so_far("application.released").await.is_empty());
    assert!(app.events_so_far("application.accepted").await.is_empty());
    app.stop().await;
}
