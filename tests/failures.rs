//! Bad input and failing infrastructure: poison messages go to the dead-letter queue
//! with a reason and change nothing (not even the audit log); transient failures are
//! retried and succeed.

mod common;

use std::ops::Range;

use common::issuance::{IssuanceApp, pin_request};
use common::{
    Taken, TestApp, command, command_properties, observer_of, spawn_app, start_app, tax_code,
};
use lapin::BasicProperties;
use lapin::types::ShortString;
use pinflow::broker::Names;
use pinflow::broker::dead_letter::{ATTEMPTS, ERROR, FAILED_AT, QUEUE, ROUTING_KEY};
use pinflow::contract::{Envelope, Outgoing, ParseError};
use pinflow::error::HandlerError;
use pinflow::manifest::{Binding, Description};
use pinflow::runtime::{Message, Registration, Starter, Worker};
use serde_json::json;
use sqlx::PgConnection;

fn plain_properties(id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/cloudevents+json".into())
        .with_message_id(ShortString::from(id))
}

fn reason(dead: &Taken) -> String {
    dead.header(ERROR).expect("x-pinflow-error")
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_at_once_with_a_reason() {
    let app = spawn_app().await;
    let mut wrong_schema = pin_request(&tax_code(20), "online");
    wrong_schema["data"]["contacts"] = json!({});
    let mut bad_check_character = pin_request(&tax_code(21), "online");
    let code = tax_code(21);
    let wrong = if code.ends_with('A') { "B" } else { "A" };
    bad_check_character["data"]["applicant"]["tax_code"] = json!(format!("{}{wrong}", &code[..15]));
    let mut unknown_type = pin_request(&tax_code(22), "online");
    unknown_type["type"] = json!("pin.bogus");
    let mut sms_without_mobile = pin_request(&tax_code(23), "online");
    sms_without_mobile["data"]["contacts"] = json!({ "email": "a@example.org" });

    let cases: Vec<(&str, Vec<u8>, BasicProperties, &str)> = vec![
        (
            "malformed json",
            b"{\"specversion\": \"1.0\", ".to_vec(),
            plain_properties("m1"),
            "malformed json",
        ),
        (
            "not a cloudevent",
            br#"{"hello": "world"}"#.to_vec(),
            plain_properties("m2"),
            "not a cloudevent",
        ),
        (
            "invalid utf-8",
            vec![0xff, 0xfe, 0x7b],
            plain_properties("m3"),
            "malformed json",
        ),
        (
            "wrong content type",
            serde_json::to_vec(&pin_request(&tax_code(24), "online")).unwrap(),
            plain_properties("m4").with_content_type("text/plain".into()),
            "content type",
        ),
        (
            "unknown type",
            serde_json::to_vec(&unknown_type).unwrap(),
            command_properties(&unknown_type),
            "unknown type",
        ),
        (
            "schema violation",
            serde_json::to_vec(&wrong_schema).unwrap(),
            command_properties(&wrong_schema),
            "schema violation",
        ),
        (
            "bad check character",
            serde_json::to_vec(&bad_check_character).unwrap(),
            command_properties(&bad_check_character),
            "tax_code",
        ),
        (
            "sms without mobile",
            serde_json::to_vec(&sms_without_mobile).unwrap(),
            command_properties(&sms_without_mobile),
            "schema violation",
        ),
    ];
    for (_, body, properties, _) in &cases {
        app.publish_raw("pin.request", body, properties.clone())
            .await;
    }
    let dead = app.take(&app.dlq(), cases.len()).await;
    for ((name, body, _, expected), dead) in cases.iter().zip(&dead) {
        let reason = reason(dead);
        assert!(
            reason.contains(expected),
            "{name}: reason `{reason}` should mention `{expected}`"
        );
        assert!(dead.header(FAILED_AT).is_some(), "{name}: failed-at header");
        assert_eq!(
            dead.header(ROUTING_KEY).as_deref(),
            Some("pin.request"),
            "{name}"
        );
        assert_eq!(
            dead.header(QUEUE).as_deref(),
            Some(app.work_queue().as_str()),
            "{name}"
        );
        // The dead letter keeps the original body, with any secret sealed (a body
        // that is not a JSON object is sealed whole); with the key it opens back.
        let keys = pinflow::seal::KeyRing::single(
            pinflow::seal::OutboxKey::from_base64(&app.key).unwrap(),
        );
        let message_id = dead
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let place = pinflow::sealing::Place {
            message_id: &message_id,
            queue: &app.dlq(),
        };
        let opened = pinflow::sealing::unseal_body(&dead.raw, &keys, &place).unwrap();
        assert_eq!(
            &opened, body,
            "{name}: the dead letter is the original body"
        );
    }
    app.barrier().await;
    assert_eq!(
        app.count("select count(*) from credentials").await,
        0,
        "nothing happened"
    );
    assert_eq!(
        app.count("select count(*) from inbox where message_id not like 'barrier-%'")
            .await,
        0
    );
    assert!(app.drain(&app.notify_queue("sms")).await.is_empty());
    assert!(app.events_so_far("pin.issued").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_rpc_command_without_reply_to_is_invalid() {
    let app = spawn_app().await;
    let verify = command(
        "pin.verify",
        json!({ "tax_code": tax_code(25), "pin": "ABCDEFGH" }),
    );
    app.publish(&verify).await;
    let dead = app.take(&app.dlq(), 1).await.remove(0);
    assert!(reason(&dead).contains("reply_to"), "{}", reason(&dead));
    assert_ne!(
        dead.body["data"]["pin"], "ABCDEFGH",
        "the dead letter does not hold the PIN in clear"
    );
    assert!(
        dead.body["data"]["pin"]
            .as_str()
            .unwrap()
            .starts_with("sealed:v2:")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_command_no_worker_binds_is_kept_in_the_unrouted_queue() {
    let app = spawn_app().await;
    let stray = command("pin.teleport", json!({ "tax_code": tax_code(26) }));
    app.publish(&stray).await;
    let kept = app.take(&app.names.unrouted_dlq(), 1).await.remove(0);
    assert_eq!(kept.body["id"], stray["id"]);
    app.stop().await;
}

#[tokio::test]
async fn a_database_outage_is_retried_and_then_succeeds() {
    let app = spawn_app().await;
    let admin = sqlx::PgPool::connect(&common::services().await.database_url)
        .await
        .unwrap();
    let db = &app.database_name;
    sqlx::query(&format!("alter database {db} allow_connections false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()")
        .bind(db)
        .execute(&admin)
        .await
        .unwrap();

    let request = pin_request(&tax_code(27), "online");
    app.publish(&request).await;
    // The first attempt fails while the database refuses connections and goes to a
    // delay queue; wait until it has been retried at least once before restoring.
    let retry_queues = pinflow::broker::topology::retry_ttls(&app.runtime);
    let first_retry = pinflow::broker::Names::retry_queue(&app.work_queue(), retry_queues[0]);
    wait_until_seen(&app, &first_retry).await;
    sqlx::query(&format!("alter database {db} allow_connections true"))
        .execute(&admin)
        .await
        .unwrap();

    let sms = app.take(&app.notify_queue("sms"), 1).await.remove(0);
    assert_eq!(sms.body["data"]["template"], "pin_first_half");
    app.take(&app.notify_queue("post"), 1).await;
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let credentials: i64 = sqlx::query_scalar("select count(*) from credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(credentials, 1);
    assert!(
        app.drain(&app.dlq()).await.is_empty(),
        "retried, not dead-lettered"
    );
    pool.close().await;
    admin.close().await;
    app.stop().await;
}

/// Waits until a queue has held a message (its publish counter moved) by peeking at
/// its message count until the message has passed through.
async fn wait_until_seen(app: &common::TestApp, queue: &str) {
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    loop {
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = app
            .channel
            .queue_declare(queue.into(), passive, Default::default())
            .await
            .expect("queue exists");
        if q.message_count() > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing reached {queue}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_message_out_of_attempts_is_dead_lettered_with_its_count() {
    let app = common::spawn_app_with(&["--retry-max-attempts", "2"]).await;
    let admin = sqlx::PgPool::connect(&common::services().await.database_url)
        .await
        .unwrap();
    let db = &app.database_name;
    sqlx::query(&format!("alter database {db} allow_connections false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()")
        .bind(db)
        .execute(&admin)
        .await
        .unwrap();
    app.publish(&pin_request(&tax_code(28), "online")).await;
    let dead = app.take(&app.dlq(), 1).await.remove(0);
    assert_eq!(
        pinflow::broker::publish::header_u32(Some(&dead.headers), ATTEMPTS),
        Some(2)
    );
    assert!(dead.header(ERROR).is_some());
    sqlx::query(&format!("alter database {db} allow_connections true"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    app.stop().await;
}

/// A test-only worker on `pin.request` that audits every request it handles and then
/// refuses, for good, the one for `REFUSED`: as a handler would that finds a reason to
/// refuse only after it has audited.
struct AuditThenRefuse;

/// The tax code the worker refuses.
const REFUSED: u32 = 41;

impl Worker for AuditThenRefuse {
    type Command = String;
    type Prepared = String;

    fn parse(&self, envelope: &Envelope) -> Result<String, ParseError> {
        Ok(envelope.data["applicant"]["tax_code"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    async fn prepare(&self, tax_code: String) -> Result<String, HandlerError> {
        Ok(tax_code)
    }

    async fn handle<'a>(
        &'a self,
        tax_code: &'a String,
        message: &'a Message<'a>,
        _conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        message.audit("test", "seen", Some(tax_code), None, json!({}));
        if *tax_code == common::tax_code(REFUSED) {
            return Err(HandlerError::Permanent("refused after auditing".into()));
        }
        Ok(Vec::new())
    }
}

/// What the test-only workers bind: `pin.request`, causing nothing.
const PIN_REQUEST: &[Binding] = &[Binding::command("pin.request", &[])];

/// A test-only worker on `pin.request`, as the registry lists it.
const fn on_pin_request(name: &'static str, start: fn(&Starter<'_>)) -> Registration {
    Registration {
        description: Description {
            name,
            bindings: PIN_REQUEST,
            jobs: &[],
        },
        start,
        parse: |_| Ok(()),
    }
}

const AUDIT_THEN_REFUSE: Registration = on_pin_request("audit_then_refuse", |starter| {
    starter.consume(AuditThenRefuse)
});

/// Starts `worker` alone with a request of each of `tax_codes` queued before it starts,
/// so they are taken together.
async fn queued_before_start(worker: Registration, tax_codes: Range<u32>) -> TestApp {
    let (app, connections, rules) = observer_of(vec![worker], &[]).await;
    for n in tax_codes {
        app.publish(&pin_request(&tax_code(n), "online")).await;
    }
    start_app(app, connections, rules).await
}

/// How many times the test workers audited seeing the request of `tax_code(n)`.
async fn seen(app: &TestApp, n: u32) -> i64 {
    let sql = format!(
        "select count(*) from audit_log where action = 'seen' and tax_code = '{}'",
        tax_code(n)
    );
    app.count(&sql).await
}

#[tokio::test]
async fn what_a_refused_message_audited_is_dropped_and_its_batch_keeps_the_rest() {
    let app = queued_before_start(AUDIT_THEN_REFUSE, 40..43).await;
    let dlq = Names::dlq(&app.names.work_queue("audit_then_refuse"));
    let dead = app.take(&dlq, 1).await.remove(0);
    assert_eq!(reason(&dead), "refused after auditing");
    app.wait_for_count("select count(*) from audit_log where action = 'seen'", 2)
        .await;
    for n in 40..43 {
        let expected = i64::from(n != REFUSED);
        assert_eq!(seen(&app, n).await, expected, "{}", tax_code(n));
    }
    app.stop().await;
}

/// A test-only worker on `pin.request` whose `prepare_batch` answers for the first
/// command of a batch only, as a worker with a bug in its batch preparation would; it
/// handles each request as `AuditThenRefuse` does.
struct PreparesTheFirstOnly;

impl Worker for PreparesTheFirstOnly {
    type Command = String;
    type Prepared = String;

    fn parse(&self, envelope: &Envelope) -> Result<String, ParseError> {
        AuditThenRefuse.parse(envelope)
    }

    async fn prepare(&self, tax_code: String) -> Result<String, HandlerError> {
        Ok(tax_code)
    }

    async fn prepare_batch(
        &self,
        batch: Vec<(String, tracing::Span)>,
    ) -> Vec<Result<String, HandlerError>> {
        batch
            .into_iter()
            .take(1)
            .map(|(code, _)| Ok(code))
            .collect()
    }

    async fn handle<'a>(
        &'a self,
        tax_code: &'a String,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        AuditThenRefuse.handle(tax_code, message, conn).await
    }
}

const PREPARES_THE_FIRST_ONLY: Registration =
    on_pin_request("prepares_the_first_only", |starter| {
        starter.consume(PreparesTheFirstOnly)
    });

#[tokio::test]
async fn a_batch_prepared_with_too_few_results_is_prepared_one_by_one() {
    let app = queued_before_start(PREPARES_THE_FIRST_ONLY, 50..54).await;
    app.wait_for_count("select count(*) from audit_log where action = 'seen'", 4)
        .await;
    for n in 50..54 {
        assert_eq!(seen(&app, n).await, 1, "{}", tax_code(n));
    }
    let dlq = Names::dlq(&app.names.work_queue("prepares_the_first_only"));
    assert!(app.drain(&dlq).await.is_empty(), "nothing dead-lettered");
    app.stop().await;
}
