//! The phone-PIN worker, tried as the citizen portal and the contact-center desk would:
//! a phone PIN only for a live credential, returned once and never kept in clear, valid
//! up to the exact end of the chosen period, locked like `pin.verify`, replaced by a new
//! one, tidied up once past its validity, and bad input dead-lettered.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::phone_pins::PhonePinApp;
use common::{
    Seed, TestApp, assert_valid, command, seed_credential, spawn_app, spawn_app_with, tax_code,
};
use pinflow::domain::Period;
use serde_json::{Value, json};

fn valid_until(reply: &Value) -> DateTime<Utc> {
    reply["valid_until"]
        .as_str()
        .expect("valid_until")
        .parse()
        .expect("an instant")
}

fn phone_pin(reply: &Value) -> String {
    assert_eq!(reply["status"], "ok", "{reply}");
    reply["phone_pin"].as_str().expect("a phone PIN").to_owned()
}

async fn hashes(app: &TestApp) -> i64 {
    app.count("select count(*) from phone_pin_credentials where pin_hash is not null")
        .await
}

#[tokio::test]
async fn a_phone_pin_works_up_to_the_exact_end_of_its_validity_and_is_then_tidied_up() {
    let app = spawn_app().await;
    let code = tax_code(501);
    app.live_credential(&code).await;
    let before = Utc::now();
    let reply = app.request_phone_pin(&code, "P1D").await;
    let pin = phone_pin(&reply);
    assert_eq!(pin.len(), 8);
    let end = valid_until(&reply);
    assert!(end >= before + Duration::days(1) && end <= Utc::now() + Duration::days(1));
    let issued = app.event("phone_pin.issued").await;
    assert_eq!(issued["data"]["tax_code"], code.as_str());
    assert_eq!(issued["data"]["valid_until"], reply["valid_until"]);
    assert_eq!(issued["data"]["validity"], "P1D");
    assert!(
        !issued.to_string().contains(&pin),
        "the event never carries it"
    );

    assert_eq!(app.verify_phone_pin(&code, &pin).await["status"], "ok");
    app.move_clock_to(end - Duration::seconds(1));
    app.jobs_now.fire();
    let ok = app.verify_phone_pin(&code, &pin).await;
    assert_eq!(ok["status"], "ok", "a second before the end");
    assert_eq!(ok["valid_until"], reply["valid_until"]);
    assert_eq!(hashes(&app).await, 1, "nothing tidied before the end");

    app.move_clock_to(end);
    assert_eq!(
        app.verify_phone_pin(&code, &pin).await["status"],
        "expired",
        "from the instant it ends, before any sweep"
    );
    app.jobs_now.fire();
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while hashes(&app).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hash is cleared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.verify_phone_pin(&code, &pin).await["status"], "expired");
    assert!(
        !app.database_text().await.contains(&pin),
        "never stored in clear"
    );
    app.stop().await;
}

#[tokio::test]
async fn each_validity_gives_its_period() {
    let app = spawn_app().await;
    let code = tax_code(502);
    app.live_credential(&code).await;
    for validity in ["P1D", "P7D", "P1M", "P3M"] {
        let period = Period::parse(validity).unwrap();
        let before = Utc::now();
        let reply = app.request_phone_pin(&code, validity).await;
        let end = valid_until(&reply);
        assert!(
            end >= period.add_to(before) && end <= period.add_to(Utc::now()),
            "{validity}: {end}"
        );
        let issued = app.event("phone_pin.issued").await;
        assert_eq!(issued["data"]["validity"], validity);
    }
    app.stop().await;
}

#[tokio::test]
async fn only_a_live_credential_gets_a_phone_pin_and_the_reply_says_why() {
    let app = spawn_app().await;
    let (none, revoked, expired) = (tax_code(503), tax_code(504), tax_code(505));
    assert_eq!(
        app.request_phone_pin(&none, "P1D").await["status"],
        "not_found"
    );

    app.live_credential(&revoked).await;
    // No worker revokes yet here; the state is what `pin.revoke` leaves.
    sqlx::query("update credentials set status = 'revoked' where tax_code = $1")
        .bind(&revoked)
        .execute(&app.pool)
        .await
        .unwrap();
    let reply = app.request_phone_pin(&revoked, "P7D").await;
    assert_eq!(
        reply,
        json!({ "status": "revoked" }),
        "no phone PIN in a refusal"
    );

    app.live_credential(&expired).await;
    app.clock.advance(Duration::days(61));
    let reply = app.request_phone_pin(&expired, "P1M").await;
    assert_eq!(
        reply,
        json!({ "status": "expired" }),
        "the initial PIN's window passed"
    );

    assert_eq!(
        app.count("select count(*) from phone_pin_credentials")
            .await,
        0
    );
    assert!(app.events_so_far("phone_pin.issued").await.is_empty());
    assert_eq!(
        app.verify_phone_pin(&none, "K7M2P9QX").await["status"],
        "invalid",
        "no phone PIN was ever issued"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_new_phone_pin_replaces_the_last_and_a_revoked_credential_ends_it() {
    let app = spawn_app().await;
    let code = tax_code(506);
    app.live_credential(&code).await;
    let old = phone_pin(&app.request_phone_pin(&code, "P3M").await);
    let new = phone_pin(&app.request_phone_pin(&code, "P1D").await);
    assert_ne!(old, new);
    assert_eq!(app.verify_phone_pin(&code, &old).await["status"], "invalid");
    assert_eq!(app.verify_phone_pin(&code, &new).await["status"], "ok");
    assert_eq!(
        app.count("select count(*) from phone_pin_credentials")
            .await,
        1
    );
    // As `pin.revoke` leaves it (no worker revokes yet here): the phone PIN dies with it.
    sqlx::query("update credentials set status = 'revoked' where tax_code = $1")
        .bind(&code)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.verify_phone_pin(&code, &new).await["status"], "revoked");
    app.stop().await;
}

#[tokio::test]
async fn wrong_phone_pins_lock_it_as_pin_verify_does_until_a_new_one() {
    let app = spawn_app_with(&["--lockout-threshold", "3"]).await;
    let code = tax_code(507);
    app.live_credential(&code).await;
    let pin = phone_pin(&app.request_phone_pin(&code, "P7D").await);
    for _ in 0..2 {
        assert_eq!(
            app.verify_phone_pin(&code, "WRONGPIN").await["status"],
            "invalid"
        );
    }
    assert_eq!(
        app.verify_phone_pin(&code, &pin).await["status"],
        "ok",
        "the count restarts"
    );
    for _ in 0..2 {
        assert_eq!(
            app.verify_phone_pin(&code, "WRONGPIN").await["status"],
            "invalid"
        );
    }
    assert_eq!(
        app.verify_phone_pin(&code, "WRONGPIN").await["status"],
        "locked"
    );
    let locked = app.event("phone_pin.locked").await;
    assert_eq!(locked["data"]["tax_code"], code.as_str());
    assert_eq!(locked["data"]["failed_attempts"], 3);
    assert_eq!(
        app.verify_phone_pin(&code, &pin).await["status"],
        "locked",
        "the right phone PIN no longer works"
    );
    let audited = app
        .count(
            "select count(*) from audit_log where action = 'phone_pin.verify' and actor = 'op-17'",
        )
        .await;
    assert_eq!(audited, 7, "every check is audited with its operator");

    let fresh = phone_pin(&app.request_phone_pin(&code, "P1D").await);
    assert_eq!(app.verify_phone_pin(&code, &fresh).await["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn bad_phone_pin_commands_are_dead_lettered_without_the_phone_pin() {
    let app = spawn_app().await;
    let code = tax_code(508);
    let bad_validity = command(
        "phone_pin.request",
        json!({ "tax_code": code, "authenticated_with": "spid", "validity": "P2D" }),
    );
    let weak_login = command(
        "phone_pin.request",
        json!({ "tax_code": code, "authenticated_with": "pin_ordinary", "validity": "P1D" }),
    );
    let no_reply_to = command(
        "phone_pin.verify",
        json!({ "tax_code": code, "phone_pin": "SECRET42", "operator_id": "op-17" }),
    );
    let mut bad_check = code.clone();
    bad_check.replace_range(15..16, if code.ends_with('A') { "B" } else { "A" });
    let bad_tax_code = command(
        "phone_pin.verify",
        json!({ "tax_code": bad_check, "phone_pin": "SECRET43", "operator_id": "op-17" }),
    );
    for bad in [&bad_validity, &weak_login] {
        app.publish_with(bad, Some("amq.gen-test"), Some("c-1"))
            .await;
    }
    app.publish(&no_reply_to).await;
    app.publish_with(&bad_tax_code, Some("amq.gen-test"), Some("c-2"))
        .await;
    let dead = app.take(&app.phone_dlq(), 4).await;
    for letter in &dead {
        let error = letter.header("x-pinflow-error").expect("a reason");
        assert!(!error.is_empty());
        let raw = String::from_utf8_lossy(&letter.raw);
        assert!(
            !raw.contains("SECRET42") && !raw.contains("SECRET43"),
            "{raw}"
        );
        assert!(!error.contains("SECRET4"));
    }
    assert_eq!(
        app.count("select count(*) from phone_pin_credentials")
            .await,
        0
    );
    assert_eq!(
        app.count("select count(*) from inbox").await,
        0,
        "nothing was handled"
    );
    app.stop().await;
}

#[tokio::test]
async fn credential_show_lists_the_phone_pin_by_its_validity_only() {
    let app = spawn_app().await;
    let code = tax_code(509);
    app.live_credential(&code).await;
    let reply = app.request_phone_pin(&code, "P7D").await;
    let pin = phone_pin(&reply);
    let (ok, out, err) = app.pinflow(&["credential", "show", &code]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let phone = &shown["phone_pin"];
    assert_eq!(phone["validity"], "P7D");
    assert_eq!(phone["state"], "live");
    let shown_end: DateTime<Utc> = phone["valid_until"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown_end, valid_until(&reply));
    assert!(
        !out.contains(&pin) && !out.contains("argon2"),
        "never the PIN or its hash"
    );
    assert_valid(&app.event("phone_pin.issued").await);
    app.stop().await;
}

/// Seeds `tax_code`'s phone PIN straight into the table, against a live credential:
/// its hash (`None`: tidied up), until when it works, and its failures so far.
async fn seed_phone_pin(
    app: &TestApp,
    tax_code: &str,
    pin_hash: Option<&str>,
    valid_until: DateTime<Utc>,
    failed_attempts: i32,
) {
    let credential = seed_credential(app, tax_code, Seed::default()).await;
    sqlx::query(
        "insert into phone_pin_credentials (tax_code, credential_id, pin_hash, validity,
             authenticated_with, issued_at, valid_until, failed_attempts)
         values ($1, $2::uuid, $3, 'P7D', 'spid', now() - interval '1 day', $4, $5)",
    )
    .bind(tax_code)
    .bind(credential)
    .bind(pin_hash)
    .bind(valid_until)
    .bind(failed_attempts)
    .execute(&app.pool)
    .await
    .expect("seed a phone PIN");
}

#[tokio::test]
async fn verifies_handled_in_batches_answer_as_each_would_alone() {
    let (mut app, connections, rules) = common::observer_with(&["--lockout-threshold", "3"]).await;
    app.workers = vec!["phone_pins".into()];
    let hasher = common::cheap_hasher();
    let pin = "AB23CD45";
    let hash = hasher.hash(pin).unwrap();
    let [
        right,
        wrong,
        failed_before,
        last_try,
        twice,
        expired,
        tidied,
        nobody,
    ] = [520, 521, 522, 523, 524, 525, 526, 527].map(tax_code);
    let week = Utc::now() + Duration::days(7);
    seed_phone_pin(&app, &right, Some(&hash), week, 0).await;
    seed_phone_pin(&app, &wrong, Some(&hash), week, 0).await;
    seed_phone_pin(&app, &failed_before, Some(&hash), week, 2).await;
    seed_phone_pin(&app, &last_try, Some(&hash), week, 2).await;
    seed_phone_pin(&app, &twice, Some(&hash), week, 0).await;
    let yesterday = Utc::now() - Duration::days(1);
    seed_phone_pin(&app, &expired, Some(&hash), yesterday, 0).await;
    seed_phone_pin(&app, &tidied, None, week, 0).await;
    let verify = |code: &str, pin: &str| {
        command(
            "phone_pin.verify",
            json!({ "tax_code": code, "phone_pin": pin, "operator_id": "op-17" }),
        )
    };
    let checks = [
        verify(&right, pin),
        verify(&wrong, "ZZ23CD45"),
        verify(&failed_before, pin),
        verify(&last_try, "ZZ23CD45"),
        verify(&twice, "ZZ23CD45"),
        verify(&twice, pin),
        verify(&expired, pin),
        verify(&tidied, pin),
        verify(&nobody, pin),
    ];
    let (app, answers) = common::answered_together(app, connections, rules, &checks).await;
    assert_eq!(
        common::statuses(&answers),
        [
            "ok", "invalid", "ok", "locked", "invalid", "ok", "expired", "expired", "invalid"
        ]
    );
    let failures = |code: &str| {
        format!(
            "select failed_attempts::bigint from phone_pin_credentials where tax_code = '{code}'"
        )
    };
    assert_eq!(app.count(&failures(&wrong)).await, 1);
    assert_eq!(
        app.count(&failures(&failed_before)).await,
        0,
        "a success resets the count"
    );
    assert_eq!(
        app.count(&failures(&twice)).await,
        0,
        "the second saw the first's failure and reset it"
    );
    let locked = app.event("phone_pin.locked").await;
    assert_eq!(locked["data"]["tax_code"], last_try.as_str());
    assert_eq!(locked["data"]["failed_attempts"], 3);
    assert_eq!(
        app.count("select count(*) from phone_pin_credentials where locked_at is not null")
            .await,
        1
    );
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'phone_pin.verify'")
            .await,
        8,
        "every check of a phone PIN is audited"
    );
    app.stop().await;
}

#[tokio::test]
async fn requests_handled_in_batches_answer_as_each_would_alone() {
    let (mut app, connections, rules) = common::observer_with(&[]).await;
    app.workers = vec!["phone_pins".into()];
    let [fresh, longer, replaced, twice, nobody, revoked, expired] =
        [530, 531, 532, 533, 534, 535, 536].map(tax_code);
    let fresh_id = seed_credential(&app, &fresh, Seed::default()).await;
    seed_credential(&app, &longer, Seed::default()).await;
    let hash = common::cheap_hasher().hash("AB23CD45").unwrap();
    let week = Utc::now() + Duration::days(7);
    seed_phone_pin(&app, &replaced, Some(&hash), week, 2).await;
    sqlx::query("update phone_pin_credentials set locked_at = now() where tax_code = $1")
        .bind(&replaced)
        .execute(&app.pool)
        .await
        .unwrap();
    seed_credential(&app, &twice, Seed::default()).await;
    let gone = Seed {
        status: "revoked",
        ..Seed::default()
    };
    seed_credential(&app, &revoked, gone).await;
    let lapsed = Seed {
        status: "issued",
        window: Duration::days(-1),
        ..Seed::default()
    };
    seed_credential(&app, &expired, lapsed).await;
    let request = |code: &str, validity: &str| {
        command(
            "phone_pin.request",
            json!({ "tax_code": code, "authenticated_with": "cie", "validity": validity }),
        )
    };
    let requests = [
        request(&fresh, "P1D"),
        request(&longer, "P3M"),
        request(&replaced, "P7D"),
        request(&twice, "P1D"),
        request(&twice, "P1M"),
        request(&nobody, "P1D"),
        request(&revoked, "P1D"),
        request(&expired, "P1D"),
    ];
    let (app, answers) = common::answered_together(app, connections, rules, &requests).await;
    assert_eq!(
        common::statuses(&answers),
        [
            "ok",
            "ok",
            "ok",
            "ok",
            "ok",
            "not_found",
            "revoked",
            "expired"
        ]
    );
    let stored = |column: &str, code: &str| {
        format!("select {column} from phone_pin_credentials where tax_code = '{code}'")
    };
    let row: (String, String, String, DateTime<Utc>) = sqlx::query_as(&stored(
        "credential_id::text, validity, authenticated_with, valid_until",
        &fresh,
    ))
    .fetch_one(&app.pool)
    .await
    .expect("the fresh phone PIN's row");
    let until = valid_until(&answers[0]);
    assert_eq!(row, (fresh_id, "P1D".into(), "cie".into(), until));
    let validity: String = sqlx::query_scalar(&stored("validity", &longer))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(validity, "P3M");
    assert_eq!(
        app.count(&stored("failed_attempts::bigint", &replaced))
            .await,
        0,
        "a new phone PIN starts a fresh count"
    );
    let unlocked = stored("count(*)", &replaced) + " and locked_at is null";
    assert_eq!(app.count(&unlocked).await, 1, "and is not locked");
    for (code, answer) in [(&fresh, 0), (&longer, 1), (&replaced, 2), (&twice, 4)] {
        let pin = phone_pin(&answers[answer]);
        assert_eq!(app.verify_phone_pin(code, &pin).await["status"], "ok");
    }
    let replaced_one = phone_pin(&answers[3]);
    assert_eq!(
        app.verify_phone_pin(&twice, &replaced_one).await["status"],
        "invalid",
        "the second request for the same tax code replaced the first's"
    );
    assert_eq!(
        app.count("select count(*) from phone_pin_credentials")
            .await,
        4
    );
    assert_eq!(app.events_so_far("phone_pin.issued").await.len(), 5);
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'phone_pin.issued'")
            .await,
        5
    );
    app.stop().await;
}

/// Two batches that name the same tax codes, one verifying where the other requests,
/// must not each hold a row the other waits for. So a batch takes its requests'
/// credentials before any phone PIN: while another transaction holds one of those
/// credentials, the batch waits holding no phone PIN, and the phone PINs it will verify
/// can still be locked by others.
#[tokio::test]
async fn a_batch_locks_its_credentials_before_any_phone_pin() {
    let (mut app, connections, rules) = common::observer_with(&[]).await;
    app.workers = vec!["phone_pins".into()];
    let [first, second, held, other] = [537, 538, 539, 540].map(tax_code);
    let pin = "AB23CD45";
    let hash = common::cheap_hasher().hash(pin).unwrap();
    let week = Utc::now() + Duration::days(7);
    for code in [&first, &second, &held, &other] {
        seed_phone_pin(&app, code, Some(&hash), week, 0).await;
    }
    let verify = |code: &str| {
        command(
            "phone_pin.verify",
            json!({ "tax_code": code, "phone_pin": pin, "operator_id": "op-17" }),
        )
    };
    let request = |code: &str| {
        command(
            "phone_pin.request",
            json!({ "tax_code": code, "authenticated_with": "cie", "validity": "P1D" }),
        )
    };
    let holder = app.hold_credential(&held).await;
    let asked = app
        .send_rpcs(&[
            verify(&first),
            verify(&second),
            request(&held),
            request(&other),
        ])
        .await;
    let app = common::start_app(app, connections, rules).await;
    let waiting = "select count(*) from pg_stat_activity
                   where datname = current_database() and wait_event_type = 'Lock'";
    app.wait_for_count(waiting, 1).await;
    let mut other_batch = app.pool.begin().await.unwrap();
    let locked: Result<Vec<(String,)>, sqlx::Error> = sqlx::query_as(
        "select tax_code from phone_pin_credentials where tax_code = any($1)
         order by tax_code for update nowait",
    )
    .bind([&first, &second])
    .fetch_all(&mut *other_batch)
    .await;
    let locked = locked.expect("the waiting batch holds none of the phone PINs it verifies");
    assert_eq!(locked.len(), 2);
    other_batch.rollback().await.unwrap();
    holder.rollback().await.unwrap();
    let answers = asked.answers().await;
    assert_eq!(common::statuses(&answers), ["ok", "ok", "ok", "ok"]);
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'phone_pin.issued'")
            .await,
        2
    );
    app.stop().await;
}
