//! The reset worker, tried as the portal and the gateways see it: two contacts on
//! record get a single-use link, the link's token gives a new initial PIN in two
//! halves that replaces the old PIN at once, and everything else is refused without
//! saying which contact failed.

mod common;

use chrono::Duration;
use common::account::{AccountApp, Live, request_with_card, secret};
use common::{TestApp, command, spawn_app, tax_code};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MOBILE: &str = "+4915112345678";
const EMAIL: &str = "mario.rossi@example.org";

fn on_record() -> Value {
    json!({ "mobile": MOBILE, "email": EMAIL })
}

async fn live(app: &TestApp, n: u32) -> (String, Live) {
    let code = tax_code(n);
    let live = app.live_pin(&request_with_card(&code, "citizen")).await;
    (code, live)
}

async fn refused(app: &TestApp, code: &str) -> Value {
    let event = app
        .take_event_where("pin.reset.rejected", |e| e["data"]["tax_code"] == code)
        .await;
    let fields: Vec<&String> = event["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        ["reason", "tax_code"],
        "nothing says which contact failed"
    );
    event["data"]["reason"].clone()
}

/// Everything the database holds, as text, for looking for a secret in it.
async fn dump(app: &TestApp) -> String {
    let mut text = String::new();
    for table in [
        "credentials",
        "reset_tokens",
        "audit_log",
        "notifications",
        "outbox",
        "inbox",
    ] {
        let sql = format!("select coalesce(string_agg(t::text, '\n'), '') from {table} t");
        let rows: String = sqlx::query_scalar(&sql).fetch_one(&app.pool).await.unwrap();
        text.push_str(&rows);
    }
    text
}

#[tokio::test]
async fn two_matching_contacts_get_a_link_whose_token_gives_a_new_initial_pin() {
    let app = spawn_app().await;
    let (code, old) = live(&app, 201).await;
    let contacts = json!({ "mobile": MOBILE, "email": "Mario.Rossi@Example.org" });
    let link = app.reset_link(&code, contacts).await;
    assert_eq!(link.body["data"]["to"], EMAIL, "the address on record");
    let token = secret(&link);
    assert_eq!(token.len(), 43, "32 random bytes");

    let (sms, email) = app.confirm_reset(&token, "email").await;
    assert_eq!(sms.body["data"]["to"], MOBILE);
    assert_eq!(email.body["data"]["to"], EMAIL);
    let (first, second) = (secret(&sms), secret(&email));
    assert_eq!((first.len(), second.len()), (8, 8));
    let reset = app.event("pin.reset").await;
    assert_eq!(reset["data"]["credential_id"], old.credential_id.as_str());
    assert_eq!(reset["data"]["kind"], "ordinary", "the same kind");
    assert!(!reset.to_string().contains(&first) && !reset.to_string().contains(&second));

    assert_eq!(
        app.verify_status(&code, &old.pin).await,
        "not_activated",
        "the old PIN stopped at once"
    );
    let reply = app.first_access(&code, &format!("{first}{second}")).await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(
        app.verify_status(&code, reply["pin"].as_str().unwrap())
            .await,
        "ok"
    );

    let stored = dump(&app).await;
    assert!(!stored.contains(&token), "the token is not stored in clear");
    let hash = hex(&Sha256::digest(token.as_bytes()));
    assert!(stored.contains(&hash), "its SHA-256 is");
    for half in [&first, &second] {
        assert!(
            !stored.contains(half.as_str()),
            "no half is stored in clear"
        );
    }
    app.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_or_no_matching_contact_is_refused_without_saying_which() {
    let app = spawn_app().await;
    let (code, old) = live(&app, 202).await;
    let one = json!({ "mobile": MOBILE, "email": "someone.else@example.org" });
    let only_the_email = json!({ "mobile": "+393330000000", "email": EMAIL });
    let none = json!({ "mobile": "+393330000000", "pec": "mario@pec.example.it" });
    for contacts in [one, only_the_email, none] {
        let request = command(
            "pin.reset.request",
            json!({ "tax_code": code, "contacts": contacts }),
        );
        app.publish(&request).await;
        assert_eq!(refused(&app, &code).await, "contacts_mismatch");
    }
    assert!(
        app.drain(&app.notify_queue("email")).await.is_empty(),
        "no link"
    );
    assert_eq!(app.count("select count(*) from reset_tokens").await, 0);
    assert_eq!(
        app.verify_status(&code, &old.pin).await,
        "ok",
        "nothing changed"
    );

    let unknown = tax_code(203);
    let request = command(
        "pin.reset.request",
        json!({ "tax_code": unknown, "contacts": on_record() }),
    );
    app.publish(&request).await;
    assert_eq!(refused(&app, &unknown).await, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn a_token_works_once_and_not_after_its_time() {
    let app = spawn_app().await;
    let (code, _) = live(&app, 204).await;
    let token = secret(&app.reset_link(&code, on_record()).await);
    app.confirm_reset(&token, "email").await;
    app.event("pin.reset").await;
    app.publish(&command("pin.reset.confirm", json!({ "token": token })))
        .await;
    assert_eq!(refused(&app, &code).await, "token_invalid", "used twice");

    let older = secret(&app.reset_link(&code, on_record()).await);
    let newer = secret(&app.reset_link(&code, on_record()).await);
    app.publish(&command("pin.reset.confirm", json!({ "token": older })))
        .await;
    assert_eq!(
        refused(&app, &code).await,
        "token_invalid",
        "a newer link replaced it"
    );
    app.clock.advance(Duration::hours(24));
    app.publish(&command("pin.reset.confirm", json!({ "token": newer })))
        .await;
    assert_eq!(
        refused(&app, &code).await,
        "token_invalid",
        "24 hours later"
    );

    let unknown = command(
        "pin.reset.confirm",
        json!({ "token": "never-issued-token" }),
    );
    app.publish(&unknown).await;
    common::account::eventually("the unknown token is audited", || async {
        let sql = "select count(*) from audit_log where action = 'pin.reset.rejected' and tax_code is null";
        app.count(sql).await == 1
    })
    .await;
    assert!(
        app.drain(&app.notify_queue("sms")).await.is_empty(),
        "no second reset"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_reset_unlocks_a_locked_pin() {
    let app = spawn_app().await;
    let (code, old) = live(&app, 205).await;
    for _ in 0..5 {
        app.verify_status(&code, "WRONGPIN").await;
    }
    app.event("pin.locked").await;
    assert_eq!(app.verify_status(&code, &old.pin).await, "locked");
    let token = secret(&app.reset_link(&code, on_record()).await);
    let (sms, email) = app.confirm_reset(&token, "email").await;
    let reply = app
        .first_access(&code, &format!("{}{}", secret(&sms), secret(&email)))
        .await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(
        app.verify_status(&code, reply["pin"].as_str().unwrap())
            .await,
        "ok"
    );
    app.stop().await;
}

#[tokio::test]
async fn reset_requests_are_limited_per_tax_code() {
    let app =
        common::spawn_app_with(&["--reset-rate-limit", "2", "--reset-rate-window", "P1D"]).await;
    let (code, _) = live(&app, 206).await;
    let (other, _) = live(&app, 207).await;
    app.reset_link(&code, on_record()).await;
    let wrong = json!({ "mobile": MOBILE, "email": "someone.else@example.org" });
    let request = command(
        "pin.reset.request",
        json!({ "tax_code": code, "contacts": wrong }),
    );
    app.publish(&request).await;
    assert_eq!(
        refused(&app, &code).await,
        "contacts_mismatch",
        "a refusal counts too"
    );
    let request = command(
        "pin.reset.request",
        json!({ "tax_code": code, "contacts": on_record() }),
    );
    app.publish(&request).await;
    assert_eq!(refused(&app, &code).await, "rate_limited");
    assert!(
        app.drain(&app.notify_queue("email")).await.is_empty(),
        "nothing sent"
    );
    app.reset_link(&other, on_record()).await;
    app.clock.advance(Duration::days(1));
    app.reset_link(&code, on_record()).await;
    app.stop().await;
}

#[tokio::test]
async fn a_reset_racing_a_verify_never_lets_the_old_pin_through_afterwards() {
    let app = spawn_app().await;
    let (code, old) = live(&app, 208).await;
    let token = secret(&app.reset_link(&code, on_record()).await);
    let confirm = command("pin.reset.confirm", json!({ "token": token }));
    let (verified, ()) = tokio::join!(app.verify_status(&code, &old.pin), app.publish(&confirm));
    assert!(
        verified == "ok" || verified == "not_activated",
        "before the reset or after it: {verified}"
    );
    let sms = app.take(&app.notify_queue("sms"), 1).await.remove(0);
    let email = app.take(&app.notify_queue("email"), 1).await.remove(0);
    assert_eq!(app.verify_status(&code, &old.pin).await, "not_activated");
    let reply = app
        .first_access(&code, &format!("{}{}", secret(&sms), secret(&email)))
        .await;
    assert_eq!(reply["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn bad_reset_commands_go_to_the_reset_dead_letter_queue() {
    let app = spawn_app().await;
    let one_contact = command(
        "pin.reset.request",
        json!({ "tax_code": tax_code(209), "contacts": { "mobile": MOBILE } }),
    );
    let mut bad_check = command(
        "pin.reset.request",
        json!({ "tax_code": tax_code(209), "contacts": on_record() }),
    );
    let mut text = bad_check["data"]["tax_code"].as_str().unwrap().to_owned();
    let last = if text.ends_with('A') { "B" } else { "A" };
    text.replace_range(15.., last);
    bad_check["data"]["tax_code"] = json!(text);
    let no_token = command("pin.reset.confirm", json!({}));
    let long_token = "T0KEN".repeat(13);
    let too_long = command("pin.reset.confirm", json!({ "token": long_token }));
    for message in [&one_contact, &bad_check, &no_token, &too_long] {
        app.publish(message).await;
    }
    let dead = app.take(&app.dlq_of("reset"), 4).await;
    for letter in &dead {
        let error = letter.header("x-pinflow-error").expect("a reason");
        assert!(!error.is_empty());
        let raw = String::from_utf8_lossy(&letter.raw);
        assert!(
            !raw.contains(&long_token) && !error.contains(&long_token),
            "sealed"
        );
        assert!(letter.header("x-pinflow-failed-at").is_some());
    }
    assert!(app.events_so_far("pin.reset.rejected").await.is_empty());
    app.stop().await;
}
