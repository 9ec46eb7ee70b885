//! The expiry worker, tried as the portal and the gateways see it: PINs stop working at
//! the instant of their deadline, sweeps (fired by hand, the clock moved instead of
//! waited for) announce the expiry and the reminder once, replicas share a sweep, and
//! an expired PIN is renewed by a new request.

mod common;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use common::account::{AccountApp, eventually, request_with_card};
use common::issuance::IssuanceApp;
use common::{TestApp, assert_valid, spawn_app, tax_code};
use pinflow::clock::Clock;
use serde_json::Value;

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .expect("an instant")
        .parse()
        .expect("RFC 3339")
}

/// Moves the test's clock to `target` (never backwards).
fn move_to(app: &TestApp, target: DateTime<Utc>) {
    let by = target - app.clock.now();
    assert!(by > Duration::zero(), "the clock only moves forward");
    app.clock.advance(by);
}

async fn status(app: &TestApp, credential_id: &str) -> String {
    sqlx::query_scalar("select status from credentials where id = $1::uuid")
        .bind(credential_id)
        .fetch_one(&app.pool)
        .await
        .expect("a credential")
}

async fn email_templates(app: &TestApp, n: usize) -> Vec<String> {
    let taken = app.take(&app.notify_queue("email"), n).await;
    taken
        .iter()
        .map(|t| {
            assert_valid(&t.body);
            assert!(
                t.body["data"].get("secret").is_none(),
                "a notice carries no secret"
            );
            t.body["data"]["template"]
                .as_str()
                .expect("template")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_pin_expires_at_the_exact_instant_of_its_deadline_for_both_holders() {
    let app = spawn_app().await;
    for (n, holder, months) in [(101, "citizen", 6), (102, "intermediary", 3)] {
        let code = tax_code(n);
        let issued_at = app.clock.now();
        let live = app.live_pin(&request_with_card(&code, holder)).await;
        let expected = issued_at
            .checked_add_months(chrono::Months::new(months))
            .unwrap();
        assert!(
            (live.valid_until - expected).num_seconds().abs() < 60,
            "{holder}: {months} months from activation"
        );
        move_to(&app, live.valid_until - Duration::seconds(30));
        assert_eq!(app.verify_status(&code, &live.pin).await, "ok", "{holder}");
        app.jobs_now.fire();
        let reminder = app
            .take_event_where("pin.expiring", |e| e["data"]["tax_code"] == code.as_str())
            .await;
        assert_eq!(instant(&reminder["data"]["valid_until"]), live.valid_until);
        assert_eq!(
            app.verify_status(&code, &live.pin).await,
            "ok",
            "{holder}: not yet"
        );
        assert_eq!(status(&app, &live.credential_id).await, "active");

        move_to(&app, live.valid_until);
        assert_eq!(
            app.verify_status(&code, &live.pin).await,
            "expired",
            "{holder}: from the instant, before any sweep"
        );
        app.jobs_now.fire();
        let expired = app
            .take_event_where("pin.expired", |e| e["data"]["tax_code"] == code.as_str())
            .await;
        assert_eq!(
            expired["data"]["credential_id"],
            live.credential_id.as_str()
        );
        assert_eq!(expired["data"]["deadline"], "validity");
        assert_eq!(instant(&expired["data"]["expired_at"]), live.valid_until);
        assert_eq!(status(&app, &live.credential_id).await, "expired");
        assert_eq!(app.verify_status(&code, &live.pin).await, "expired");
        assert_eq!(
            email_templates(&app, 2).await,
            ["pin_expiring", "pin_expired"]
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_reminder_goes_once_and_only_within_its_period() {
    let app = spawn_app_with_reminder("P14D").await;
    let code = tax_code(103);
    let live = app.live_pin(&request_with_card(&code, "citizen")).await;
    move_to(&app, live.valid_until - Duration::days(15));
    app.jobs_now.fire();
    move_to(&app, live.valid_until - Duration::days(13));
    app.jobs_now.fire();
    let reminder = app.event("pin.expiring").await;
    assert_eq!(
        reminder["data"]["credential_id"],
        live.credential_id.as_str()
    );
    for _ in 0..3 {
        app.jobs_now.fire();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    move_to(&app, live.valid_until + Duration::seconds(1));
    app.jobs_now.fire();
    app.event("pin.expired").await;
    assert!(
        app.events_so_far("pin.expiring").await.is_empty(),
        "one reminder"
    );
    let reminders = "select count(*) from notifications where template = 'pin_expiring'";
    assert_eq!(app.count(reminders).await, 1);
    let audited = "select count(*) from audit_log where action = 'pin.expiring'";
    assert_eq!(app.count(audited).await, 1);
    assert_eq!(
        email_templates(&app, 2).await,
        ["pin_expiring", "pin_expired"]
    );
    assert!(app.drain(&app.notify_queue("email")).await.is_empty());
    app.stop().await;
}

async fn spawn_app_with_reminder(period: &str) -> TestApp {
    common::spawn_app_with(&["--expiry-reminder", period]).await
}

/// The last day of February of `year`.
fn end_of_february(year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, 3, 1)
        .unwrap()
        .pred_opt()
        .unwrap()
}

#[tokio::test]
async fn pins_activated_at_a_month_end_expire_on_the_last_day_of_february() {
    let app = spawn_app().await;
    let now = app.clock.now();
    let mut year = now.year();
    if now >= Utc.with_ymd_and_hms(year, 8, 31, 9, 0, 0).unwrap() {
        year += 1;
    }
    move_to(&app, Utc.with_ymd_and_hms(year, 8, 31, 9, 0, 0).unwrap());
    let citizen = tax_code(104);
    let live = app.live_pin(&request_with_card(&citizen, "citizen")).await;
    assert_eq!(live.valid_until.date_naive(), end_of_february(year + 1));

    move_to(&app, Utc.with_ymd_and_hms(year, 11, 30, 9, 0, 0).unwrap());
    let intermediary = tax_code(105);
    let short = app
        .live_pin(&request_with_card(&intermediary, "intermediary"))
        .await;
    assert_eq!(short.valid_until.date_naive(), end_of_february(year + 1));

    move_to(
        &app,
        live.valid_until.min(short.valid_until) - Duration::minutes(1),
    );
    assert_eq!(app.verify_status(&citizen, &live.pin).await, "ok");
    move_to(&app, live.valid_until.max(short.valid_until));
    assert_eq!(app.verify_status(&citizen, &live.pin).await, "expired");
    assert_eq!(
        app.verify_status(&intermediary, &short.pin).await,
        "expired"
    );
    app.jobs_now.fire();
    for (code, live) in [(&citizen, &live), (&intermediary, &short)] {
        let expired = app
            .take_event_where("pin.expired", |e| e["data"]["tax_code"] == code.as_str())
            .await;
        let at = instant(&expired["data"]["expired_at"]);
        assert_eq!(at, live.valid_until);
        assert_eq!(at.date_naive(), end_of_february(year + 1));
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unused_initial_pin_and_reset_token_stop_on_time_and_are_tidied_up() {
    let app = spawn_app().await;
    let code = tax_code(106);
    let (first, second) = app.halves_of(&request_with_card(&code, "citizen")).await;
    let issued = app.event("pin.issued").await;
    let window = instant(&issued["data"]["initial_pin_expires_at"]);
    let contacts =
        serde_json::json!({ "mobile": "+4915112345678", "email": "mario.rossi@example.org" });
    let token = common::account::secret(&app.reset_link(&code, contacts).await);

    app.clock.advance(Duration::hours(24));
    let confirm = common::command("pin.reset.confirm", serde_json::json!({ "token": token }));
    app.publish(&confirm).await;
    let refused = app.event("pin.reset.rejected").await;
    assert_eq!(
        refused["data"]["reason"], "token_invalid",
        "late, before any sweep"
    );

    move_to(&app, window);
    let reply = app.first_access(&code, &format!("{first}{second}")).await;
    assert_eq!(
        reply["status"], "expired",
        "from the instant, before any sweep"
    );
    app.jobs_now.fire();
    let expired = app.event("pin.expired").await;
    assert_eq!(expired["data"]["deadline"], "initial_pin");
    assert_eq!(instant(&expired["data"]["expired_at"]), window);
    let credential = issued["data"]["credential_id"].as_str().unwrap();
    let tidy = format!(
        "select count(*) from credentials where id = '{credential}'
         and status = 'expired' and initial_pin_hash is null and pin_hash is null"
    );
    assert_eq!(app.count(&tidy).await, 1);
    let pending = "select count(*) from reset_tokens where state = 'pending'";
    eventually("the late token is marked expired", || async {
        app.count(pending).await == 0
    })
    .await;
    let expired_tokens = "select count(*) from reset_tokens where state = 'expired'";
    assert_eq!(app.count(expired_tokens).await, 1);
    let notices = "select count(*) from notifications where template = 'pin_expired'";
    assert_eq!(
        app.count(notices).await,
        0,
        "an unused initial PIN expires quietly"
    );
    app.stop().await;
}

#[tokio::test]
async fn after_expiry_a_new_request_replaces_the_expired_pin_and_keeps_its_history() {
    let app = spawn_app().await;
    let code = tax_code(107);
    let old = app.live_pin(&request_with_card(&code, "citizen")).await;
    // Past the deadline: the reply gives it to the millisecond, the database keeps the
    // microseconds, and the sweep may run within a millisecond of the move.
    move_to(&app, old.valid_until + Duration::seconds(1));
    app.jobs_now.fire();
    app.event("pin.expired").await;

    let (first, second) = app.halves_of(&request_with_card(&code, "citizen")).await;
    let issued = app
        .take_event_where("pin.issued", |e| {
            e["data"]["credential_id"] != old.credential_id.as_str()
        })
        .await;
    let reply = app.first_access(&code, &format!("{first}{second}")).await;
    assert_eq!(reply["status"], "ok");
    let pin = reply["pin"].as_str().unwrap();
    assert_eq!(app.verify_status(&code, pin).await, "ok");
    assert_eq!(app.verify_status(&code, &old.pin).await, "invalid");
    let history = format!("select count(*) from credentials where tax_code = '{code}'");
    assert_eq!(app.count(&history).await, 2);
    assert_eq!(status(&app, &old.credential_id).await, "expired");
    let new_id = issued["data"]["credential_id"].as_str().unwrap();
    assert_eq!(status(&app, new_id).await, "active");
    let audited = format!(
        "select count(*) from audit_log where credential_id = '{}' and action = 'pin.expired'",
        old.credential_id
    );
    assert_eq!(
        app.count(&audited).await,
        1,
        "the old credential's history stays"
    );
    app.stop().await;
}
