//! The automatic checks of `conversion.submit`, each on its own and all at once, the
//! PIN states that cannot be converted, and bad input that the schema refuses (the
//! sending system's mistake, not the citizen's), which lands in the `.dlq` with a
//! reason and has no effect.

mod common;

use common::conversion::{ConversionApp, review, submission};
use common::{Seed, TestApp, seed_credential, spawn_app, spawn_app_with, tax_code};
use serde_json::{Value, json};

/// Submits and returns the refusal's reasons, checking that the citizen was told.
async fn refused(app: &TestApp, submitted: &Value, told: bool) -> Value {
    app.publish(submitted).await;
    let tax_code = submitted["data"]["tax_code"].as_str().unwrap();
    let rejected = app.event_for("conversion.rejected", tax_code).await;
    if told {
        let notice = app.take(&app.notify_queue("email"), 1).await.remove(0);
        assert_eq!(notice.body["data"]["template"], "conversion_rejected");
        assert_eq!(
            notice.body["data"]["params"]["reasons"],
            rejected["data"]["reasons"]
        );
        assert_eq!(
            notice.body["data"]["params"]["conversion_id"],
            rejected["data"]["conversion_id"]
        );
    }
    rejected["data"]["reasons"].clone()
}

#[tokio::test]
async fn each_failed_check_is_named_and_every_failure_comes_at_once() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(1)).await;
    let good = submission(&citizen.tax_code, "upload");
    let edits: [(&str, Value, &str); 7] = [
        (
            "/documents",
            json!([good["data"]["documents"][1]]),
            "missing_request_form",
        ),
        (
            "/documents",
            json!([good["data"]["documents"][0]]),
            "missing_identity_document",
        ),
        (
            "/documents/0/media_type",
            json!("image/gif"),
            "unsupported_media_type",
        ),
        ("/documents/1/size_bytes", json!(0), "empty_document"),
        (
            "/documents/1/size_bytes",
            json!(10 * 1024 * 1024 + 1),
            "document_too_large",
        ),
        (
            "/documents/0/sha256",
            json!("not-a-hash"),
            "malformed_sha256",
        ),
        (
            "/identity_document/expires_on",
            json!("2020-01-31"),
            "identity_document_expired",
        ),
    ];
    for (pointer, value, reason) in edits {
        let mut bad = submission(&citizen.tax_code, "upload");
        *bad["data"].pointer_mut(pointer).unwrap() = value;
        assert_eq!(
            refused(&app, &bad, true).await,
            json!([reason]),
            "{pointer}"
        );
    }
    let mut worst = submission(&citizen.tax_code, "fax");
    worst["data"]["documents"] = json!([{ "kind": "identity_document", "media_type": "text/html",
        "size_bytes": 0, "sha256": "", "uri": "s3://x" }]);
    worst["data"]["identity_document"]["expires_on"] = json!("2001-01-01");
    let reasons = refused(&app, &worst, true).await;
    assert_eq!(
        reasons,
        json!([
            "missing_request_form",
            "unsupported_media_type",
            "empty_document",
            "malformed_sha256",
            "identity_document_expired"
        ])
    );
    assert_eq!(app.login(&citizen).await["kind"], "ordinary");
    let rejected = app
        .count("select count(*) from conversions where status = 'rejected'")
        .await;
    assert_eq!(
        rejected, 8,
        "every refused submission is kept with its reasons"
    );
    assert!(
        app.events_so_far("conversion.review_requested")
            .await
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn the_document_size_limit_is_a_setting() {
    let app = spawn_app_with(&["--conversion-max-document-bytes", "1000"]).await;
    let citizen = app.citizen(&tax_code(2)).await;
    let mut large = submission(&citizen.tax_code, "upload");
    large["data"]["documents"][0]["size_bytes"] = json!(1001);
    assert_eq!(
        refused(&app, &large, true).await,
        json!(["document_too_large"])
    );
    let mut fits = submission(&citizen.tax_code, "upload");
    for document in fits["data"]["documents"].as_array_mut().unwrap() {
        document["size_bytes"] = json!(1000);
    }
    app.publish(&fits).await;
    app.event_for("conversion.review_requested", &citizen.tax_code)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn a_pin_that_is_missing_expired_revoked_or_device_already_is_not_converted() {
    let app = spawn_app().await;
    // No PIN at all: nobody on record to tell.
    let nobody = submission(&tax_code(3), "upload");
    assert_eq!(
        refused(&app, &nobody, false).await,
        json!(["pin_not_found"])
    );

    let revoked = app.citizen(&tax_code(4)).await;
    sqlx::query("update credentials set status = 'revoked' where tax_code = $1")
        .bind(&revoked.tax_code)
        .execute(&app.pool)
        .await
        .unwrap();
    let reasons = refused(&app, &submission(&revoked.tax_code, "office"), true).await;
    assert_eq!(reasons, json!(["pin_revoked"]));

    let device = app.citizen(&tax_code(5)).await;
    app.publish(&submission(&device.tax_code, "office")).await;
    app.event_for("pin.converted", &device.tax_code).await;
    app.take(&app.notify_queue("email"), 1).await;
    let reasons = refused(&app, &submission(&device.tax_code, "upload"), true).await;
    assert_eq!(reasons, json!(["pin_already_device"]));

    let expired = app.citizen(&tax_code(6)).await;
    app.clock.advance(chrono::Duration::days(190));
    let mut also_bad = submission(&expired.tax_code, "upload");
    also_bad["data"]["documents"][1]["media_type"] = json!("image/webp");
    let reasons = refused(&app, &also_bad, true).await;
    assert_eq!(reasons, json!(["pin_expired", "unsupported_media_type"]));
    let notices = app.drain(&app.notify_queue("email")).await;
    assert!(notices.is_empty(), "one notice per refusal: {notices:?}");
    app.stop().await;
}

#[tokio::test]
async fn what_the_schema_refuses_lands_in_the_dlq_with_a_reason_and_does_nothing() {
    let app = spawn_app().await;
    let citizen = app.citizen(&tax_code(7)).await;
    let mut no_fax = submission(&citizen.tax_code, "fax");
    no_fax["data"].as_object_mut().unwrap().remove("fax");
    let mut no_operator = submission(&citizen.tax_code, "office");
    no_operator["data"]
        .as_object_mut()
        .unwrap()
        .remove("operator_id");
    let mut unknown_kind = submission(&citizen.tax_code, "upload");
    unknown_kind["data"]["documents"][0]["kind"] = json!("utility_bill");
    let mut bad_tax_code = submission(&citizen.tax_code, "upload");
    bad_tax_code["data"]["tax_code"] = json!("RSSMRA85T10A562X");
    let submissions = [&no_fax, &no_operator, &unknown_kind, &bad_tax_code];
    for bad in submissions {
        app.publish(bad).await;
    }
    let dead = app.take(&app.verification_dlq(), submissions.len()).await;
    for (letter, sent) in dead.iter().zip(submissions) {
        assert_eq!(letter.body["id"], sent["id"]);
        let error = letter.header("x-pinflow-error").expect("a reason");
        assert!(
            error.contains("conversion.submit") || error.contains("tax_code"),
            "{error}"
        );
    }
    let mut bad_decision = review(&uuid::Uuid::new_v4().to_string(), "maybe", "op-17");
    bad_decision["data"]["reasons"] = json!([]);
    let mut no_operator_review = review(&uuid::Uuid::new_v4().to_string(), "approved", "op-17");
    no_operator_review["data"]
        .as_object_mut()
        .unwrap()
        .remove("operator_id");
    app.publish(&bad_decision).await;
    app.publish(&no_operator_review).await;
    let dead = app.take(&app.conversion_dlq(), 2).await;
    assert!(dead.iter().all(|d| {
        d.header("x-pinflow-error")
            .unwrap()
            .contains("conversion.review")
    }));

    // A good submission behind them is handled; the bad ones changed nothing.
    app.awaiting_review(&citizen).await;
    assert_eq!(app.count("select count(*) from conversions").await, 1);
    assert!(app.events_so_far("conversion.rejected").await.is_empty());
    assert!(
        app.events_so_far("conversion.review.rejected")
            .await
            .is_empty()
    );
    assert!(app.drain(&app.notify_queue("email")).await.is_empty());
    app.stop().await;
}

/// Submissions waiting when the worker starts come in batches, their credentials
/// locked together; each has the outcome it would have alone, and a PIN submitted
/// twice in a batch is under review once.
#[tokio::test]
async fn submissions_handled_in_batches_have_the_outcome_each_would_have_alone() {
    let (mut app, connections, rules) = common::observer_with(&[]).await;
    app.workers = vec!["verification".into()];
    let [first, second, device, nobody, twice] = [30, 31, 32, 33, 34].map(tax_code);
    let [waiting, office, empty] = [35, 36, 37].map(tax_code);
    for code in [&first, &second, &twice, &office, &empty] {
        seed_credential(&app, code, Seed::default()).await;
    }
    let device_pin = Seed {
        kind: "device",
        ..Seed::default()
    };
    seed_credential(&app, &device, device_pin).await;
    // A conversion of this PIN already waits for review.
    let waiting_pin = seed_credential(&app, &waiting, Seed::default()).await;
    sqlx::query(
        "insert into conversions (id, tax_code, credential_id, channel, status, documents,
             identity_document, submitted_by, submit_message_id, submitted_at)
         values (gen_random_uuid(), $1, $2::uuid, 'upload', 'under_review', '[]', '{}',
             'portal', 'earlier', now() - interval '1 day')",
    )
    .bind(&waiting)
    .bind(&waiting_pin)
    .execute(&app.pool)
    .await
    .unwrap();
    let mut empty_document = submission(&empty, "upload");
    empty_document["data"]["documents"][0]["size_bytes"] = json!(0);
    for code in [&first, &second, &device, &nobody, &twice, &twice, &waiting] {
        app.publish(&submission(code, "upload")).await;
    }
    app.publish(&submission(&office, "office")).await;
    app.publish(&empty_document).await;
    let app = common::start_app(app, connections, rules).await;

    for code in [&first, &second, &twice] {
        let requested = app.event_for("conversion.review_requested", code).await;
        assert_eq!(requested["data"]["channel"], "upload");
    }
    for (code, reason) in [
        (&device, "pin_already_device"),
        (&nobody, "pin_not_found"),
        (&twice, "already_under_review"),
        (&waiting, "already_under_review"),
        (&empty, "empty_document"),
    ] {
        let rejected = app.event_for("conversion.rejected", code).await;
        assert_eq!(rejected["data"]["reasons"], json!([reason]), "{code}");
    }
    app.event_for("pin.converted", &office).await;
    let conversions = |status: &str, code: &str| {
        format!(
            "select count(*) from conversions where status = '{status}' and tax_code like '{code}'"
        )
    };
    assert_eq!(app.count(&conversions("under_review", "%")).await, 4);
    assert_eq!(app.count(&conversions("under_review", &waiting)).await, 1);
    assert_eq!(app.count(&conversions("rejected", "%")).await, 5);
    assert_eq!(app.count(&conversions("approved", &office)).await, 1);
    app.stop().await;
}
