//! A PIN hashed with other (weaker) Argon2 costs verifies and is re-hashed with the
//! current costs at that moment; the new hash still verifies the same PIN.

mod common;

use common::issuance::{IssuanceApp, pin_request};
use common::{spawn_app, tax_code};
use pinflow::domain::{HashParams, PinHasher};
use serde_json::json;

#[tokio::test]
async fn a_pin_hashed_with_weaker_costs_is_rehashed_when_it_verifies() {
    let app = spawn_app().await;
    let code = tax_code(71);
    let (first, second) = app.halves_of(&pin_request(&code, "online")).await;
    let access = app
        .ask(
            "pin.first_access",
            json!({ "tax_code": code, "initial_pin": format!("{first}{second}") }),
        )
        .await;
    assert_eq!(access["status"], "ok");
    let pin = access["pin"].as_str().expect("the new PIN").to_owned();

    // As if it had been hashed under an older, weaker setting.
    let weaker = PinHasher::new(HashParams {
        m_cost_kib: 128,
        t_cost: 1,
        p_cost: 1,
    })
    .unwrap();
    let old_hash = weaker.hash(&pin).unwrap();
    sqlx::query("update credentials set pin_hash = $1 where tax_code = $2")
        .bind(&old_hash)
        .bind(&code)
        .execute(&app.pool)
        .await
        .unwrap();

    let reply = app
        .ask("pin.verify", json!({ "tax_code": code, "pin": pin }))
        .await;
    assert_eq!(reply["status"], "ok");
    let stored: String = sqlx::query_scalar("select pin_hash from credentials where tax_code = $1")
        .bind(&code)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_ne!(stored, old_hash, "re-hashed");
    assert!(
        stored.contains("m=256,t=1"),
        "with the current costs: {stored}"
    );
    assert!(!stored.contains(&pin));
    let again = app
        .ask("pin.verify", json!({ "tax_code": code, "pin": pin }))
        .await;
    assert_eq!(again["status"], "ok", "the new hash verifies the same PIN");
    app.stop().await;
}
