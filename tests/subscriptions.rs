//! Workers consume each other's events: test-only subscribers to `pin.issued` see each
//! event once while issuance runs, an event published before its subscriber's first
//! start waits for it, and an event nobody subscribes to stays in the outbox instead
//! of being lost.

mod common;

use common::issuance::{IssuanceApp, pin_request};
use common::subscriber::{AUDIT_A, AUDIT_B, TABLE};
use common::{PATIENCE, observer_of, start_app, tax_code};
use lapin::types::FieldTable;
use pinflow::workers::REGISTRY;
use std::time::Duration;

#[tokio::test]
async fn two_subscribers_each_see_every_issued_pin_once() {
    let mut registry = REGISTRY.to_vec();
    registry.extend([AUDIT_A, AUDIT_B]);
    let (app, connections, rules) = observer_of(registry, &[]).await;
    sqlx::query(TABLE).execute(&app.pool).await.unwrap();
    let app = start_app(app, connections, rules).await;

    let requests: Vec<_> = (1..=5)
        .map(|n| pin_request(&tax_code(n), "online"))
        .collect();
    for request in &requests {
        app.publish(request).await;
    }
    app.wait_for_count("select count(*) from seen_events", 10)
        .await;
    let issued = app.count("select count(*) from credentials").await;
    assert_eq!(issued, 5);
    for worker in ["audit_a", "audit_b"] {
        let distinct = app
            .count(&format!(
                "select count(distinct credential_id) from seen_events where worker = '{worker}'"
            ))
            .await;
        assert_eq!(distinct, 5, "{worker} saw every credential once");
    }
    // The same event delivered again (a relay retry, a replay) has no second effect.
    let event = app.event("pin.issued").await;
    for queue in ["audit_a", "audit_b"] {
        let body = serde_json::to_vec(&event).unwrap();
        let properties = common::command_properties(&event);
        pinflow::broker::publish::publish_routed(
            &app.channel,
            "",
            &app.names.work_queue(queue),
            &body,
            properties,
            PATIENCE,
        )
        .await
        .unwrap();
    }
    // A new request queued behind the duplicates: once its event is seen, the
    // duplicates have been handled, and they changed nothing.
    app.publish(&pin_request(&tax_code(6), "online")).await;
    app.wait_for_count("select count(*) from seen_events", 12)
        .await;
    for worker in ["audit_a", "audit_b"] {
        let n = app
            .count(&format!(
                "select count(*) from seen_events where worker = '{worker}'"
            ))
            .await;
        assert_eq!(n, 6, "{worker} handled each of six events once");
    }
    let inbox = app
        .count("select count(*) from inbox where message_id = (select message_id from seen_events limit 1)")
        .await;
    assert_eq!(inbox, 2, "one inbox row per consuming queue");
    app.stop().await;
}

#[tokio::test]
async fn an_event_published_before_its_subscriber_first_starts_waits_for_it() {
    // The subscriber is registered but this process runs only issuance; nothing else
    // declared the subscriber's queue, so `run` must have.
    let mut registry = REGISTRY.to_vec();
    registry.push(AUDIT_A);
    let (mut app, connections, rules) = observer_of(REGISTRY.to_vec(), &[]).await;
    sqlx::query(TABLE).execute(&app.pool).await.unwrap();
    app.registry = registry.clone();
    app.workers = vec!["issuance".into()];
    let app = start_app(app, connections.clone(), rules.clone()).await;
    app.publish(&pin_request(&tax_code(21), "online")).await;
    app.event("pin.issued").await;
    let subscriber_queue = app.names.work_queue("audit_a");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.ready(&subscriber_queue).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event waits in the subscriber's queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.count("select count(*) from seen_events").await, 0);

    // Now the subscriber starts (a second process, say) and finds the event waiting.
    let setup = pinflow::app::Setup {
        connections,
        runtime: app.runtime.clone(),
        rules,
        keys: pinflow::seal::KeyRing::single(
            pinflow::seal::OutboxKey::from_base64(&app.key).unwrap(),
        ),
        clock: std::sync::Arc::new(app.clock.clone()),
        registry,
        workers: vec!["audit_a".into()],
        jobs_now: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let subscriber = tokio::spawn(pinflow::app::run(setup, async move {
        let _ = stopped.await;
    }));
    app.wait_for_count("select count(*) from seen_events", 1)
        .await;
    let _ = stop.send(());
    subscriber.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test]
async fn an_event_no_queue_takes_stays_in_the_outbox() {
    let app = common::spawn_app().await;
    // Take away the test's own subscription: nothing is bound to pin.issued now.
    app.channel
        .queue_unbind(
            app.events_queue().into(),
            app.names.events().into(),
            "#".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    app.halves_of(&pin_request(&tax_code(31), "online")).await;
    let sql = "select count(*) from outbox where message_type = 'pin.issued' and last_error like 'returned%'";
    app.wait_for_count(sql, 1).await;
    app.stop().await;
}
