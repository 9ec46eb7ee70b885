//! The real `pinflow` binary, started and killed as a child process: a crash between
//! commit and acknowledgement doubles nothing, SIGTERM stops it cleanly, and no PIN or
//! half reaches the logs (at the most verbose level), the events, the dead letters or
//! the database.

mod common;

use common::issuance::{IssuanceApp, pin_request};
use common::process::{Pinflow, key, start};
use common::{PATIENCE, TestApp, command, observer_with, tax_code};
use serde_json::json;
use sqlx::Connection as _;

async fn cleanup(app: TestApp) {
    app.stop().await;
}

#[tokio::test]
async fn a_crash_between_commit_and_ack_doubles_nothing() {
    let (app, connections, _) = observer_with(&[]).await;
    let key = key();
    let request = pin_request(&tax_code(40), "online");
    let crashing = start(
        &connections,
        &key,
        &[("PINFLOW_FAILPOINTS", "after-commit")],
    );
    app.wait_for_consumer(&app.work_queue()).await;
    app.publish(&request).await;
    let (status, log) = crashing.wait_exit().await;
    assert_eq!(status.code(), Some(86), "the failpoint fired: {log}");
    assert_eq!(
        app.count("select count(*) from credentials").await,
        1,
        "committed before the crash"
    );

    let pinflow = start(&connections, &key, &[]);
    app.wait_for_consumer(&app.work_queue()).await;
    app.take(&app.notify_queue("sms"), 1).await;
    app.take(&app.notify_queue("post"), 1).await;
    app.barrier().await;
    assert!(
        app.drain(&app.notify_queue("sms")).await.is_empty(),
        "one SMS"
    );
    assert!(
        app.drain(&app.notify_queue("post")).await.is_empty(),
        "one letter"
    );
    assert_eq!(
        app.count("select count(*) from credentials").await,
        1,
        "one PIN"
    );
    assert_eq!(app.events_so_far("pin.issued").await.len(), 1);
    let (status, _) = pinflow.terminate().await;
    assert!(
        status.success(),
        "SIGTERM stops pinflow cleanly: {status:?}"
    );
    cleanup(app).await;
}

/// What a batch causes goes out as the batch commits, from the worker itself: while
/// another relay leads (its lock is held here) and publishes nothing, a request's
/// halves still arrive, its outbox rows go and the ledger marks its notifications
/// sent. With publishing at commit off, a request's rows wait for the relay, and go
/// out once the lock is free.
#[tokio::test]
async fn a_batch_publishes_at_commit_while_no_relay_publishes() {
    let (app, connections, _) = observer_with(&[]).await;
    let key = key();
    let mut lock = app.pool.acquire().await.unwrap().detach();
    let held: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(pinflow::runtime::relay::RELAY_LOCK)
        .fetch_one(&mut lock)
        .await
        .unwrap();
    assert!(held, "the relay's lock is free before pinflow starts");

    let (waiting, at_commit) = (tax_code(43), tax_code(44));
    let off = start(
        &connections,
        &key,
        &[("PINFLOW_PUBLISH_AT_COMMIT", "false")],
    );
    app.wait_for_consumer(&app.work_queue()).await;
    let first = pin_request(&waiting, "online");
    app.publish(&first).await;
    app.wait_for_count(&rows_of(&first), 3).await;
    let (status, _) = off.terminate().await;
    assert!(status.success());

    let on = start(&connections, &key, &[]);
    app.wait_for_consumer(&app.work_queue()).await;
    let second = pin_request(&at_commit, "online");
    app.publish(&second).await;
    published(&app, &second, &at_commit).await;
    assert_eq!(
        app.count(&rows_of(&first)).await,
        3,
        "the relay published nothing"
    );
    assert_eq!(app.count(&sent_to(&waiting)).await, 0);

    lock.close().await.unwrap();
    published(&app, &first, &waiting).await;
    let (status, _) = on.terminate().await;
    assert!(status.success());
    cleanup(app).await;
}

/// Rows held at commit are the relay's when their process is gone: `due` leaves a row
/// alone while the lock it names is held and its hold lasts, and takes it as soon as
/// that lock is released, or once the hold has ended.
#[tokio::test]
async fn held_rows_are_due_when_their_process_lets_go_or_their_hold_ends() {
    use pinflow::store::outbox::{HOLDERS, due};
    let (app, _, _) = observer_with(&[]).await;
    let mut holder = app.pool.acquire().await.unwrap().detach();
    let (alive, gone) = (4242, 4243);
    let mut advisory = async |function: &str, key: i32| -> bool {
        sqlx::query_scalar(&format!("select {function}($1, $2)"))
            .bind(HOLDERS)
            .bind(key)
            .fetch_one(&mut holder)
            .await
            .unwrap()
    };
    for key in [alive, gone] {
        assert!(advisory("pg_try_advisory_lock", key).await);
    }
    let insert = |id: &str, held_by: i32, hold: &str| {
        format!(
            "insert into outbox (destination, routing_key, message_id, message_type, body,
                 next_attempt_at, held_by)
             values ('event', 'pin.issued', '{id}', 'pin.issued', '{{}}', now() + interval '{hold}', {held_by})"
        )
    };
    for sql in [
        insert("held", alive, "1 hour"),
        insert("let-go", gone, "1 hour"),
        insert("ended", alive, "-1 second"),
    ] {
        sqlx::query(&sql).execute(&app.pool).await.unwrap();
    }
    let due_ids = || async {
        let mut tx = app.pool.begin().await.unwrap();
        let rows = due(&mut tx, chrono::Utc::now(), 10).await.unwrap();
        let mut ids: Vec<String> = rows.into_iter().map(|r| r.message_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(due_ids().await, ["ended"]);
    assert!(advisory("pg_advisory_unlock", gone).await);
    assert_eq!(due_ids().await, ["ended", "let-go"]);
    // A closed connection's locks go when its backend exits, a moment later.
    holder.close().await.unwrap();
    common::account::eventually("the closed connection's lock is gone", || async {
        due_ids().await == ["ended", "held", "let-go"]
    })
    .await;
    cleanup(app).await;
}

/// Counts `request`'s rows in the outbox.
fn rows_of(request: &serde_json::Value) -> String {
    format!(
        "select count(*) from outbox where caused_by = '{}'",
        request["id"].as_str().unwrap()
    )
}

/// Counts the notifications to `code` the ledger marks sent.
fn sent_to(code: &str) -> String {
    format!("select count(*) from notifications where tax_code = '{code}' and state = 'sent'")
}

/// Both halves of `request` (for `code`) arrive, its outbox rows go and the ledger
/// marks its two notifications sent.
async fn published(app: &TestApp, request: &serde_json::Value, code: &str) {
    let halves = [
        app.take(&app.notify_queue("sms"), 1).await,
        app.take(&app.notify_queue("post"), 1).await,
    ];
    let credential: String =
        sqlx::query_scalar("select id::text from credentials where tax_code = $1")
            .bind(code)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    for half in &halves {
        assert_eq!(
            half[0].body["data"]["params"]["credential_id"],
            credential.as_str()
        );
    }
    // The rows go once their confirms are settled, after the halves may have arrived.
    common::account::eventually("the request's outbox rows are deleted", || async {
        app.count(&rows_of(request)).await == 0
    })
    .await;
    app.wait_for_count(&sent_to(code), 2).await;
}

#[tokio::test]
async fn no_pin_or_half_leaks_into_logs_events_dead_letters_or_the_database() {
    let (app, connections, _) = observer_with(&[]).await;
    let pinflow = start(&connections, &key(), &[]);
    app.wait_for_consumer(&app.work_queue()).await;

    let mut secrets = Vec::new();
    let mut events = Vec::new();
    for n in 0..3 {
        let code = tax_code(50 + n);
        let (first, second) = app.halves_of(&pin_request(&code, "online")).await;
        let initial_pin = format!("{first}{second}");
        let reply = app
            .ask(
                "pin.first_access",
                json!({ "tax_code": code, "initial_pin": initial_pin }),
            )
            .await;
        let pin = reply["pin"]
            .as_str()
            .expect("a PIN in the reply")
            .to_owned();
        let ok = app
            .ask("pin.verify", json!({ "tax_code": code, "pin": pin }))
            .await;
        assert_eq!(ok["status"], "ok");
        // A verify that dead-letters (no reply_to) with the right PIN in it.
        app.publish(&command(
            "pin.verify",
            json!({ "tax_code": code, "pin": pin }),
        ))
        .await;
        secrets.extend([first, second, pin]);
    }
    let office_code = tax_code(60);
    app.publish(&pin_request(&office_code, "office")).await;
    secrets.push(
        app.take(&app.notify_queue("office"), 1)
            .await
            .remove(0)
            .body["data"]["secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for event_type in ["pin.issued", "pin.activated"] {
        for _ in 0..3 {
            events.push(app.event(event_type).await.to_string());
        }
    }
    let dead_letters: Vec<String> = app
        .take(&app.dlq(), 3)
        .await
        .iter()
        .map(|d| format!("{:?} {}", d.headers, String::from_utf8_lossy(&d.raw)))
        .collect();
    app.barrier().await;
    let (status, log) = pinflow.terminate().await;
    assert!(status.success());
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log was captured at a verbose level"
    );

    let dump = std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(&app.database_url)
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains(&office_code), "the dump holds the data");
    assert_eq!(secrets.len(), 10);
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
    assert!(leaks.is_empty(), "secrets leaked into: {leaks:?}");
    cleanup(app).await;
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_naming_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .arg("run")
        .env("PINFLOW_RETRY_MIN_DELAY", "soon")
        .output()
        .expect("run pinflow");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--retry-min-delay") && stderr.contains("PINFLOW_RETRY_MIN_DELAY"),
        "{stderr}"
    );

    // A key that is not a key (no key at all is fine: `run` makes one).
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .arg("run")
        .env("PINFLOW_OUTBOX_KEY", "not-a-key")
        .output()
        .expect("run pinflow");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("PINFLOW_OUTBOX_KEY"));
}

/// `PINFLOW_ASYNC_THREADS` sets the threads of `pinflow run`'s async runtime; by
/// default it has half the cores, at least one.
#[tokio::test]
async fn the_async_runtime_has_the_threads_it_is_given() {
    let (app, connections, _) = observer_with(&[]).await;
    let key = key();
    let half = (pinflow::domain::hashing::cores() / 2).max(1);
    for (setting, expected) in [(Some("3"), 3), (None, half)] {
        let mut env = vec![("PINFLOW_LOG_FORMAT", "json")];
        env.extend(setting.map(|n| ("PINFLOW_ASYNC_THREADS", n)));
        let pinflow = start(&connections, &key, &env);
        let started = start_line(&pinflow).await;
        assert_eq!(started["async_threads"], expected, "{setting:?}: {started}");
        pinflow.kill().await;
    }
    cleanup(app).await;
}

/// The JSON line `pinflow run` logs once its workers have started.
async fn start_line(pinflow: &Pinflow) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let log = pinflow.log.lock().await.clone();
        let started = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["message"] == "pinflow running");
        if let Some(started) = started {
            return started;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no start line in:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A process's sessions declare the whole topology once between them at start: the
/// first declares it, a later first session does not touch its channel, and only a
/// session after a reconnection declares it again.
#[tokio::test]
async fn the_topology_is_declared_once_at_start_and_again_after_a_reconnection() {
    let app = common::spawn_app().await;
    let deps = common::account::deps(&app);
    let connection = pinflow::broker::connect(&app.amqp_url)
        .await
        .expect("broker");
    let open = connection.create_channel().await.expect("channel");
    deps.declare_topology(&open, false)
        .await
        .expect("the first session declares it");
    let closed = connection.create_channel().await.expect("channel");
    closed.close(200, "closed".into()).await.expect("close");
    deps.declare_topology(&closed, false)
        .await
        .expect("declared already: the closed channel is not used");
    assert!(
        deps.declare_topology(&closed, true).await.is_err(),
        "after a reconnection it is declared again, here on a closed channel"
    );
    let _ = connection.close(200, "done".into()).await;
    app.stop().await;
}
