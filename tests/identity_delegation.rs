//! The delegation worker, tried as the office counter would: a grant to a delegate
//! with a live credential, every refusal as `delegation.rejected`, one live delegation
//! per pair, revocation by id, a dated delegation ending at the exact start of the next
//! day in Italy (job or no job), `credential show` both ways, bad input dead-lettered.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::identity_delegation::{delegation_dlq, grant, revoke};
use common::phone_pins::PhonePinApp;
use common::{TestApp, spawn_app, tax_code};
use serde_json::Value;

async fn granted(app: &TestApp, delegator: &str) -> Value {
    app.take_event_where("delegation.granted", |e| e["data"]["tax_code"] == delegator)
        .await
}

async fn rejected(app: &TestApp, reason: &str) -> Value {
    app.take_event_where("delegation.rejected", |e| e["data"]["reason"] == reason)
        .await
}

fn id_of(event: &Value) -> String {
    event["data"]["delegation_id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

async fn live_rows(app: &TestApp) -> i64 {
    app.count("select count(*) from delegations where status = 'live'")
        .await
}

#[tokio::test]
async fn a_delegate_with_a_live_credential_is_granted_and_shown_both_ways() {
    let app = spawn_app().await;
    let (delegator, delegate) = (tax_code(601), tax_code(602));
    app.live_credential(&delegate).await;
    app.publish(&grant(&delegator, &delegate, None)).await;
    let event = granted(&app, &delegator).await;
    assert_eq!(event["data"]["delegate_tax_code"], delegate.as_str());
    assert!(
        event["data"].get("ends_at").is_none(),
        "no end given, none set"
    );
    let id = id_of(&event);
    assert_eq!(live_rows(&app).await, 1);
    let audited = app
        .count("select count(*) from audit_log where action = 'delegation.granted' and actor = 'op-17'")
        .await;
    assert_eq!(audited, 1);

    let (ok, out, err) = app.pinflow(&["credential", "show", &delegator]);
    assert!(ok, "a delegator without a credential is shown too: {err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["delegations_given"][0]["delegation_id"], id.as_str());
    assert_eq!(shown["delegations_given"][0]["status"], "live");
    assert_eq!(shown["delegations_received"], serde_json::json!([]));
    let (ok, out, err) = app.pinflow(&["credential", "show", &delegate]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown["delegations_received"][0]["delegation_id"],
        id.as_str()
    );
    assert_eq!(
        shown["delegations_received"][0]["delegator_tax_code"],
        delegator.as_str()
    );
    app.stop().await;
}

#[tokio::test]
async fn every_refused_grant_is_an_event_and_changes_nothing() {
    let app = spawn_app().await;
    let (delegator, delegate, stranger) = (tax_code(611), tax_code(612), tax_code(613));
    app.live_credential(&delegate).await;
    app.live_credential(&delegator).await;

    app.publish(&grant(&delegate, &delegate, None)).await;
    let event = rejected(&app, "self_delegation").await;
    assert_eq!(event["data"]["tax_code"], delegate.as_str());

    app.publish(&grant(&delegator, &stranger, None)).await;
    let event = rejected(&app, "delegate_not_live").await;
    assert_eq!(event["data"]["delegate_tax_code"], stranger.as_str());

    let yesterday = (Utc::now() - Duration::days(2)).date_naive().to_string();
    app.publish(&grant(&delegator, &delegate, Some(&yesterday)))
        .await;
    rejected(&app, "valid_until_past").await;
    assert_eq!(app.count("select count(*) from delegations").await, 0);

    app.publish(&grant(&delegator, &delegate, Some("2030-01-15")))
        .await;
    let first = id_of(&granted(&app, &delegator).await);
    app.publish(&grant(&delegator, &delegate, Some("2031-01-15")))
        .await;
    let event = rejected(&app, "already_delegated").await;
    assert_eq!(
        id_of(&event),
        first,
        "the refusal names the live delegation"
    );
    let kept: Option<chrono::NaiveDate> =
        sqlx::query_scalar("select valid_until from delegations where status = 'live'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        kept.unwrap().to_string(),
        "2030-01-15",
        "the second grant changed nothing"
    );
    assert_eq!(app.count("select count(*) from delegations").await, 1);

    // The other way round is another pair.
    app.publish(&grant(&delegate, &delegator, None)).await;
    granted(&app, &delegate).await;

    // A delegate whose credential has expired is not live any more.
    app.clock.advance(Duration::days(61));
    app.publish(&grant(&stranger, &delegate, None)).await;
    rejected(&app, "delegate_not_live").await;
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'delegation.rejected'")
            .await,
        5
    );
    assert!(
        app.drain(&delegation_dlq(&app)).await.is_empty(),
        "refusals are no failures"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_revocation_ends_it_once_and_the_pair_may_be_granted_again() {
    let app = spawn_app().await;
    let (delegator, delegate) = (tax_code(621), tax_code(622));
    app.live_credential(&delegate).await;
    app.publish(&grant(&delegator, &delegate, None)).await;
    let id = id_of(&granted(&app, &delegator).await);

    app.publish(&revoke(&id)).await;
    let event = app.event("delegation.revoked").await;
    assert_eq!(id_of(&event), id);
    assert_eq!(event["data"]["tax_code"], delegator.as_str());
    assert_eq!(event["data"]["delegate_tax_code"], delegate.as_str());
    assert_eq!(live_rows(&app).await, 0);

    app.publish(&revoke(&id)).await;
    let again = rejected(&app, "not_live").await;
    assert_eq!(id_of(&again), id);
    assert_eq!(app.events_so_far("delegation.revoked").await.len(), 0);

    app.publish(&grant(&delegator, &delegate, None)).await;
    let renewed = id_of(&granted(&app, &delegator).await);
    assert_ne!(renewed, id);
    let ended_by: String =
        sqlx::query_scalar("select ended_by from delegations where status = 'revoked'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(ended_by, "op-18");
    app.stop().await;
}

#[tokio::test]
async fn a_dated_delegation_ends_at_the_start_of_the_next_day_in_italy() {
    let app = spawn_app().await;
    let (delegator, delegate) = (tax_code(631), tax_code(632));
    app.live_credential(&delegate).await;
    // Summer time: the day ends at 22:00 UTC.
    app.publish(&grant(&delegator, &delegate, Some("2030-07-15")))
        .await;
    let summer = granted(&app, &delegator).await;
    assert_eq!(summer["data"]["ends_at"], "2030-07-15T22:00:00.000Z");
    app.publish(&revoke(&id_of(&summer))).await;
    app.event("delegation.revoked").await;

    // Winter time: 23:00 UTC.
    app.publish(&grant(&delegator, &delegate, Some("2030-01-15")))
        .await;
    let winter = granted(&app, &delegator).await;
    assert_eq!(winter["data"]["ends_at"], "2030-01-15T23:00:00.000Z");
    let id = id_of(&winter);
    let end: DateTime<Utc> = "2030-01-15T23:00:00Z".parse().unwrap();
    // The delegate's credential must outlive 2030 for the regrant below.
    sqlx::query("update credentials set initial_pin_expires_at = '2031-01-01' where tax_code = $1")
        .bind(&delegate)
        .execute(&app.pool)
        .await
        .unwrap();

    app.move_clock_to(end - Duration::seconds(1));
    app.jobs_now.fire();
    app.publish(&grant(&delegator, &delegate, None)).await;
    let still = rejected(&app, "already_delegated").await;
    assert_eq!(
        id_of(&still),
        id,
        "a second before the end it is still live"
    );

    app.move_clock_to(end);
    app.jobs_now.fire();
    let expired = app.event("delegation.expired").await;
    assert_eq!(id_of(&expired), id);
    assert_eq!(expired["data"]["expired_at"], "2030-01-15T23:00:00.000Z");
    assert_eq!(expired["data"]["valid_until"], "2030-01-15");
    assert_eq!(live_rows(&app).await, 0);
    app.jobs_now.fire();
    app.publish(&grant(&delegator, &delegate, None)).await;
    granted(&app, &delegator).await;
    assert!(
        app.events_so_far("delegation.expired").await.is_empty(),
        "announced once"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_delegation_past_its_end_is_over_before_any_sweep() {
    let app = spawn_app().await;
    let (delegator, delegate) = (tax_code(641), tax_code(642));
    app.live_credential(&delegate).await;
    let tomorrow = (Utc::now() + Duration::days(1)).date_naive();
    app.publish(&grant(&delegator, &delegate, Some(&tomorrow.to_string())))
        .await;
    let first = granted(&app, &delegator).await;
    let end: DateTime<Utc> = first["data"]["ends_at"].as_str().unwrap().parse().unwrap();
    app.move_clock_to(end);
    // No job fired: the grant and the revocation find it ended by its stored end.
    app.publish(&revoke(&id_of(&first))).await;
    let expired = app.event("delegation.expired").await;
    assert_eq!(id_of(&expired), id_of(&first));
    rejected(&app, "not_live").await;
    app.publish(&grant(&delegator, &delegate, None)).await;
    let second = granted(&app, &delegator).await;
    assert_ne!(id_of(&second), id_of(&first));
    assert_eq!(live_rows(&app).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_delegation_commands_are_dead_lettered() {
    let app = spawn_app().await;
    let (delegator, delegate) = (tax_code(651), tax_code(652));
    let unknown = revoke("5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    let mut bad_check = delegate.clone();
    bad_check.replace_range(15..16, if delegate.ends_with('A') { "B" } else { "A" });
    let bad_tax_code = grant(&delegator, &bad_check, None);
    let mut misspelt = grant(&delegator, &delegate, None);
    misspelt["data"]["valid_untill"] = "2030-01-01".into();
    for bad in [&unknown, &bad_tax_code, &misspelt] {
        app.publish(bad).await;
    }
    let dead = app.take(&delegation_dlq(&app), 3).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| d.header("x-pinflow-error").unwrap())
        .collect();
    assert!(reasons[0].contains("no delegation"), "{reasons:?}");
    assert!(reasons[1].contains("delegate_tax_code"), "{reasons:?}");
    assert_eq!(app.count("select count(*) from delegations").await, 0);
    app.stop().await;
}
