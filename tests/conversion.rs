//! The device-PIN conversion on its three channels and the operator's review, tried as
//! the portal, the fax intake, the office counter and the back office would: publish
//! commands, read the events, the notices and the `pin.verify` replies.

mod common;

use common::conversion::{ConversionApp, review, submission};
use common::{assert_valid, spawn_app, spawn_app_with, tax_code};
use serde_json::{Value, json};

async fn audit_actions(app: &common::TestApp, tax_code: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select action, actor, coalesce(message_id, '') from audit_log
         where tax_code = $1 order by id",
    )
    .bind(tax_code)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_upload_waits_for_an_operator_and_an_approval_makes_the_same_pin_a_device_pin() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(1)).await;
    let submitted = submission(&citizen.tax_code, "upload");
    app.publish(&submitted).await;
    let requested = app
        .event_for("conversion.review_requested", &citizen.tax_code)
        .await;
    let data = &requested["data"];
    assert_eq!(data["channel"], "upload");
    assert_eq!(data["credential_id"], citizen.credential_id.as_str());
    assert_eq!(data["documents"], submitted["data"]["documents"]);
    assert_eq!(
        data["identity_document"],
        submitted["data"]["identity_document"]
    );
    assert!(!requested.to_string().contains(&citizen.pin), "never a PIN");
    assert_eq!(app.login(&citizen).await["kind"], "ordinary", "not yet");

    let conversion_id = text(&data["conversion_id"]);
    let decision = review(&conversion_id, "approved", "op-17");
    app.publish(&decision).await;
    let converted = app.event_for("pin.converted", &citizen.tax_code).await;
    assert_eq!(converted["data"]["conversion_id"], conversion_id.as_str());
    assert_eq!(
        converted["data"]["credential_id"],
        citizen.credential_id.as_str()
    );
    let notice = app.take(&app.notify_queue("email"), 1).await.remove(0);
    assert_valid(&notice.body);
    assert_eq!(notice.body["data"]["template"], "pin_converted");
    assert_eq!(notice.body["data"]["to"], "mario.rossi@example.org");
    assert_eq!(
        notice.body["data"]["params"]["conversion_id"],
        conversion_id.as_str()
    );
    assert!(notice.body["data"].get("secret").is_none());

    let login = app.login(&citizen).await;
    assert_eq!(
        login["status"], "ok",
        "the same 8-character PIN still works"
    );
    assert_eq!(login["kind"], "device");
    let audit = audit_actions(&app, &citizen.tax_code).await;
    let submit_id = text(&submitted["id"]);
    let review_id = text(&decision["id"]);
    assert!(audit.contains(&(
        "conversion.review_requested".into(),
        "portal".into(),
        submit_id
    )));
    assert!(audit.contains(&("pin.converted".into(), "op-17".into(), review_id)));
    app.stop().await;
}

#[tokio::test]
async fn a_fax_goes_to_the_operator_with_its_fax_block_and_a_rejection_tells_the_citizen_why() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(2)).await;
    app.publish(&submission(&citizen.tax_code, "fax")).await;
    let requested = app
        .event_for("conversion.review_requested", &citizen.tax_code)
        .await;
    assert_eq!(requested["data"]["channel"], "fax");
    assert_eq!(requested["data"]["fax"]["pages"], 3);
    assert_eq!(
        requested["data"]["documents"][0]["media_type"],
        "image/tiff"
    );

    let conversion_id = text(&requested["data"]["conversion_id"]);
    let mut decision = review(&conversion_id, "rejected", "op-18");
    decision["data"]["reasons"] = json!(["signature missing on the form"]);
    app.publish(&decision).await;
    let rejected = app
        .event_for("conversion.rejected", &citizen.tax_code)
        .await;
    assert_eq!(rejected["data"]["conversion_id"], conversion_id.as_str());
    assert_eq!(
        rejected["data"]["reasons"],
        json!(["signature missing on the form"])
    );
    let notice = app.take(&app.notify_queue("email"), 1).await.remove(0);
    assert_eq!(notice.body["data"]["template"], "conversion_rejected");
    assert_eq!(
        notice.body["data"]["params"]["reasons"],
        json!(["signature missing on the form"])
    );
    assert_eq!(app.login(&citizen).await["kind"], "ordinary");
    let audit = audit_actions(&app, &citizen.tax_code).await;
    let review_id = text(&decision["id"]);
    assert!(audit.contains(&("conversion.rejected".into(), "op-18".into(), review_id)));
    assert!(app.events_so_far("pin.converted").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn at_the_office_the_pin_is_converted_at_once_and_pec_is_preferred() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(3)).await;
    sqlx::query(
        "update credentials set contacts = contacts || '{\"pec\": \"mario@pec.example.it\"}'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let submitted = submission(&citizen.tax_code, "office");
    app.publish(&submitted).await;
    let converted = app.event_for("pin.converted", &citizen.tax_code).await;
    assert_eq!(
        converted["data"]["credential_id"],
        citizen.credential_id.as_str()
    );
    let notice = app.take(&app.notify_queue("pec"), 1).await.remove(0);
    assert_valid(&notice.body);
    assert_eq!(notice.body["data"]["template"], "pin_converted");
    assert_eq!(notice.body["data"]["to"], "mario@pec.example.it");
    assert_eq!(app.login(&citizen).await["kind"], "device");
    assert!(
        app.events_so_far("conversion.review_requested")
            .await
            .is_empty()
    );
    assert!(
        app.drain(&app.notify_queue("email")).await.is_empty(),
        "one notice"
    );
    let audit = audit_actions(&app, &citizen.tax_code).await;
    let submit_id = text(&submitted["id"]);
    assert!(audit.contains(&("pin.converted".into(), "op-office-9".into(), submit_id)));
    let status: String = sqlx::query_scalar("select status from conversions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "approved");
    app.stop().await;
}

#[tokio::test]
async fn a_second_submission_is_refused_while_one_waits_and_goes_ahead_after_a_rejection() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(4)).await;
    let first = app.awaiting_review(&citizen).await;
    let first_id = text(&first["data"]["conversion_id"]);
    for channel in ["upload", "office"] {
        app.publish(&submission(&citizen.tax_code, channel)).await;
        let refused = app
            .event_for("conversion.rejected", &citizen.tax_code)
            .await;
        assert_eq!(refused["data"]["reasons"], json!(["already_under_review"]));
        assert_ne!(
            refused["data"]["conversion_id"],
            first_id.as_str(),
            "the waiting conversion is not the one refused"
        );
        let notice = app.take(&app.notify_queue("email"), 1).await.remove(0);
        assert_eq!(notice.body["data"]["template"], "conversion_rejected");
    }
    assert_eq!(
        app.login(&citizen).await["kind"],
        "ordinary",
        "the office waited too"
    );

    app.publish(&review(&first_id, "rejected", "op-17")).await;
    app.event_for("conversion.rejected", &citizen.tax_code)
        .await;
    let second = app.awaiting_review(&citizen).await;
    let second_id = text(&second["data"]["conversion_id"]);
    assert_ne!(second_id, first_id);
    app.publish(&review(&second_id, "approved", "op-17")).await;
    app.event_for("pin.converted", &citizen.tax_code).await;
    assert_eq!(app.login(&citizen).await["kind"], "device");
    app.stop().await;
}

#[tokio::test]
async fn reviews_that_cannot_apply_are_refused_with_a_reason_and_change_nothing() {
    let app = spawn_app().await;
    // Unknown conversion: no tax code to name.
    let unknown = uuid::Uuid::new_v4().to_string();
    app.publish(&review(&unknown, "approved", "op-17")).await;
    let refused = app
        .take_event_where("conversion.review.rejected", |e| {
            e["data"]["conversion_id"] == unknown.as_str()
        })
        .await;
    assert_eq!(refused["data"]["reason"], "unknown_conversion");
    assert!(refused["data"].get("tax_code").is_none());

    // Decided already: a second review, even the same decision, is refused.
    let decided = app.citizen(&tax_code(5)).await;
    let id = text(&app.awaiting_review(&decided).await["data"]["conversion_id"]);
    app.publish(&review(&id, "approved", "op-17")).await;
    app.event_for("pin.converted", &decided.tax_code).await;
    app.publish(&review(&id, "rejected", "op-18")).await;
    let refused = app
        .event_for("conversion.review.rejected", &decided.tax_code)
        .await;
    assert_eq!(refused["data"]["reason"], "already_decided");
    assert_eq!(refused["data"]["decision"], "rejected");
    assert_eq!(app.login(&decided).await["kind"], "device");

    // The PIN was revoked, then expired, while its conversion waited.
    let revoked = app.citizen(&tax_code(6)).await;
    let expired = app.citizen(&tax_code(7)).await;
    let revoked_id = text(&app.awaiting_review(&revoked).await["data"]["conversion_id"]);
    let expired_id = text(&app.awaiting_review(&expired).await["data"]["conversion_id"]);
    // As the revocation worker does: the credential's status (no such worker here yet).
    sqlx::query("update credentials set status = 'revoked' where tax_code = $1")
        .bind(&revoked.tax_code)
        .execute(&app.pool)
        .await
        .unwrap();
    app.clock.advance(chrono::Duration::days(200));
    for (citizen, id, reason) in [
        (&revoked, &revoked_id, "pin_revoked"),
        (&expired, &expired_id, "pin_expired"),
    ] {
        app.publish(&review(id, "approved", "op-17")).await;
        let refused = app
            .event_for("conversion.review.rejected", &citizen.tax_code)
            .await;
        assert_eq!(refused["data"]["reason"], reason);
        assert_eq!(refused["data"]["conversion_id"], id.as_str());
    }
    let waiting = app
        .count("select count(*) from conversions where status = 'under_review'")
        .await;
    assert_eq!(waiting, 2, "the refused reviews changed nothing");
    let devices = app
        .count("select count(*) from credentials where kind = 'device'")
        .await;
    assert_eq!(devices, 1);
    assert_eq!(app.events_so_far("pin.converted").await.len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn two_reviews_racing_for_one_conversion_one_wins_and_the_other_is_refused() {
    let app = spawn_app_with(&["--consumers", "2", "--batch-size", "1", "--prefetch", "1"]).await;
    let mut waiting = Vec::new();
    for n in 10..16 {
        let citizen = app.citizen(&tax_code(n)).await;
        let id = text(&app.awaiting_review(&citizen).await["data"]["conversion_id"]);
        waiting.push((citizen, id));
    }
    for (_, id) in &waiting {
        let approve = review(id, "approved", "op-17");
        let reject = review(id, "rejected", "op-18");
        tokio::join!(app.publish(&approve), app.publish(&reject));
    }
    for (citizen, id) in &waiting {
        let refused = app
            .event_for("conversion.review.rejected", &citizen.tax_code)
            .await;
        assert_eq!(refused["data"]["reason"], "already_decided");
        let converted = app.events_so_far("pin.converted").await;
        let won_approval = converted
            .iter()
            .any(|e| e["data"]["conversion_id"] == id.as_str());
        let rejected = app.events_so_far("conversion.rejected").await;
        let won_rejection = rejected
            .iter()
            .any(|e| e["data"]["conversion_id"] == id.as_str());
        let kind = app.login(citizen).await["kind"].clone();
        assert!(
            won_approval != won_rejection,
            "exactly one decision for {id}"
        );
        assert_eq!(kind, if won_approval { "device" } else { "ordinary" });
    }
    let decided = app
        .count("select count(*) from conversions where status <> 'under_review'")
        .await;
    assert_eq!(decided, 6);
    let refusals = app
        .count("select count(*) from audit_log where action = 'conversion.review.rejected'")
        .await;
    assert_eq!(refusals, 6, "one refusal per race");
    app.stop().await;
}
