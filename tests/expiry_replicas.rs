//! Two expiry workers share one sweep: 10,000 credentials past their deadline, two
//! replicas running the same pass at once, and each credential expired, audited,
//! announced and noticed exactly once.

mod common;

use std::time::Duration;

use common::account::{deps, pass};
use common::issuance::many_tax_code;
use common::{TestApp, observer_with};
use pinflow::domain::Period;
use pinflow::workers::expiry::{Sweep, Timed};

const DUE: usize = 10_000;

/// `n` active credentials, half citizens and half intermediaries, each with an
/// e-mail on record, whose validity ended between one minute and a few seconds more
/// ago.
async fn due_credentials(app: &TestApp, n: usize) {
    let codes: Vec<String> = (0..n as u32).map(many_tax_code).collect();
    sqlx::query(
        "insert into credentials (id, tax_code, kind, holder, channel, status, given_name,
             family_name, birth_date, residence_country, contacts, postal_address,
             pin_hash, activated_at, valid_until, issued_at)
         select gen_random_uuid(), code, 'ordinary',
             case when i % 2 = 0 then 'citizen' else 'intermediary' end, 'online', 'active',
             'Laura', 'Bianchi', date '1980-01-01', 'AR',
             jsonb_build_object('email', 'laura' || i || '@example.org'),
             '{\"line1\": \"Avenida 1\", \"city\": \"Buenos Aires\", \"postal_code\": \"C1000\", \"country\": \"AR\"}',
             'not-a-real-hash', now() - interval '3 months', deadline, now() - interval '4 months'
         from unnest($1::text[]) with ordinality as c(code, i),
             lateral (select now() - interval '1 minute' - i * interval '1 millisecond' as deadline) d",
    )
    .bind(&codes)
    .execute(&app.pool)
    .await
    .expect("seed");
}

fn replica() -> Timed {
    Timed {
        sweep: Sweep::Expire,
        interval: Duration::from_secs(3600),
        reminder: Period::parse("P14D").unwrap(),
    }
}

#[tokio::test]
async fn two_expiry_workers_sweep_ten_thousand_due_credentials_and_expire_each_once() {
    let (app, _, _) = observer_with(&["--sweep-batch", "200"]).await;
    due_credentials(&app, DUE).await;
    let deps = deps(&app);
    let (da, db) = (deps.clone(), deps.clone());
    let (a, b) = tokio::join!(
        tokio::spawn(async move { pass(&replica(), &da).await }),
        tokio::spawn(async move { pass(&replica(), &db).await }),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a + b, DUE, "the replicas handled {a} and {b}");
    assert!(a > 0 && b > 0, "both replicas took a share: {a} and {b}");
    assert_eq!(pass(&replica(), &deps).await, 0, "nothing is left");

    let count = |sql: &'static str| app.count(sql);
    assert_eq!(
        count("select count(*) from credentials where status = 'expired'").await,
        DUE as i64
    );
    assert_eq!(
        count("select count(*) from credentials where status <> 'expired'").await,
        0
    );
    assert_eq!(
        count("select count(*) from credentials where pin_hash is not null").await,
        0,
        "no hash outlives its PIN"
    );
    let events = "select count(distinct body->'data'->>'credential_id') from outbox where message_type = 'pin.expired'";
    assert_eq!(count(events).await, DUE as i64);
    assert_eq!(
        count("select count(*) from outbox where message_type = 'pin.expired'").await,
        DUE as i64
    );
    let notices = "select count(distinct body->'data'->>'to') from outbox where message_type = 'notify.email'";
    assert_eq!(count(notices).await, DUE as i64);
    assert_eq!(count("select count(*) from outbox").await, 2 * DUE as i64);
    assert_eq!(
        count("select count(distinct message_id) from outbox").await,
        2 * DUE as i64
    );
    let ledger = "select count(*) from notifications where template = 'pin_expired'";
    assert_eq!(count(ledger).await, DUE as i64);
    let audited =
        "select count(distinct credential_id) from audit_log where action = 'pin.expired'";
    assert_eq!(count(audited).await, DUE as i64);
    assert_eq!(count("select count(*) from audit_log").await, DUE as i64);
    app.stop().await;
}
