//! Timed jobs: replicas share due rows without handling any twice, and a pass killed
//! mid-batch and run again announces nothing twice (ids derived from what is
//! announced). The job here is test-only: it sweeps a table the test makes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{PATIENCE, TestApp, observer_with};
use pinflow::contract::Outgoing;
use pinflow::contract::outgoing::derived_id;
use pinflow::error::HandlerError;
use pinflow::runtime::{Batch, Job};
use serde_json::json;
use sqlx::{PgConnection, Row as _};
use tokio::sync::Notify;

/// Announces `pin.expiring` for each due row of `due_rows`, marking it handled by
/// its runner. With `die_after` set, it stops dead in the middle of a batch (after
/// changing rows, before the commit) the given batch, like a killed process.
struct Reminders {
    runner: &'static str,
    die_in_batch: Option<(usize, Arc<Notify>)>,
    batches: std::sync::atomic::AtomicUsize,
}

impl Reminders {
    fn new(runner: &'static str) -> Reminders {
        Reminders {
            runner,
            die_in_batch: None,
            batches: Default::default(),
        }
    }
}

fn announcement_id(credential: &str, deadline: DateTime<Utc>) -> String {
    derived_id(&[credential, "expiry_reminder", &deadline.to_rfc3339()])
}

impl Job for Reminders {
    fn name(&self) -> &'static str {
        "reminders"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    async fn run_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Batch, HandlerError> {
        let rows = sqlx::query(
            "select id, credential_id, tax_code, due_at from due_rows
             where handled_count = 0 and due_at <= $1
             order by id limit $2 for update skip locked",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let mut outgoing = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let credential: String = row.get("credential_id");
            let due: DateTime<Utc> = row.get("due_at");
            let data = json!({ "tax_code": row.get::<String, _>("tax_code"), "credential_id": credential, "valid_until": due });
            let event = Outgoing::event("pin.expiring", data, now)
                .with_id(announcement_id(&credential, due));
            outgoing.push(event);
            ids.push(row.get::<i64, _>("id"));
        }
        sqlx::query("update due_rows set handled_count = handled_count + 1, handled_by = $2 where id = any($1)")
            .bind(&ids)
            .bind(self.runner)
            .execute(&mut *conn)
            .await?;
        let batch = self
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some((dying, reached)) = &self.die_in_batch
            && batch == *dying
        {
            reached.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(Batch {
            handled: rows.len(),
            outgoing,
        })
    }
}

async fn due_rows(app: &TestApp, n: i64) {
    sqlx::query(
        "create table due_rows (id bigserial primary key, credential_id text not null,
             tax_code text not null, due_at timestamptz not null,
             handled_count integer not null default 0, handled_by text)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into due_rows (credential_id, tax_code, due_at)
         select gen_random_uuid()::text, 'RSSMRA85T10A562S', now() - interval '1 minute'
         from generate_series(1, $1)",
    )
    .bind(n)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn two_runners_share_five_thousand_rows_and_handle_each_once() {
    let (app, _, _) = observer_with(&["--sweep-batch", "50"]).await;
    due_rows(&app, 5000).await;
    let deps = common::account::deps(&app);
    let (a, b) = (Reminders::new("r1"), Reminders::new("r2"));
    let (da, db) = (deps.clone(), deps.clone());
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { pinflow::runtime::job::pass(&a, &da).await }),
        tokio::spawn(async move { pinflow::runtime::job::pass(&b, &db).await }),
    );
    let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
    assert_eq!(ra + rb, 5000, "the passes handled {ra} and {rb}");
    assert!(ra > 0 && rb > 0, "both runners took a share: {ra} and {rb}");
    assert_eq!(
        app.count("select count(*) from due_rows where handled_count = 1")
            .await,
        5000
    );
    assert_eq!(
        app.count("select count(*) from due_rows where handled_count <> 1")
            .await,
        0
    );
    assert_eq!(app.count("select count(*) from outbox").await, 5000);
    assert_eq!(
        app.count("select count(distinct message_id) from outbox")
            .await,
        5000
    );
    let by_runner = app
        .count("select count(distinct handled_by) from due_rows")
        .await;
    assert_eq!(by_runner, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_pass_killed_mid_batch_and_run_again_announces_nothing_twice() {
    let (app, _, _) = observer_with(&["--sweep-batch", "100"]).await;
    due_rows(&app, 300).await;
    let deps = common::account::deps(&app);
    let reached = Arc::new(Notify::new());
    let dying = Reminders {
        die_in_batch: Some((1, reached.clone())),
        ..Reminders::new("dying")
    };
    let d = deps.clone();
    let killed = tokio::spawn(async move { pinflow::runtime::job::pass(&dying, &d).await });
    tokio::time::timeout(PATIENCE, reached.notified())
        .await
        .expect("second batch reached");
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());
    // The first batch committed; the second died with its transaction.
    assert_eq!(
        app.count("select count(*) from due_rows where handled_count = 1")
            .await,
        100
    );
    assert_eq!(app.count("select count(*) from outbox").await, 100);

    let again = Reminders::new("again");
    assert_eq!(
        pinflow::runtime::job::pass(&again, &deps).await.unwrap(),
        200
    );
    assert_eq!(pinflow::runtime::job::pass(&again, &deps).await.unwrap(), 0);

    // Publish the outbox and read every announcement as a subscriber would.
    let channel = app.channel.clone();
    let published = pinflow::runtime::relay::drain(&deps, &channel)
        .await
        .unwrap();
    assert_eq!(published, 300);
    let events = app.take(&app.events_queue(), 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.drain(&app.events_queue()).await.is_empty(),
        "nothing announced twice"
    );
    let mut ids: Vec<String> = events
        .iter()
        .map(|e| e.body["id"].as_str().unwrap().to_owned())
        .collect();
    for event in &events {
        common::assert_valid(&event.body);
        let data = &event.body["data"];
        let due = DateTime::parse_from_rfc3339(data["valid_until"].as_str().unwrap()).unwrap();
        let expected = announcement_id(
            data["credential_id"].as_str().unwrap(),
            due.with_timezone(&Utc),
        );
        assert_eq!(
            event.body["id"],
            expected.as_str(),
            "the id is derived from what it announces"
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
    assert_eq!(
        app.count("select count(*) from due_rows where handled_count <> 1")
            .await,
        0
    );
    app.stop().await;
}

/// A worker made only of a timed job: no queue.
const SWEEPER: pinflow::runtime::Registration = pinflow::runtime::Registration {
    description: pinflow::manifest::Description {
        name: "sweeper",
        bindings: &[],
        jobs: &[pinflow::manifest::JobSpec {
            name: "reminders",
            interval_setting: "PINFLOW_SWEEP_INTERVAL",
        }],
    },
    start: |starter| starter.every(Reminders::new("app")),
    parse: |_| Ok(()),
};

#[tokio::test]
async fn a_triggered_pass_sees_the_injected_clock_and_a_job_is_healthy_without_a_queue() {
    let (app, connections, rules) = common::observer_of(vec![SWEEPER], &[]).await;
    due_rows(&app, 0).await;
    sqlx::query(
        "insert into due_rows (credential_id, tax_code, due_at)
         select gen_random_uuid()::text, 'RSSMRA85T10A562S', now() + interval '1 day'
         from generate_series(1, 3)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let app = common::start_app(app, connections.clone(), rules).await;
    let health = pinflow::ops::health::check(&connections, &[&SWEEPER.description]).await;
    assert!(health.is_ok(), "{health:?}");
    // The first pass ran at start; nothing was due yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.count("select count(*) from due_rows where handled_count > 0")
            .await,
        0
    );

    app.clock.advance(chrono::Duration::days(2));
    app.jobs_now.fire();
    let events = app.take(&app.events_queue(), 3).await;
    assert!(events.iter().all(|e| e.body["type"] == "pin.expiring"));
    assert_eq!(
        app.count("select count(*) from due_rows where handled_by = 'app'")
            .await,
        3
    );
    app.stop().await;
}
