//! The issuance worker, tried as the citizen portal, the contact center and the office
//! counter would: publish commands, read the events, notifications and replies.

mod common;

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use common::issuance::{IssuanceApp, pin_request};
use common::{Seed, TestApp, assert_valid, command, seed_credential, spawn_app, tax_code};
use serde_json::{Value, json};

async fn issue(app: &TestApp, tax_code: &str) -> (String, String) {
    app.halves_of(&pin_request(tax_code, "online")).await
}

async fn first_access(app: &TestApp, tax_code: &str, initial_pin: &str) -> Value {
    app.ask(
        "pin.first_access",
        json!({ "tax_code": tax_code, "initial_pin": initial_pin }),
    )
    .await
}

async fn verify(app: &TestApp, tax_code: &str, pin: &str) -> Value {
    app.ask("pin.verify", json!({ "tax_code": tax_code, "pin": pin }))
        .await
}

#[tokio::test]
async fn an_online_request_splits_the_pin_over_sms_and_post() {
    let app = spawn_app().await;
    let code = tax_code(1);
    app.publish(&pin_request(&code, "online")).await;

    let sms = app.take(&app.notify_queue("sms"), 1).await.remove(0);
    let post = app.take(&app.notify_queue("post"), 1).await.remove(0);
    for n in [&sms, &post] {
        assert_valid(&n.body);
    }
    assert_eq!(sms.body["data"]["template"], "pin_first_half");
    assert_eq!(sms.body["data"]["to"], "+4915112345678");
    assert_eq!(post.body["data"]["template"], "pin_second_half");
    assert_eq!(post.body["data"]["to"]["postal_address"]["city"], "Berlin");
    let first = sms.body["data"]["secret"].as_str().unwrap();
    let second = post.body["data"]["secret"].as_str().unwrap();
    assert_eq!((first.len(), second.len()), (8, 8));
    assert_ne!(
        sms.body["data"]["notification_id"],
        post.body["data"]["notification_id"]
    );
    assert!(
        app.drain(&app.notify_queue("email")).await.is_empty(),
        "no half travels by e-mail"
    );

    let issued = app.event("pin.issued").await;
    assert_eq!(issued["data"]["tax_code"], code.as_str());
    assert_eq!(issued["data"]["kind"], "ordinary");
    assert_eq!(issued["data"]["holder"], "citizen");
    assert_eq!(issued["data"]["channel"], "online");
    assert_eq!(
        sms.body["data"]["params"]["credential_id"],
        issued["data"]["credential_id"]
    );
    assert_eq!(
        app.count("select count(*) from credentials where status = 'issued' and kind = 'ordinary'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn the_first_half_goes_by_email_when_asked_and_never_with_the_second() {
    let app = spawn_app().await;
    let mut request = pin_request(&tax_code(2), "contact_center");
    request["data"]["first_half_via"] = json!("email");
    app.publish(&request).await;
    let email = app.take(&app.notify_queue("email"), 1).await.remove(0);
    let post = app.take(&app.notify_queue("post"), 1).await.remove(0);
    assert_eq!(email.body["data"]["to"], "mario.rossi@example.org");
    assert_eq!(email.body["data"]["template"], "pin_first_half");
    assert_eq!(post.body["data"]["template"], "pin_second_half");
    app.barrier().await;
    assert!(app.drain(&app.notify_queue("sms")).await.is_empty());
    assert_eq!(
        app.event("pin.issued").await["data"]["channel"],
        "contact_center"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_office_request_issues_a_device_pin_whole_at_the_counter() {
    let app = spawn_app().await;
    app.publish(&pin_request(&tax_code(3), "office")).await;
    let office = app.take(&app.notify_queue("office"), 1).await.remove(0);
    assert_valid(&office.body);
    assert_eq!(office.body["data"]["template"], "pin_office_issue");
    assert_eq!(
        office.body["data"]["to"],
        json!({ "office_id": "office-rome-3", "operator_id": "op-17" })
    );
    assert_eq!(office.body["data"]["secret"].as_str().unwrap().len(), 16);
    let issued = app.event("pin.issued").await;
    assert_eq!(issued["data"]["kind"], "device");
    app.barrier().await;
    assert!(app.drain(&app.notify_queue("sms")).await.is_empty());
    assert!(app.drain(&app.notify_queue("post")).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn residents_of_italy_and_holders_of_an_italian_document_are_pointed_elsewhere() {
    let app = spawn_app().await;
    let mut resident = pin_request(&tax_code(4), "online");
    resident["data"]["applicant"]["residence_country"] = json!("IT");
    let mut documented = pin_request(&tax_code(5), "online");
    documented["data"]["applicant"]["italian_id_document"] = json!(true);
    for request in [&resident, &documented] {
        app.publish(request).await;
        let rejected = app.event("pin.request.rejected").await;
        assert_eq!(rejected["data"]["reason"], "not_eligible");
        assert_eq!(
            rejected["data"]["alternatives"],
            json!(["SPID", "CIE", "CNS"])
        );
        let email = app.take(&app.notify_queue("email"), 1).await.remove(0);
        assert_eq!(email.body["data"]["template"], "not_eligible");
        assert!(email.body["data"].get("secret").is_none());
    }
    assert_eq!(app.count("select count(*) from credentials").await, 0);
    assert!(app.drain(&app.notify_queue("sms")).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_second_request_while_a_pin_is_live_is_refused() {
    let app = spawn_app().await;
    let code = tax_code(6);
    issue(&app, &code).await;
    app.publish(&pin_request(&code, "online")).await;
    let rejected = app.event("pin.request.rejected").await;
    assert_eq!(rejected["data"]["reason"], "already_active");
    assert_eq!(rejected["data"]["tax_code"], code.as_str());
    assert_eq!(app.count("select count(*) from credentials").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_pin_is_replaced_by_a_new_request() {
    let app = spawn_app().await;
    let code = tax_code(7);
    let (first, second) = issue(&app, &code).await;
    app.clock.advance(Duration::days(61));
    let (new_first, new_second) = issue(&app, &code).await;
    assert_ne!(
        format!("{first}{second}"),
        format!("{new_first}{new_second}")
    );
    assert_eq!(
        app.count("select count(*) from credentials where status = 'expired'")
            .await,
        1
    );
    assert_eq!(
        app.count("select count(*) from credentials where status = 'issued'")
            .await,
        1
    );
    let reply = first_access(&app, &code, &format!("{first}{second}")).await;
    assert_eq!(
        reply["status"], "invalid",
        "the old initial PIN does not work on the new credential"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_request_delivered_twice_has_one_effect() {
    let app = spawn_app().await;
    let request = pin_request(&tax_code(8), "online");
    app.publish(&request).await;
    app.publish(&request).await;
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
    assert_eq!(app.events_so_far("pin.issued").await.len(), 1);
    assert!(
        app.events_so_far("pin.request.rejected").await.is_empty(),
        "the duplicate is not a refusal"
    );
    assert_eq!(app.count("select count(*) from credentials").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn first_access_swaps_the_initial_pin_for_an_eight_character_pin() {
    let app = spawn_app().await;
    let code = tax_code(9);
    let (first, second) = issue(&app, &code).await;
    let before = Utc::now();
    let reply = first_access(&app, &code, &format!("{first}{second}")).await;
    assert_eq!(reply["status"], "ok");
    let pin = reply["pin"].as_str().unwrap().to_owned();
    assert_eq!(pin.len(), 8);
    let valid_until: DateTime<Utc> = reply["valid_until"].as_str().unwrap().parse().unwrap();
    assert!(
        valid_until > before + Duration::days(180)
            && valid_until < Utc::now() + Duration::days(185)
    );
    let activated = app.event("pin.activated").await;
    assert_eq!(activated["data"]["tax_code"], code.as_str());

    let again = first_access(&app, &code, &format!("{first}{second}")).await;
    assert_eq!(
        again["status"], "already_activated",
        "the initial PIN is single-use"
    );
    let login = verify(&app, &code, &pin).await;
    assert_eq!(login["status"], "ok");
    assert_eq!(login["kind"], "ordinary");
    assert_eq!(
        verify(&app, &code, &format!("{first}{second}")).await["status"],
        "invalid"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_intermediary_pin_lasts_three_months_and_an_expired_pin_never_verifies() {
    let app = spawn_app().await;
    let code = tax_code(10);
    let mut request = pin_request(&code, "online");
    request["data"]["holder"] = json!("intermediary");
    app.publish(&request).await;
    let first =
        app.take(&app.notify_queue("sms"), 1).await.remove(0).body["data"]["secret"].clone();
    let second =
        app.take(&app.notify_queue("post"), 1).await.remove(0).body["data"]["secret"].clone();
    let reply = first_access(
        &app,
        &code,
        &format!("{}{}", first.as_str().unwrap(), second.as_str().unwrap()),
    )
    .await;
    let pin = reply["pin"].as_str().unwrap().to_owned();
    let valid_until: DateTime<Utc> = reply["valid_until"].as_str().unwrap().parse().unwrap();
    assert!(
        valid_until < Utc::now() + Duration::days(93)
            && valid_until > Utc::now() + Duration::days(88)
    );
    app.clock.advance(Duration::days(80));
    assert_eq!(verify(&app, &code, &pin).await["status"], "ok");
    app.clock.advance(Duration::days(15));
    assert_eq!(
        verify(&app, &code, &pin).await["status"],
        "expired",
        "no sweep ran, the deadline alone decides"
    );
    app.stop().await;
}

#[tokio::test]
async fn five_wrong_pins_lock_the_credential_until_a_reset() {
    let app = spawn_app().await;
    let code = tax_code(11);
    let (first, second) = issue(&app, &code).await;
    let pin = first_access(&app, &code, &format!("{first}{second}")).await["pin"]
        .as_str()
        .unwrap()
        .to_owned();
    for attempt in 1..=4 {
        assert_eq!(
            verify(&app, &code, "WRONGPIN").await["status"],
            "invalid",
            "attempt {attempt}"
        );
    }
    assert_eq!(verify(&app, &code, "WRONGPIN").await["status"], "locked");
    let locked = app.event("pin.locked").await;
    assert_eq!(locked["data"]["failed_attempts"], 5);
    assert_eq!(
        verify(&app, &code, &pin).await["status"],
        "locked",
        "the right PIN no longer works"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_success_resets_the_count_of_consecutive_failures() {
    let app = spawn_app_with_lockout("3").await;
    let code = tax_code(12);
    let (first, second) = issue(&app, &code).await;
    let pin = first_access(&app, &code, &format!("{first}{second}")).await["pin"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        assert_eq!(verify(&app, &code, "WRONGPIN").await["status"], "invalid");
    }
    assert_eq!(verify(&app, &code, &pin).await["status"], "ok");
    for _ in 0..2 {
        assert_eq!(verify(&app, &code, "WRONGPIN").await["status"], "invalid");
    }
    assert_eq!(
        verify(&app, &code, "WRONGPIN").await["status"],
        "locked",
        "the configured threshold applies"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_right_pin_queued_after_the_failures_that_lock_it_answers_locked() {
    let app = spawn_app().await;
    let (code, other) = (tax_code(14), tax_code(15));
    let (first, second) = issue(&app, &code).await;
    let pin = first_access(&app, &code, &format!("{first}{second}")).await["pin"]
        .as_str()
        .unwrap()
        .to_owned();
    issue(&app, &other).await;
    // The worker waits on another credential's row while the rest queue up behind it,
    // so the five failures and the right PIN are taken together.
    let holder = app.hold_credential(&other).await;
    let ask =
        |code: &str, pin: &str| command("pin.verify", json!({ "tax_code": code, "pin": pin }));
    let mut commands = vec![ask(&other, "WRONGPIN")];
    commands.extend((0..5).map(|_| ask(&code, "WRONGPIN")));
    commands.push(ask(&code, &pin));
    let release = async {
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        holder.rollback().await.unwrap();
    };
    let (replies, ()) = tokio::join!(app.rpc_all(&commands), release);
    let statuses: Vec<&str> = replies
        .iter()
        .map(|reply| reply.body["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "not_activated",
            "invalid",
            "invalid",
            "invalid",
            "invalid",
            "locked",
            "locked"
        ]
    );
    app.stop().await;
}

async fn spawn_app_with_lockout(threshold: &str) -> TestApp {
    common::spawn_app_with(&["--lockout-threshold", threshold]).await
}

#[tokio::test]
async fn first_access_refusals_say_why() {
    let app = spawn_app().await;
    let code = tax_code(13);
    assert_eq!(
        first_access(&app, &code, "ABCDEFGHJKMNPQRS").await["status"],
        "not_found"
    );
    assert_eq!(verify(&app, &code, "ABCDEFGH").await["status"], "not_found");
    let (first, second) = issue(&app, &code).await;
    assert_eq!(verify(&app, &code, &first).await["status"], "not_activated");
    assert_eq!(
        first_access(&app, &code, &format!("{second}{first}")).await["status"],
        "invalid"
    );
    app.clock.advance(Duration::days(61));
    assert_eq!(
        first_access(&app, &code, &format!("{first}{second}")).await["status"],
        "expired"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_initial_pin_locks_after_five_wrong_first_accesses() {
    let app = spawn_app().await;
    let code = tax_code(14);
    let (first, second) = issue(&app, &code).await;
    for _ in 0..4 {
        assert_eq!(
            first_access(&app, &code, "ABCDEFGHJKMNPQRS").await["status"],
            "invalid"
        );
    }
    assert_eq!(
        first_access(&app, &code, "ABCDEFGHJKMNPQRS").await["status"],
        "locked"
    );
    assert_eq!(
        first_access(&app, &code, &format!("{first}{second}")).await["status"],
        "locked"
    );
    app.event("pin.locked").await;
    app.stop().await;
}

/// Requests waiting when the worker starts come in batches, whose credentials are
/// inserted together; each request has the outcome it would have alone.
#[tokio::test]
async fn requests_handled_in_batches_have_the_outcome_each_would_have_alone() {
    let (mut app, connections, rules) = common::observer_with(&[]).await;
    // Issuance alone: the expiry sweep would retire the stale credential on its own.
    app.workers = vec!["issuance".into()];
    let fresh: Vec<String> = (40..52).map(tax_code).collect();
    let (live, stale, twice, ineligible) = (tax_code(60), tax_code(61), tax_code(62), tax_code(63));
    let issued = |window| Seed {
        status: "issued",
        window,
        ..Seed::default()
    };
    seed_credential(&app, &live, issued(Duration::days(30))).await;
    seed_credential(&app, &stale, issued(-Duration::days(1))).await;
    let mut requests: Vec<Value> = fresh.iter().map(|c| pin_request(c, "online")).collect();
    requests.push(pin_request(&live, "online"));
    requests.push(pin_request(&stale, "online"));
    requests.push(pin_request(&twice, "online"));
    requests.push(pin_request(&twice, "contact_center"));
    let mut abroad_no_more = pin_request(&ineligible, "online");
    abroad_no_more["data"]["applicant"]["residence_country"] = json!("IT");
    requests.push(abroad_no_more);
    let repeated = requests[0].clone();
    requests.insert(6, repeated);
    for request in &requests {
        app.publish(request).await;
    }
    let app = common::start_app(app, connections, rules).await;

    // Issued: the fresh ones, the stale one's successor, the first of the two.
    let issued = fresh.len() + 2;
    let sms = app.take(&app.notify_queue("sms"), issued).await;
    app.take(&app.notify_queue("post"), issued).await;
    app.barrier().await;
    assert!(
        app.drain(&app.notify_queue("sms")).await.is_empty(),
        "one SMS each"
    );
    let mut issued_to: Vec<String> = app
        .events_so_far("pin.issued")
        .await
        .iter()
        .map(|e| e["data"]["tax_code"].as_str().expect("tax code").to_owned())
        .collect();
    issued_to.sort();
    let mut expected: Vec<String> = fresh.iter().chain([&stale, &twice]).cloned().collect();
    expected.sort();
    assert_eq!(issued_to, expected);
    let credential_ids: std::collections::HashSet<&str> = sms
        .iter()
        .map(|t| {
            t.body["data"]["params"]["credential_id"]
                .as_str()
                .expect("id")
        })
        .collect();
    assert_eq!(credential_ids.len(), issued, "one credential per SMS");

    let refused = |code: &str| {
        let code = code.to_owned();
        move |e: &Value| e["data"]["tax_code"] == code.as_str()
    };
    let rejected = app.events_so_far("pin.request.rejected").await;
    let reason = |code: &str| -> Vec<Value> {
        rejected
            .iter()
            .filter(|e| refused(code)(e))
            .map(|e| e["data"]["reason"].clone())
            .collect()
    };
    assert_eq!(reason(&live), vec![json!("already_active")]);
    assert_eq!(
        reason(&twice),
        vec![json!("already_active")],
        "the second of the two"
    );
    assert_eq!(reason(&ineligible), vec![json!("not_eligible")]);
    assert!(reason(&stale).is_empty() && reason(&fresh[0]).is_empty());

    let current = |code: &str| {
        format!(
            "select count(*) from credentials where tax_code = '{code}'
             and status in ('issued', 'active', 'locked')"
        )
    };
    for code in fresh.iter().chain([&live, &stale, &twice]) {
        assert_eq!(
            app.count(&current(code)).await,
            1,
            "one current credential for {code}"
        );
    }
    assert_eq!(
        app.count(&format!(
            "select count(*) from credentials where tax_code = '{stale}' and status = 'expired'"
        ))
        .await,
        1,
        "the stale credential retired"
    );
    assert_eq!(
        app.count("select count(*) from credentials").await,
        2 + issued as i64
    );
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'pin.issued'")
            .await,
        issued as i64
    );
    app.stop().await;
}

/// `pin.verify` and `pin.first_access` waiting when the worker starts come in
/// batches, their credentials locked together; each has the reply it would have
/// alone, and a tax code named twice in a batch sees the first command's effect.
#[tokio::test]
async fn a_batch_reads_each_tax_codes_credential_as_one_read_does() {
    use pinflow::store::credentials;
    let (app, _connections, _rules) = common::observer_with(&[]).await;
    let [current, retired, nobody] = [96, 97, 98].map(tax_code);
    let retired_as = |status| Seed {
        status,
        ..Seed::default()
    };
    let active = seed_credential(&app, &current, Seed::default()).await;
    // Issued after the active one, but not current: the active one is the latest.
    let newer = seed_credential(&app, &current, retired_as("revoked")).await;
    let older = seed_credential(&app, &retired, retired_as("expired")).await;
    let newest = seed_credential(&app, &retired, retired_as("revoked")).await;
    sqlx::query(
        "update credentials set issued_at = now() - interval '1 day' * (case id::text
             when $1 then 1 when $2 then 3 else 2 end) where id::text in ($1, $2, $3)",
    )
    .bind(&newer)
    .bind(&older)
    .bind(&newest)
    .execute(&app.pool)
    .await
    .unwrap();
    let id = |stored: Option<&credentials::Stored>| stored.map(|s| s.credential.id.to_string());
    let codes = [
        current.as_str(),
        retired.as_str(),
        nobody.as_str(),
        current.as_str(),
    ];
    let batch = credentials::latest_all(&app.pool, &codes).await.unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let locked = credentials::latest_for_update_all(&mut tx, &codes)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    for code in codes {
        let alone = credentials::latest(&app.pool, code).await.unwrap();
        assert_eq!(id(batch.get(code)), id(alone.as_ref()), "{code}");
        assert_eq!(id(locked.get(code)), id(alone.as_ref()), "{code}");
    }
    assert_eq!(
        id(batch.get(current.as_str())),
        Some(active),
        "the current one"
    );
    assert_eq!(
        id(batch.get(retired.as_str())),
        Some(newest),
        "else the newest"
    );
    assert!(!batch.contains_key(nobody.as_str()));
    assert_eq!(batch.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn checks_handled_in_batches_answer_as_each_would_alone() {
    let (mut app, connections, rules) = common::observer_with(&[]).await;
    app.workers = vec!["issuance".into()];
    let hasher = common::cheap_hasher();
    let (pin, initial) = ("AB23CD45", "AB23CD45EF67GH89");
    let (pin_hash, initial_hash) = (hasher.hash(pin).unwrap(), hasher.hash(initial).unwrap());
    let [right, wrong, failed_before, twice, first, nobody] =
        [90, 91, 92, 93, 94, 95].map(tax_code);
    let active = |failed_attempts| Seed {
        hash: &pin_hash,
        failed_attempts,
        ..Seed::default()
    };
    seed_credential(&app, &right, active(0)).await;
    seed_credential(&app, &wrong, active(0)).await;
    seed_credential(&app, &failed_before, active(2)).await;
    seed_credential(&app, &twice, active(0)).await;
    let initial_pin = Seed {
        status: "issued",
        hash: &initial_hash,
        ..Seed::default()
    };
    seed_credential(&app, &first, initial_pin).await;
    let verify =
        |code: &str, pin: &str| command("pin.verify", json!({ "tax_code": code, "pin": pin }));
    let checks = [
        verify(&right, pin),
        verify(&wrong, "ZZ23CD45"),
        verify(&failed_before, pin),
        verify(&twice, "ZZ23CD45"),
        verify(&twice, pin),
        command(
            "pin.first_access",
            json!({ "tax_code": first, "initial_pin": initial }),
        ),
        verify(&nobody, pin),
    ];
    let (app, answers) = common::answered_together(app, connections, rules, &checks).await;
    assert_eq!(
        common::statuses(&answers),
        ["ok", "invalid", "ok", "invalid", "ok", "ok", "not_found"]
    );
    let new_pin = answers[5]["pin"].as_str().expect("the new PIN");
    assert_eq!(new_pin.len(), 8);
    let failures = |code: &str| {
        format!("select failed_attempts::bigint from credentials where tax_code = '{code}'")
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
    assert_eq!(
        app.count(&format!(
            "select count(*) from credentials where tax_code = '{first}' and status = 'active'
             and initial_pin_hash is null and pin_hash is not null"
        ))
        .await,
        1
    );
    let activated = app.event("pin.activated").await;
    assert_eq!(activated["data"]["tax_code"], first.as_str());
    app.stop().await;
}

#[tokio::test]
async fn messages_go_out_in_their_order_when_each_is_a_relay_round_of_its_own() {
    // One row a round: the relay publishes each while the rounds before it still wait
    // for their confirms.
    let (mut app, connections, rules) = common::observer_with(&["--relay-batch", "1"]).await;
    app.workers = vec!["issuance".into()];
    let codes = [47, 12, 33, 5, 41, 28, 19, 2, 36, 8].map(tax_code);
    for code in &codes {
        app.publish(&pin_request(code, "online")).await;
    }
    let app = common::start_app(app, connections, rules).await;
    let mut issued = Vec::new();
    for _ in &codes {
        let event = app.event("pin.issued").await;
        issued.push(event["data"]["tax_code"].as_str().unwrap().to_owned());
    }
    assert_eq!(issued, codes, "in the order the requests were handled");
    // Every round confirmed and its row deleted.
    app.wait_for_empty_outbox().await;
    app.stop().await;
}
