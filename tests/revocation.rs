//! The revocation worker, tried as the portal, the contact center and the gateways
//! see it: a revocation needs proof online or an operator, a revoked PIN never works
//! again (not even through a reset racing the revocation), and a contact change is
//! told to the previous address and to the new one.

mod common;

use common::account::{AccountApp, Live, request_with_card, secret};
use common::{TestApp, command, spawn_app, tax_code};
use serde_json::{Value, json};

const MOBILE: &str = "+4915112345678";
const EMAIL: &str = "mario.rossi@example.org";
const CARD: &str = "80380001200012345678";

async fn live(app: &TestApp, n: u32) -> (String, Live) {
    let code = tax_code(n);
    let live = app.live_pin(&request_with_card(&code, "citizen")).await;
    (code, live)
}

fn online(code: &str, card: &str, expires_on: &str, address: &str) -> Value {
    command(
        "pin.revoke",
        json!({
            "tax_code": code, "channel": "online",
            "health_card": { "number": card, "expires_on": expires_on },
            "email_or_pec": address,
        }),
    )
}

async fn rejected(app: &TestApp, code: &str) -> String {
    let event = app
        .take_event_where("pin.revoke.rejected", |e| e["data"]["tax_code"] == code)
        .await;
    event["data"]["reason"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn online_a_pin_is_revoked_only_with_the_health_card_and_an_address_on_record() {
    let app = spawn_app().await;
    let (code, live) = live(&app, 301).await;
    for wrong in [
        online(&code, "80380001200099999999", "2030-06-30", EMAIL),
        online(&code, CARD, "2031-06-30", EMAIL),
        online(&code, CARD, "2030-06-30", "someone.else@example.org"),
    ] {
        app.publish(&wrong).await;
        assert_eq!(rejected(&app, &code).await, "identity_mismatch");
    }
    assert_eq!(
        app.verify_status(&code, &live.pin).await,
        "ok",
        "still works"
    );

    app.publish(&online(
        &code,
        CARD,
        "2030-06-30",
        "Mario.Rossi@example.org",
    ))
    .await;
    let revoked = app.event("pin.revoked").await;
    assert_eq!(
        revoked["data"]["credential_id"],
        live.credential_id.as_str()
    );
    assert_eq!(revoked["data"]["channel"], "online");
    let notice = app.take(&app.notify_queue("email"), 1).await.remove(0);
    common::assert_valid(&notice.body);
    assert_eq!(notice.body["data"]["template"], "pin_revoked");
    assert_eq!(notice.body["data"]["to"], EMAIL);
    assert_eq!(app.verify_status(&code, &live.pin).await, "revoked");
    let hashes = "select count(*) from credentials where pin_hash is null and initial_pin_hash is null and status = 'revoked'";
    assert_eq!(app.count(hashes).await, 1);

    app.publish(&online(&code, CARD, "2030-06-30", EMAIL)).await;
    assert_eq!(rejected(&app, &code).await, "not_found", "revoked already");
    app.stop().await;
}

#[tokio::test]
async fn an_operator_revokes_and_the_revoked_pin_never_resets_but_a_new_request_replaces_it() {
    let app = spawn_app().await;
    let (code, live) = live(&app, 302).await;
    let revoke = command(
        "pin.revoke",
        json!({ "tax_code": code, "channel": "contact_center", "operator_id": "op-9", "reason": "lost phone" }),
    );
    app.publish(&revoke).await;
    assert_eq!(
        app.event("pin.revoked").await["data"]["channel"],
        "contact_center"
    );
    let audited = "select actor from audit_log where action = 'pin.revoked'";
    let actor: String = sqlx::query_scalar(audited)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(actor, "op-9");

    let reset = command(
        "pin.reset.request",
        json!({ "tax_code": code, "contacts": { "mobile": MOBILE, "email": EMAIL } }),
    );
    app.publish(&reset).await;
    let refused = app.event("pin.reset.rejected").await;
    assert_eq!(
        refused["data"]["reason"], "not_found",
        "a revoked PIN never resets"
    );
    assert_eq!(app.verify_status(&code, &live.pin).await, "revoked");

    let (first, second) =
        common::issuance::IssuanceApp::halves_of(&app, &request_with_card(&code, "citizen")).await;
    let reply = app.first_access(&code, &format!("{first}{second}")).await;
    assert_eq!(
        reply["status"], "ok",
        "a new request replaces the revoked PIN"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_revocation_racing_a_reset_leaves_no_pin_that_works() {
    let app = spawn_app().await;
    let (code, live) = live(&app, 303).await;
    let token = secret(
        &app.reset_link(&code, json!({ "mobile": MOBILE, "email": EMAIL }))
            .await,
    );
    let revoke = command(
        "pin.revoke",
        json!({ "tax_code": code, "channel": "contact_center", "operator_id": "op-9" }),
    );
    let confirm = command("pin.reset.confirm", json!({ "token": token }));
    tokio::join!(app.publish(&revoke), app.publish(&confirm));
    app.event("pin.revoked").await;
    let outcome = loop {
        if let Some(e) = app.events_so_far("pin.reset").await.pop() {
            break e;
        }
        if let Some(e) = app.events_so_far("pin.reset.rejected").await.pop() {
            assert_eq!(e["data"]["reason"], "token_invalid");
            break e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(app.verify_status(&code, &live.pin).await, "revoked");
    if outcome["type"] == "pin.reset" {
        let sms = app.take(&app.notify_queue("sms"), 1).await.remove(0);
        let email = app.take(&app.notify_queue("email"), 1).await.remove(0);
        let reply = app
            .first_access(&code, &format!("{}{}", secret(&sms), secret(&email)))
            .await;
        assert_eq!(
            reply["status"], "revoked",
            "the reset's new PIN was revoked with it"
        );
    }
    let pending = "select count(*) from reset_tokens where state = 'pending'";
    assert_eq!(app.count(pending).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_contact_change_is_told_to_the_previous_address_and_the_new_one() {
    let app = spawn_app().await;
    let (code, _) = live(&app, 304).await;
    let change = command(
        "contacts.update",
        json!({ "tax_code": code, "channel": "online", "email": "mario@new.example.org", "pec": "mario@pec.example.it" }),
    );
    app.publish(&change).await;
    let updated = app.event("contacts.updated").await;
    assert_eq!(updated["data"]["changed"], json!(["email", "pec"]));
    let emails = app.take(&app.notify_queue("email"), 2).await;
    let to: Vec<&Value> = emails.iter().map(|n| &n.body["data"]["to"]).collect();
    assert_eq!(to, [EMAIL, "mario@new.example.org"]);
    let pec = app.take(&app.notify_queue("pec"), 1).await.remove(0);
    assert_eq!(pec.body["data"]["to"], "mario@pec.example.it");
    for notice in emails.iter().chain([&pec]) {
        common::assert_valid(&notice.body);
        assert_eq!(notice.body["data"]["template"], "contacts_changed");
    }
    let audited = "select detail::text from audit_log where action = 'contacts.updated'";
    let detail: String = sqlx::query_scalar(audited)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(detail.contains("m***@new.example.org"), "{detail}");
    assert!(
        !detail.contains("mario@new.example.org"),
        "masked: {detail}"
    );

    // The new address is on record: it proves who asks for a reset.
    let link = app
        .reset_link(
            &code,
            json!({ "mobile": MOBILE, "email": "mario@new.example.org" }),
        )
        .await;
    assert_eq!(link.body["data"]["to"], "mario@new.example.org");
    app.stop().await;
}

#[tokio::test]
async fn a_contact_change_without_a_live_pin_is_refused() {
    let app = spawn_app().await;
    let code = tax_code(305);
    let change = command(
        "contacts.update",
        json!({ "tax_code": code, "channel": "contact_center", "operator_id": "op-9", "mobile": MOBILE }),
    );
    app.publish(&change).await;
    let refused = app.event("contacts.update.rejected").await;
    assert_eq!(refused["data"]["reason"], "not_found");
    assert_eq!(refused["data"]["tax_code"], code.as_str());
    app.stop().await;
}

#[tokio::test]
async fn bad_revocations_and_contact_changes_go_to_the_revocation_dead_letter_queue() {
    let app = spawn_app().await;
    let code = tax_code(306);
    let no_card = command(
        "pin.revoke",
        json!({ "tax_code": code, "channel": "online", "email_or_pec": EMAIL }),
    );
    let no_operator = command(
        "pin.revoke",
        json!({ "tax_code": code, "channel": "contact_center" }),
    );
    let nothing = command(
        "contacts.update",
        json!({ "tax_code": code, "channel": "online" }),
    );
    for message in [&no_card, &no_operator, &nothing] {
        app.publish(message).await;
    }
    let dead = app.take(&app.dlq_of("revocation"), 3).await;
    for letter in &dead {
        let error = letter.header("x-pinflow-error").expect("a reason");
        assert!(error.contains("schema violation"), "{error}");
    }
    assert!(app.events_so_far("pin.revoke.rejected").await.is_empty());
    app.stop().await;
}
