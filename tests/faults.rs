//! The reliability suite: break things on purpose and count what was lost, doubled or
//! leaked (in the manner of RabbitMQ's Jepsen checks). The worker under test is the
//! real binary, started and killed as a child process. These tests stop or cut off
//! shared services, so this binary runs on its own (cargo runs test binaries one after
//! another) and its tests one at a time; every test brings the services back, even
//! when it fails. Each prints the counts it checked.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use common::issuance::IssuanceApp;
use common::issuance::{many_tax_code as tax_code, request};
use common::process::{Pinflow, key, start, start_with};
use common::{PATIENCE, Taken, TestApp, command, observer_with};
use pinflow::config::Connections;
use serde_json::{Value, json};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// What a scenario counted.
struct Counts {
    scenario: &'static str,
    sent: usize,
    processed: usize,
    lost: usize,
    duplicated: usize,
    redelivered: usize,
    leaked: usize,
}

impl Counts {
    fn report_and_check(&self) {
        println!(
            "{}: sent={} processed={} lost={} duplicated={} redelivered={} leaked={}",
            self.scenario,
            self.sent,
            self.processed,
            self.lost,
            self.duplicated,
            self.redelivered,
            self.leaked
        );
        assert_eq!(
            (self.lost, self.duplicated, self.leaked),
            (0, 0, 0),
            "{}",
            self.scenario
        );
        assert_eq!(self.processed, self.sent, "{}", self.scenario);
    }
}

fn children_env(level: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PINFLOW_LOG", level.to_owned()),
        ("PINFLOW_RETRY_MIN_DELAY", "PT1S".into()),
        ("PINFLOW_RETRY_MAX_DELAY", "PT2S".into()),
        ("PINFLOW_RETRY_MAX_ATTEMPTS", "10".into()),
    ]
}

fn run(connections: &Connections, key: &str, env: &[(&'static str, String)]) -> Pinflow {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start(connections, key, &pairs)
}

/// Starts `pinflow run` and waits until it consumes.
async fn running(app: &TestApp, connections: &Connections, level: &str) -> Pinflow {
    let pinflow = run(connections, &key(), &children_env(level));
    app.wait_for_consumer(&app.work_queue()).await;
    pinflow
}

async fn publish_all(app: &TestApp, requests: &[Value]) {
    for request in requests {
        app.publish(request).await;
    }
}

/// Waits until every request has its credential and the outbox is empty.
async fn settle(app: &TestApp, credentials: i64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let done = app.count("select count(*) from credentials").await >= credentials
            && app.count("select count(*) from outbox").await == 0;
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "did not settle: {} credentials",
            app.count("select count(*) from credentials").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every notification on a queue, and per credential the distinct notification ids.
async fn by_credential(
    app: &TestApp,
    channel: &str,
) -> (Vec<Taken>, BTreeMap<String, BTreeSet<String>>) {
    let taken = app.drain(&app.notify_queue(channel)).await;
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in &taken {
        let credential = t.body["data"]["params"]["credential_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let id = t.body["data"]["notification_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        map.entry(credential).or_default().insert(id);
    }
    (taken, map)
}

/// Counts requests whose halves went out exactly once (by notification id), lost ones
/// and doubled ones; redelivered counts copies of one notification id on the wire.
async fn split_delivery_counts(
    app: &TestApp,
    sent: usize,
) -> (usize, usize, usize, usize, Vec<String>) {
    let (sms, sms_by) = by_credential(app, "sms").await;
    let (post, post_by) = by_credential(app, "post").await;
    let credentials: BTreeSet<&String> = sms_by.keys().chain(post_by.keys()).collect();
    let complete = credentials
        .iter()
        .filter(|c| {
            sms_by.get(**c).map_or(0, BTreeSet::len) == 1
                && post_by.get(**c).map_or(0, BTreeSet::len) == 1
        })
        .count();
    let doubled = credentials
        .iter()
        .filter(|c| {
            sms_by.get(**c).map_or(0, BTreeSet::len) > 1
                || post_by.get(**c).map_or(0, BTreeSet::len) > 1
        })
        .count();
    let rows = app.count("select count(*) from credentials").await as usize;
    let per_tax_code = app.count("select count(*) from (select tax_code from credentials group by tax_code having count(*) > 1) t").await as usize;
    let distinct_sms: usize = sms_by.values().map(BTreeSet::len).sum();
    let distinct_post: usize = post_by.values().map(BTreeSet::len).sum();
    let redelivered = (sms.len() - distinct_sms) + (post.len() - distinct_post);
    let secrets = sms
        .iter()
        .chain(&post)
        .filter_map(|t| t.body["data"]["secret"].as_str().map(str::to_owned))
        .collect();
    (
        complete,
        sent.saturating_sub(rows.min(complete)),
        doubled + per_tax_code,
        redelivered,
        secrets,
    )
}

/// How many of `secrets` stand in `places` (logs) or in the test database's data (as
/// `pg_dump` writes it). The dump and the scan run on a blocking thread, so the test's
/// runtime keeps serving its broker connection (and its heartbeats) meanwhile.
async fn leaks(app: &TestApp, secrets: &[String], places: &[&str]) -> usize {
    let database_url = app.database_url.clone();
    let secrets = secrets.to_vec();
    let mut texts: Vec<String> = places.iter().map(|p| (*p).to_owned()).collect();
    let scan = tokio::task::spawn_blocking(move || {
        let dump = std::process::Command::new("pg_dump")
            .arg("--data-only")
            .arg(&database_url)
            .output()
            .expect("pg_dump");
        assert!(dump.status.success());
        texts.push(String::from_utf8_lossy(&dump.stdout).into_owned());
        let found = found_in(&secrets, &texts);
        secrets
            .iter()
            .filter(|s| s.is_empty() || found.contains(s.as_bytes()))
            .count()
    });
    scan.await.expect("the leak scan")
}

/// The secrets that stand somewhere in `texts`, in one pass over each text per length
/// of secret, each window looked up in a set: searching for each secret in turn over
/// megabytes of debug logs took two minutes in a test build.
fn found_in<'a>(secrets: &'a [String], texts: &[String]) -> HashSet<&'a [u8]> {
    let wanted: HashSet<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
    let lengths: BTreeSet<usize> = wanted.iter().map(|s| s.len()).filter(|&n| n > 0).collect();
    let mut found = HashSet::new();
    for text in texts {
        for &length in &lengths {
            for window in text.as_bytes().windows(length) {
                if let Some(secret) = wanted.get(window) {
                    found.insert(*secret);
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn killing_the_worker_anywhere_loses_and_doubles_nothing() {
    let _serial = SERIAL.lock().await;
    let (app, connections, _) = observer_with(&[]).await;
    let key = key();
    let sent = 2500;
    let requests: Vec<Value> = (0..sent).map(|n| request(n as u32)).collect();
    publish_all(&app, &requests).await;
    let env = children_env("debug");
    let mut logs = String::new();
    let mut kills = 0;
    for round in 0..8u64 {
        let pinflow = run(&connections, &key, &env);
        // Random moments: receive, commit, ack and relay all happen within these.
        let pause = 150 + (rand_u64() % 400) + round * 10;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        logs.push_str(&pinflow.kill().await);
        kills += 1;
    }
    let pinflow = run(&connections, &key, &env);
    settle(&app, sent as i64, Duration::from_secs(120)).await;
    let (status, log) = pinflow.terminate().await;
    assert!(status.success());
    logs.push_str(&log);
    assert_eq!(
        app.ready(&app.work_queue()).await,
        0,
        "every request consumed"
    );
    let (processed, lost, duplicated, redelivered, secrets) =
        split_delivery_counts(&app, sent).await;
    let leaked = leaks(&app, &secrets, &[&logs]).await;
    println!("kill-anywhere: {kills} kills");
    Counts {
        scenario: "kill-anywhere",
        sent,
        processed,
        lost,
        duplicated,
        redelivered,
        leaked,
    }
    .report_and_check();
    assert!(
        app.drain(&app.dlq()).await.is_empty(),
        "nothing dead-lettered"
    );
    app.stop().await;
}

fn rand_u64() -> u64 {
    use rand::Rng;
    rand::thread_rng().r#gen()
}

/// Brings RabbitMQ's application back however the test ends.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["start_app", "-q"])
            .status();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["await_startup", "-q"])
            .status();
    }
}

#[tokio::test]
async fn a_broker_restart_mid_run_loses_and_doubles_nothing() {
    let _serial = SERIAL.lock().await;
    let (mut app, connections, _) = observer_with(&[]).await;
    let key = key();
    let sent = 800;
    let requests: Vec<Value> = (0..sent).map(|n| request(n as u32)).collect();
    publish_all(&app, &requests).await;
    let pinflow = run(&connections, &key, &children_env("info"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    {
        let _back = BrokerBack;
        let stopped = std::process::Command::new("rabbitmqctl")
            .args(["stop_app", "-q"])
            .status()
            .expect("rabbitmqctl");
        assert!(stopped.success());
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    app.reconnect().await;
    settle(&app, sent as i64, Duration::from_secs(120)).await;
    let (status, log) = pinflow.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(
        log.contains("reconnecting") || log.contains("cannot connect"),
        "the worker noticed the restart"
    );
    let (processed, lost, duplicated, redelivered, _) = split_delivery_counts(&app, sent).await;
    Counts {
        scenario: "broker-restart",
        sent,
        processed,
        lost,
        duplicated,
        redelivered,
        leaked: 0,
    }
    .report_and_check();
    app.stop().await;
}

/// Lets the database accept connections again however the test ends.
struct DatabaseBack(String, String);

impl Drop for DatabaseBack {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(&self.0)
            .arg("-c")
            .arg(format!("alter database {} allow_connections true", self.1))
            .output();
    }
}

#[tokio::test]
async fn a_database_outage_mid_run_is_retried_and_leaves_no_open_transaction() {
    let _serial = SERIAL.lock().await;
    let (app, connections, _) = observer_with(&[]).await;
    let key = key();
    let sent = 600;
    let requests: Vec<Value> = (0..sent).map(|n| request(n as u32)).collect();
    publish_all(&app, &requests).await;
    let pinflow = run(&connections, &key, &children_env("info"));
    let admin = sqlx::PgPool::connect(&common::services().await.database_url)
        .await
        .unwrap();
    let terminate = "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid() and application_name = 'pinflow'";
    let mut terminated: i64 = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        terminated += sqlx::query_scalar::<_, i64>(terminate)
            .bind(&app.database_name)
            .fetch_one(&admin)
            .await
            .unwrap();
    }
    {
        let _back = DatabaseBack(
            common::services().await.database_url.clone(),
            app.database_name.clone(),
        );
        sqlx::query(&format!(
            "alter database {} allow_connections false",
            app.database_name
        ))
        .execute(&admin)
        .await
        .unwrap();
        terminated += sqlx::query_scalar::<_, i64>(terminate)
            .bind(&app.database_name)
            .fetch_one(&admin)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The test's own pool was cut off too; sqlx reconnects it.
    settle(&app, sent as i64, Duration::from_secs(120)).await;
    let idle_in_transaction: i64 = sqlx::query_scalar("select count(*) from pg_stat_activity where datname = $1 and state like 'idle in transaction%'")
        .bind(&app.database_name)
        .fetch_one(&admin)
        .await
        .unwrap();
    let (status, _) = pinflow.terminate().await;
    assert!(status.success());
    assert!(terminated > 0, "the outage hit pinflow's sessions");
    assert_eq!(
        idle_in_transaction, 0,
        "no session left idle in transaction"
    );
    let (processed, lost, duplicated, redelivered, _) = split_delivery_counts(&app, sent).await;
    println!("database-outage: {terminated} sessions terminated");
    Counts {
        scenario: "database-outage",
        sent,
        processed,
        lost,
        duplicated,
        redelivered,
        leaked: 0,
    }
    .report_and_check();
    assert!(
        app.drain(&app.dlq()).await.is_empty(),
        "retried, not dead-lettered"
    );
    admin.close().await;
    app.stop().await;
}

/// Advisory locks held in the test's database (the relay's leadership is one).
async fn advisory_locks(app: &TestApp) -> i64 {
    app.count(
        "select count(*) from pg_locks where locktype = 'advisory' and granted
         and database = (select oid from pg_database where datname = current_database())",
    )
    .await
}

#[tokio::test]
async fn one_relay_leads_the_others_poke_it_and_the_next_takes_over_when_it_stops() {
    let _serial = SERIAL.lock().await;
    let (app, connections, _) = observer_with(&[]).await;
    let key = key();
    // Relays that never poll: only a wake-up from their own workers, or a poke from
    // another process's relay, makes them publish.
    let mut env = children_env("info");
    env.push(("PINFLOW_RELAY_INTERVAL", "PT1H".into()));
    env.push(("PINFLOW_PUBLISH_AT_COMMIT", "false".into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The leader runs a worker that gets nothing here, so it has no wake-up of its own.
    let leader = start_with(
        &connections,
        &key,
        &["--worker", "delivery_receipts"],
        &pairs,
    );
    app.wait_for_consumer(&app.names.work_queue("delivery_receipts"))
        .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while advisory_locks(&app).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no relay took the lead"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let follower = start_with(&connections, &key, &["--worker", "issuance"], &pairs);
    app.wait_for_consumer(&app.work_queue()).await;

    // With nothing to do, the relay that does not lead stays quiet: its own poke must
    // not wake it into poking again.
    let commits = "select xact_commit from pg_stat_database where datname = current_database()";
    let before = app.count(commits).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = app.count(commits).await - before;
    assert!(idle < 300, "{idle} transactions in 3 s with nothing to do");

    // The follower handles the request; its relay cannot lead, so it pokes the leader,
    // which publishes the two halves.
    app.publish(&request(0)).await;
    let first = [
        app.take(&app.notify_queue("sms"), 1).await,
        app.take(&app.notify_queue("post"), 1).await,
    ];
    assert_eq!(advisory_locks(&app).await, 1, "one relay leads");

    // The leader stops and its lock goes with its connection: the follower's relay
    // takes the lead at its next round.
    let (status, _) = leader.terminate().await;
    assert!(status.success());
    app.publish(&request(1)).await;
    let second = [
        app.take(&app.notify_queue("sms"), 1).await,
        app.take(&app.notify_queue("post"), 1).await,
    ];
    let credential = |taken: &[Vec<Taken>; 2]| {
        taken
            .iter()
            .map(|t| t[0].body["data"]["params"]["credential_id"].to_string())
            .collect::<BTreeSet<_>>()
    };
    let (first, second) = (credential(&first), credential(&second));
    assert_eq!(first.len(), 1, "both halves of the first request");
    assert_eq!(second.len(), 1, "both halves of the second request");
    assert_ne!(first, second);
    settle(&app, 2, PATIENCE).await;
    let (status, _) = follower.terminate().await;
    assert!(status.success());
    app.stop().await;
}

#[tokio::test]
async fn a_relay_crash_after_publishing_repeats_messages_with_the_same_ids() {
    crash_after_publishing("relay-crash", "relay-after-publish", false).await;
}

#[tokio::test]
async fn a_crash_after_publishing_at_commit_repeats_messages_with_the_same_ids() {
    crash_after_publishing("at-commit-crash", "at-commit-after-publish", true).await;
}

/// The process crashes at `failpoint`, after the broker confirmed the halves and
/// before their rows are deleted; the next process's relay publishes them again.
async fn crash_after_publishing(scenario: &'static str, failpoint: &str, at_commit: bool) {
    let _serial = SERIAL.lock().await;
    let (app, connections, _) = observer_with(&[]).await;
    let key = key();
    app.publish(&request(0)).await;
    let mut env = children_env("info");
    env.push(("PINFLOW_FAILPOINTS", failpoint.to_owned()));
    env.push(("PINFLOW_PUBLISH_AT_COMMIT", at_commit.to_string()));
    let crashing = run(&connections, &key, &env);
    let (status, _) = crashing.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(86),
        "crashed after the broker's confirm"
    );
    let pinflow = run(&connections, &key, &children_env("info"));
    settle(&app, 1, PATIENCE).await;
    let (status, _) = pinflow.terminate().await;
    assert!(status.success());
    let sms = app.drain(&app.notify_queue("sms")).await;
    let post = app.drain(&app.notify_queue("post")).await;
    assert_eq!(sms.len(), 2, "at least once: the first half went out twice");
    assert_eq!(
        sms[0].body["data"]["notification_id"], sms[1].body["data"]["notification_id"],
        "with the same notification_id"
    );
    assert_eq!(
        sms[0].body["id"], sms[1].body["id"],
        "and the same event id"
    );
    let distinct = |taken: &[Taken]| {
        taken
            .iter()
            .map(|t| t.body["data"]["notification_id"].to_string())
            .collect::<BTreeSet<_>>()
            .len()
    };
    let credentials = app.count("select count(*) from credentials").await as usize;
    let (sms_ids, post_ids) = (distinct(&sms), distinct(&post));
    Counts {
        scenario,
        sent: 1,
        processed: credentials,
        lost: usize::from(sms_ids == 0 || post_ids == 0),
        duplicated: (sms_ids + post_ids).saturating_sub(2) + credentials.saturating_sub(1),
        redelivered: sms.len() + post.len() - sms_ids - post_ids,
        leaked: 0,
    }
    .report_and_check();
    app.stop().await;
}

#[tokio::test]
async fn poison_and_hostile_input_is_dead_lettered_one_for_one() {
    let _serial = SERIAL.lock().await;
    let (app, connections, _) = observer_with(&[]).await;
    let pinflow = running(&app, &connections, "info").await;
    let props = |id: &str| {
        lapin::BasicProperties::default()
            .with_message_id(id.into())
            .with_content_type("application/cloudevents+json".into())
    };
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let huge_array = json!({ "specversion": "1.0", "id": "huge", "source": "x", "type": "pin.request", "data": { "items": vec![1; 200_000] } });
    let big = vec![b'x'; 10 * 1024 * 1024];
    let mut hostile = request(1);
    hostile["data"]["applicant"]["given_name"] = json!("Robert'); DROP TABLE credentials;--");
    hostile["data"]["applicant"]["family_name"] = json!("<script>alert(1)</script>");
    hostile["data"]["postal_address"]["line1"] = json!("1' OR '1'='1");
    hostile["data"]["applicant"]["tax_code"] = json!("RSSMRA85T10A562T");
    let mut no_id = request(2);
    no_id.as_object_mut().unwrap().remove("id");
    let bodies: Vec<(&str, Vec<u8>, lapin::BasicProperties)> = vec![
        ("malformed", b"{\"specversion\":".to_vec(), props("p1")),
        ("10 MiB", big, props("p2")),
        ("deeply nested", nested.into_bytes(), props("p3")),
        ("invalid utf-8", vec![0xc3, 0x28, 0xff], props("p4")),
        (
            "wrong content type",
            serde_json::to_vec(&request(3)).unwrap(),
            props("p5").with_content_type("application/xml".into()),
        ),
        (
            "missing id",
            serde_json::to_vec(&no_id).unwrap(),
            props("p6"),
        ),
        (
            "huge array",
            serde_json::to_vec(&huge_array).unwrap(),
            props("p7"),
        ),
        (
            "unknown type",
            serde_json::to_vec(&command("pin.request", json!({})))
                .unwrap()
                .replace_type("pin.nonsense"),
            props("p8"),
        ),
        (
            "sql and script strings with a bad tax code",
            serde_json::to_vec(&hostile).unwrap(),
            props("p9"),
        ),
    ];
    let sent = bodies.len();
    for (_, body, properties) in &bodies {
        app.publish_raw("pin.request", body, properties.clone())
            .await;
    }
    let dead = app.take(&app.dlq(), sent).await;
    // Several consumers share the queue, so dead letters come in any order: match them
    // to what was sent by message id.
    let mut matched = BTreeSet::new();
    for letter in &dead {
        let id = letter
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let (name, _, _) = bodies
            .iter()
            .find(|(_, _, p)| p.message_id().as_ref().map(|m| m.as_str()) == Some(id.as_str()))
            .expect("a dead letter for something sent");
        println!(
            "hostile: {name}: {}",
            letter.header("x-pinflow-error").unwrap_or_default()
        );
        matched.insert(id);
    }
    assert_eq!(
        matched.len(),
        sent,
        "one dead letter for each poison message"
    );
    // Throughput is kept: a valid request right after is handled.
    app.publish(&request(4)).await;
    app.take(&app.notify_queue("sms"), 1).await;
    let (status, _) = pinflow.terminate().await;
    assert!(status.success());
    assert_eq!(
        app.count("select count(*) from credentials").await,
        1,
        "only the valid request did anything"
    );
    assert!(
        app.drain(&app.dlq()).await.is_empty(),
        "exactly one dead letter per poison message"
    );
    Counts {
        scenario: "hostile-input",
        sent,
        processed: dead.len(),
        lost: sent - dead.len(),
        duplicated: 0,
        redelivered: 0,
        leaked: 0,
    }
    .report_and_check();
    app.stop().await;
}

trait ReplaceType {
    fn replace_type(self, to: &str) -> Vec<u8>;
}

impl ReplaceType for Vec<u8> {
    fn replace_type(self, to: &str) -> Vec<u8> {
        let mut value: Value = serde_json::from_slice(&self).unwrap();
        value["type"] = json!(to);
        serde_json::to_vec(&value).unwrap()
    }
}

#[tokio::test]
async fn a_duplicate_storm_on_two_workers_has_one_effect() {
    let _serial = SERIAL.lock().await;
    let (app, connections, _) = observer_with(&[]).await;
    let key = key();
    let env = children_env("trace");
    let first = run(&connections, &key, &env);
    let second = run(&connections, &key, &env);
    app.wait_for_consumer(&app.work_queue()).await;
    let the_request = request(7);
    let copies = 100;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let connections = connections.clone();
        let body = serde_json::to_vec(&the_request).unwrap();
        let properties = common::command_properties(&the_request);
        tasks.push(tokio::spawn(async move {
            let connection = pinflow::broker::connect(&connections.amqp_url)
                .await
                .unwrap();
            let channel = connection.create_channel().await.unwrap();
            channel.confirm_select(Default::default()).await.unwrap();
            let exchange = pinflow::broker::Names::new(&connections.namespace).commands();
            for _ in 0..copies / 10 {
                pinflow::broker::publish::publish_routed(
                    &channel,
                    &exchange,
                    "pin.request",
                    &body,
                    properties.clone(),
                    PATIENCE,
                )
                .await
                .unwrap();
            }
            let _ = connection.close(200, "done".into()).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.ready(&app.work_queue()).await > 0
        || app.count("select count(*) from outbox").await > 0
        || app.count("select count(*) from credentials").await == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the storm did not settle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s1, log1) = first.terminate().await;
    let (s2, log2) = second.terminate().await;
    assert!(s1.success() && s2.success());
    assert!(
        log1.contains("consuming") && log2.contains("consuming"),
        "both workers consumed"
    );
    let sms = app.drain(&app.notify_queue("sms")).await;
    let post = app.drain(&app.notify_queue("post")).await;
    let credentials = app.count("select count(*) from credentials").await as usize;
    let secrets: Vec<String> = sms
        .iter()
        .chain(&post)
        .filter_map(|t| t.body["data"]["secret"].as_str().map(str::to_owned))
        .collect();
    let leaked = leaks(&app, &secrets, &[&log1, &log2]).await;
    let duplicated = (credentials + sms.len() + post.len()).saturating_sub(3);
    assert_eq!(
        (credentials, sms.len(), post.len()),
        (1, 1, 1),
        "one PIN, one SMS half, one letter"
    );
    Counts {
        scenario: "duplicate-storm",
        sent: 1,
        processed: credentials,
        lost: 1 - credentials.min(1),
        duplicated,
        redelivered: copies - 1,
        leaked,
    }
    .report_and_check();
    app.stop().await;
}

#[tokio::test]
async fn a_thousand_wrong_pins_lock_the_credential_and_leak_nothing() {
    let _serial = SERIAL.lock().await;
    let (app, connections, _) = observer_with(&[]).await;
    let pinflow = running(&app, &connections, "trace").await;
    let the_request = request(9);
    let code = the_request["data"]["applicant"]["tax_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (first, second) = app.halves_of(&the_request).await;
    let initial_pin = format!("{first}{second}");
    let reply = app
        .ask(
            "pin.first_access",
            json!({ "tax_code": code, "initial_pin": initial_pin }),
        )
        .await;
    let pin = reply["pin"].as_str().unwrap().to_owned();

    let attempts = 1000;
    let replies = pinflow::broker::private_queue(&app.channel).await.unwrap();
    for n in 0..attempts {
        let wrong = command(
            "pin.verify",
            json!({ "tax_code": code, "pin": format!("W{n:07}") }),
        );
        app.publish_with(&wrong, Some(replies.name().as_str()), Some(&n.to_string()))
            .await;
    }
    let answers = app.take(replies.name().as_str(), attempts).await;
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for answer in &answers {
        *statuses
            .entry(answer.body["data"]["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    println!("brute-force: replies {statuses:?}");
    assert_eq!(
        statuses.get("invalid"),
        Some(&4),
        "four failures are counted"
    );
    assert_eq!(
        statuses.get("locked"),
        Some(&(attempts - 4)),
        "the fifth locks, and it stays locked"
    );
    let right = app
        .rpc(&command(
            "pin.verify",
            json!({ "tax_code": code, "pin": pin }),
        ))
        .await;
    assert_eq!(
        right.body["data"]["status"], "locked",
        "the right PIN no longer verifies"
    );
    app.event("pin.locked").await;
    let (status, log) = pinflow.terminate().await;
    assert!(status.success());
    let secrets = vec![first, second, pin];
    let leaked = leaks(&app, &secrets, &[&log]).await;
    Counts {
        scenario: "brute-force",
        sent: attempts,
        processed: answers.len(),
        lost: attempts - answers.len(),
        duplicated: 0,
        redelivered: 0,
        leaked,
    }
    .report_and_check();
    assert!(
        app.events_so_far("pin.locked").await.is_empty(),
        "locked once"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_tax_codes_used_here_are_distinct_and_valid() {
    let codes: BTreeSet<String> = (0..2500).map(tax_code).collect();
    assert_eq!(codes.len(), 2500);
    for code in codes.iter().take(50) {
        pinflow::domain::TaxCode::parse(code).unwrap();
    }
}
