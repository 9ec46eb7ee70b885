//! The test harness: each test gets its own namespace on the shared broker and its own
//! database on the shared server, runs pinflow in-process with an injected clock, and
//! reads what comes out of the exchanges as a gateway or an upstream system would.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

pub mod account;
pub mod conversion;
pub mod delivery_receipts;
pub mod identity_delegation;
pub mod issuance;
pub mod phone_pins;
pub mod process;
pub mod services;
pub mod subscriber;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use pinflow::app::{self, Setup};
use pinflow::broker::{self, Names, publish::publish_routed};
use pinflow::clock::ShiftedClock;
use pinflow::config::{Connections, Rules, Runtime};
use pinflow::contract::schemas::Schemas;
use pinflow::runtime::{JobTrigger, Registration, descriptions};
use pinflow::seal::OutboxKey;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use services::services;

/// How long a test waits for something that should come.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A flag given twice takes its last value, so a test's extra settings override the
/// defaults below (`--consumers 2`).
#[derive(Parser)]
#[command(args_override_self = true)]
struct Settings {
    #[command(flatten)]
    runtime: Runtime,
    #[command(flatten)]
    rules: Rules,
}

/// Settings for tests: cheap Argon2, short retry delays, one consumer per worker;
/// everything else default.
pub fn test_settings(extra: &[&str]) -> (Runtime, Rules) {
    let mut args = vec![
        "test",
        "--argon2-m-cost",
        "256",
        "--argon2-t-cost",
        "1",
        "--retry-min-delay",
        "PT1S",
        "--retry-max-delay",
        "PT4S",
        "--relay-interval",
        "PT1S",
        // One consumer, so tests can rely on queue order (the `pinflow` binary in the
        // reliability suite runs the default, several).
        "--consumers",
        "1",
    ];
    args.extend_from_slice(extra);
    let settings = Settings::parse_from(args);
    (settings.runtime, settings.rules)
}

/// A fresh database on the shared server, and its URL.
pub async fn fresh_database(prefix: &str) -> (String, String) {
    let base = &services().await.database_url;
    let name = format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let (head, _) = base.rsplit_once('/').expect("database url has a path");
    (name.clone(), format!("{head}/{name}"))
}

/// One message taken from a queue.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The body as JSON (Null when it is not JSON).
    pub body: Value,
    /// The raw body.
    pub raw: Vec<u8>,
    /// The AMQP headers.
    pub headers: FieldTable,
    /// The AMQP properties.
    pub properties: BasicProperties,
}

impl Taken {
    /// A text header.
    pub fn header(&self, name: &str) -> Option<String> {
        pinflow::broker::publish::header_str(Some(&self.headers), name)
    }
}

/// pinflow running in-process for one test.
pub struct TestApp {
    pub names: Names,
    pub namespace: String,
    pub database_url: String,
    pub database_name: String,
    pub pool: PgPool,
    pub clock: ShiftedClock,
    pub channel: Channel,
    pub runtime: Runtime,
    /// The outbox key pinflow runs with (base64), for operator commands.
    pub key: String,
    /// The workers of this test's pinflow: the product's registry, plus any
    /// test-only workers.
    pub registry: Vec<Registration>,
    /// Starts a pass of every timed job at once.
    pub jobs_now: JobTrigger,
    /// Which of the registry's workers `start_app` runs; empty means all.
    pub workers: Vec<String>,
    /// The broker.
    pub amqp_url: String,
    connection: Connection,
    events_queue: String,
    seen_events: Mutex<Vec<Value>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts pinflow with the test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts pinflow with extra settings (flags, as on the command line).
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    spawn_registry(pinflow::workers::REGISTRY.to_vec(), extra).await
}

/// Starts pinflow with these workers (the product's, test-only ones, or both) and
/// waits until every worker that has a queue consumes it.
pub async fn spawn_registry(registry: Vec<Registration>, extra: &[&str]) -> TestApp {
    let (app, connections, rules) = observer_of(registry, extra).await;
    start_app(app, connections, rules).await
}

/// Queues `commands` as RPCs before pinflow starts, so that its consumer takes them
/// together, then starts it: pinflow, and the replies' data in the commands' order.
pub async fn answered_together(
    app: TestApp,
    connections: Connections,
    rules: Rules,
    commands: &[Value],
) -> (TestApp, Vec<Value>) {
    let asked = app.send_rpcs(commands).await;
    let app = start_app(app, connections, rules).await;
    (app, asked.answers().await)
}

/// Each answer's `status`.
pub fn statuses(answers: &[Value]) -> Vec<&str> {
    answers
        .iter()
        .map(|a| a["status"].as_str().expect("a status"))
        .collect()
}

/// An Argon2id hasher as cheap as the parameters allow, for hashes a test seeds.
pub fn cheap_hasher() -> pinflow::domain::PinHasher {
    let params = pinflow::domain::HashParams {
        m_cost_kib: 256,
        t_cost: 1,
        p_cost: 1,
    };
    pinflow::domain::PinHasher::new(params).expect("a hasher")
}

/// Runs pinflow in-process for an observer made by `observer_of`.
pub async fn start_app(mut app: TestApp, connections: Connections, rules: Rules) -> TestApp {
    let (shutdown, stopped) = oneshot::channel::<()>();
    let setup = Setup {
        connections,
        runtime: app.runtime.clone(),
        rules,
        keys: pinflow::seal::KeyRing::single(OutboxKey::from_base64(&app.key).expect("test key")),
        clock: Arc::new(app.clock.clone()),
        registry: app.registry.clone(),
        workers: app.workers.clone(),
        jobs_now: app.jobs_now.clone(),
    };
    app.task = Some(tokio::spawn(app::run(setup, async move {
        let _ = stopped.await;
    })));
    app.shutdown = Some(shutdown);
    for worker in descriptions(&app.registry) {
        let chosen = app.workers.is_empty() || app.workers.iter().any(|w| w == worker.name);
        if worker.has_queue() && chosen {
            app.wait_for_consumer(&app.names.work_queue(worker.name))
                .await;
        }
    }
    app
}

/// A namespace, a database and a connection to watch them, without pinflow running
/// (for tests that run the `pinflow` binary themselves).
pub async fn observer_with(extra: &[&str]) -> (TestApp, Connections, Rules) {
    observer_of(pinflow::workers::REGISTRY.to_vec(), extra).await
}

/// Like `observer_with`, for a registry of the test's choosing; the whole topology of
/// its workers is declared.
pub async fn observer_of(
    registry: Vec<Registration>,
    extra: &[&str],
) -> (TestApp, Connections, Rules) {
    let services = services().await;
    let namespace = format!("t{}", &Uuid::new_v4().simple().to_string()[..10]);
    let (database_name, database_url) = fresh_database("pinflow_test").await;
    let (runtime, rules) = test_settings(extra);
    let connections = Connections {
        amqp_url: services.amqp_url.clone(),
        database_url: database_url.clone(),
        namespace: namespace.clone(),
    };
    app::declare_topology(&connections, &runtime, &descriptions(&registry))
        .await
        .expect("declare topology");
    let names = Names::new(&namespace);
    let connection = broker::connect(&services.amqp_url).await.expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirms");
    let events_queue = format!("{namespace}.test.events");
    channel
        .queue_declare(
            events_queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("events queue");
    channel
        .queue_bind(
            events_queue.as_str().into(),
            names.events().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind events");
    let pool = app::prepare_database(&database_url, 4, &Default::default())
        .await
        .expect("database");
    let app = TestApp {
        names,
        namespace,
        database_url,
        database_name,
        pool,
        clock: ShiftedClock::new(),
        channel,
        runtime,
        key: OutboxKey::generate().to_base64(),
        registry,
        jobs_now: JobTrigger::default(),
        workers: Vec::new(),
        amqp_url: services.amqp_url.clone(),
        connection,
        events_queue,
        seen_events: Mutex::new(Vec::new()),
        shutdown: None,
        task: None,
    };
    (app, connections, rules)
}

impl TestApp {
    /// The test's own queue bound to every event.
    pub fn events_queue(&self) -> String {
        self.events_queue.clone()
    }

    /// Waits until a queue has a consumer (the worker is up).
    pub async fn wait_for_consumer(&self, queue: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let channel = self.connection.create_channel().await.expect("channel");
            let consumers = channel
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await
                .map(|q| q.consumer_count())
                .unwrap_or(0);
            let _ = channel.close(200, "ok".into()).await;
            if consumers > 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no consumer on {queue}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes a command as an upstream system would.
    pub async fn publish(&self, event: &Value) {
        self.publish_with(event, None, None).await;
    }

    /// Publishes a command with an RPC `reply_to` and `correlation_id`.
    pub async fn publish_with(
        &self,
        event: &Value,
        reply_to: Option<&str>,
        correlation_id: Option<&str>,
    ) {
        let mut properties = command_properties(event);
        if let Some(reply_to) = reply_to {
            properties = properties.with_reply_to(ShortString::from(reply_to));
        }
        if let Some(correlation_id) = correlation_id {
            properties = properties.with_correlation_id(ShortString::from(correlation_id));
        }
        let routing_key = event["type"].as_str().unwrap_or("none");
        let body = serde_json::to_vec(event).expect("json");
        self.publish_raw(routing_key, &body, properties).await;
    }

    /// Publishes any bytes to `pinflow.commands`.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        publish_routed(
            &self.channel,
            &self.names.commands(),
            routing_key,
            body,
            properties,
            PATIENCE,
        )
        .await
        .expect("publish confirmed");
    }

    /// Sends an RPC command and waits for the reply.
    pub async fn rpc(&self, event: &Value) -> Taken {
        self.rpc_all(std::slice::from_ref(event)).await.remove(0)
    }

    /// Sends RPC commands one after the other, without waiting in between, and
    /// returns their replies in the same order.
    pub async fn rpc_all(&self, events: &[Value]) -> Vec<Taken> {
        self.send_rpcs(events).await.replies().await
    }

    /// Sends RPC commands one after the other; `Asked::replies` takes their replies
    /// (also after pinflow starts, for commands sent while it was not running).
    pub async fn send_rpcs(&self, events: &[Value]) -> Asked {
        let channel = self.connection.create_channel().await.expect("channel");
        let queue = pinflow::broker::private_queue(&channel)
            .await
            .expect("reply queue");
        let consume = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "rpc".into(),
                consume,
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
        let correlation_ids: Vec<String> =
            events.iter().map(|_| Uuid::new_v4().to_string()).collect();
        for (event, correlation_id) in events.iter().zip(&correlation_ids) {
            self.publish_with(event, Some(queue.name().as_str()), Some(correlation_id))
                .await;
        }
        Asked {
            channel,
            consumer,
            correlation_ids,
        }
    }

    /// Takes `n` messages from a queue, waiting for them; fails if fewer come.
    pub async fn take(&self, queue: &str, n: usize) -> Vec<Taken> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while out.len() < n {
            match self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                Some(message) => {
                    out.push(taken(message.delivery.data, message.delivery.properties))
                }
                None => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "only {} of {n} messages on {queue}",
                        out.len()
                    );
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        out
    }

    /// Every message waiting on a queue now, without waiting.
    pub async fn drain(&self, queue: &str) -> Vec<Taken> {
        let mut out = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            out.push(taken(message.delivery.data, message.delivery.properties));
        }
        out
    }

    /// The notification queue for a channel (`sms`, `email`, `post`, `office`, `pec`).
    pub fn notify_queue(&self, channel: &str) -> String {
        self.names.notify_queue(channel)
    }

    /// Waits for the next event of a type (events of other types are kept for later
    /// calls).
    pub async fn event(&self, event_type: &str) -> Value {
        self.take_event_where(event_type, |_| true).await
    }

    /// Waits for the next event of a type that `wanted` accepts, and takes it (other
    /// events are kept for later calls).
    pub async fn take_event_where(
        &self,
        event_type: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            {
                let mut seen = self.seen_events.lock().await;
                for taken in self.drain(&self.events_queue).await {
                    assert_valid(&taken.body);
                    seen.push(taken.body);
                }
                if let Some(i) = seen
                    .iter()
                    .position(|e| e["type"] == event_type && wanted(e))
                {
                    return seen.remove(i);
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {event_type} event of the kind wanted"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every event received so far and not yet taken, of one type.
    pub async fn events_so_far(&self, event_type: &str) -> Vec<Value> {
        let mut seen = self.seen_events.lock().await;
        for taken in self.drain(&self.events_queue).await {
            seen.push(taken.body);
        }
        seen.iter()
            .filter(|e| e["type"] == event_type)
            .cloned()
            .collect()
    }

    /// Sends an RPC command for a credential and returns the reply's data, checked
    /// against its schema.
    pub async fn ask(&self, message_type: &str, data: Value) -> Value {
        let reply = self.rpc(&command(message_type, data)).await;
        assert_valid(&reply.body);
        reply.body["data"].clone()
    }

    /// Holds the credential of `tax_code` locked in a transaction of the test's own,
    /// until the transaction ends, so a worker that needs it waits.
    pub async fn hold_credential(
        &self,
        tax_code: &str,
    ) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut holder = self.pool.begin().await.unwrap();
        sqlx::query("select id from credentials where tax_code = $1 for update")
            .bind(tax_code)
            .fetch_one(&mut *holder)
            .await
            .unwrap();
        holder
    }

    /// A number from the database.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }

    /// Waits until the count `sql` returns reaches `expected`; fails if it passes it
    /// or has not reached it within `PATIENCE`.
    pub async fn wait_for_count(&self, sql: &str, expected: i64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let n = self.count(sql).await;
            if n == expected {
                return;
            }
            assert!(n < expected, "{sql}: {n}, more than {expected}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sql}: {n} of {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the outbox is empty: every row published, confirmed and settled. A
    /// row goes a moment after its message has arrived, so `wait_for_count`, which
    /// fails at once while there are more rows than it waits for, would race it.
    pub async fn wait_for_empty_outbox(&self) {
        account::eventually("the outbox is empty", || async {
            self.count("select count(*) from outbox").await == 0
        })
        .await;
    }

    /// Runs `pinflow ARGS` against this test's namespace and database, as an operator
    /// would; returns (success, stdout, stderr).
    pub fn pinflow(&self, args: &[&str]) -> (bool, String, String) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"))
            .args(args)
            .env("PINFLOW_AMQP_URL", &self.amqp_url)
            .env("PINFLOW_DATABASE_URL", &self.database_url)
            .env("PINFLOW_NAMESPACE", &self.namespace)
            .env("PINFLOW_OUTBOX_KEY", &self.key)
            .env("PINFLOW_LOG", "warn")
            .env("USER", "test-operator")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run pinflow");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// A new connection and channel for the test itself (after the broker dropped the
    /// old ones); the test's event queue is declared again.
    pub async fn reconnect(&mut self) {
        self.connection = broker::connect(&self.amqp_url).await.expect("reconnect");
        self.channel = self.connection.create_channel().await.expect("channel");
        self.channel
            .confirm_select(Default::default())
            .await
            .expect("confirms");
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        self.channel
            .queue_declare(
                self.events_queue.as_str().into(),
                exclusive,
                FieldTable::default(),
            )
            .await
            .expect("events queue");
        self.channel
            .queue_bind(
                self.events_queue.as_str().into(),
                self.names.events().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind events");
    }

    /// Takes each message of `queue` and hands it back, as a worker that crashes on it
    /// every time would, until the broker's delivery limit dead-letters it.
    pub async fn hand_back_until_dead_lettered(&self, queue: &str) {
        for _ in 0..10 {
            let options = BasicGetOptions { no_ack: false };
            let got = self
                .channel
                .basic_get(queue.into(), options)
                .await
                .expect("get");
            let Some(message) = got else { return };
            let requeue = lapin::options::BasicRejectOptions { requeue: true };
            self.channel
                .basic_reject(message.delivery.delivery_tag, requeue)
                .await
                .expect("reject");
        }
    }

    /// Messages ready in a queue.
    pub async fn ready(&self, queue: &str) -> u32 {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        self.channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .expect("queue exists")
            .message_count()
    }

    /// Stops pinflow, then removes the test's queues, exchanges and database.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("pinflow task")
                .expect("pinflow stopped cleanly");
        }
        // A `pinflow` process a test starts declares the retry queues of the default
        // retry settings, the test's in-process pinflow those of its own: both go.
        let defaults = Settings::parse_from(["test"]).runtime;
        for runtime in [&defaults, &self.runtime] {
            let _ = broker::topology::delete(
                &self.channel,
                &self.names,
                runtime,
                &descriptions(&self.registry),
            )
            .await;
        }
        let _ = self.connection.close(200, "done".into()).await;
        self.pool.close().await;
        drop_database(&self.database_name).await;
    }
}

/// Drops a test database, disconnecting whoever is still on it.
pub async fn drop_database(name: &str) {
    let admin = sqlx::PgPool::connect(&services().await.database_url)
        .await
        .expect("admin");
    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&admin)
        .await;
    admin.close().await;
}

/// RPC commands sent and awaiting their replies.
pub struct Asked {
    channel: lapin::Channel,
    consumer: lapin::Consumer,
    correlation_ids: Vec<String>,
}

impl Asked {
    /// The replies' data, in the order the commands were sent, each reply checked
    /// against its schema.
    pub async fn answers(self) -> Vec<Value> {
        let replies = self.replies().await;
        replies
            .into_iter()
            .map(|reply| {
                assert_valid(&reply.body);
                reply.body["data"].clone()
            })
            .collect()
    }

    /// The replies, in the order the commands were sent.
    pub async fn replies(mut self) -> Vec<Taken> {
        let mut replies: Vec<Option<Taken>> = self.correlation_ids.iter().map(|_| None).collect();
        for _ in &self.correlation_ids {
            let delivery = tokio::time::timeout(PATIENCE, self.consumer.next())
                .await
                .expect("a reply in time")
                .expect("consumer open")
                .expect("delivery");
            let correlation_id = delivery.properties.correlation_id().as_ref();
            let index = self
                .correlation_ids
                .iter()
                .position(|c| Some(c.as_str()) == correlation_id.map(|c| c.as_str()))
                .expect("the reply carries a request's correlation id");
            replies[index] = Some(taken(delivery.data, delivery.properties));
        }
        let _ = self.channel.close(200, "ok".into()).await;
        replies
            .into_iter()
            .map(|r| r.expect("one reply each"))
            .collect()
    }
}

fn taken(data: Vec<u8>, properties: BasicProperties) -> Taken {
    Taken {
        body: serde_json::from_slice(&data).unwrap_or(Value::Null),
        raw: data,
        headers: properties.headers().clone().unwrap_or_default(),
        properties,
    }
}

/// The AMQP properties an upstream system sets on a command.
pub fn command_properties(event: &Value) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    );
    BasicProperties::default()
        .with_content_type("application/cloudevents+json".into())
        .with_message_id(ShortString::from(event["id"].as_str().unwrap_or("none")))
        .with_type(ShortString::from(event["type"].as_str().unwrap_or("none")))
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// Checks a published message against its schema: the envelope, then the data.
pub fn assert_valid(message: &Value) {
    let schemas = Schemas::embedded();
    schemas
        .check("cloudevent", message)
        .unwrap_or_else(|e| panic!("not a CloudEvent: {e}: {message}"));
    let message_type = message["type"].as_str().expect("type");
    schemas
        .check(message_type, &message["data"])
        .unwrap_or_else(|e| panic!("{message_type} breaks its schema: {e}: {message}"));
}

/// A valid tax code, different for each `n` below 1000.
pub fn tax_code(n: u32) -> String {
    let first15 = format!("RSSMRA85T10A{:03}", n % 1000);
    let check = pinflow::domain::tax_code::check_character(&first15).expect("15 valid characters");
    format!("{first15}{check}")
}

/// A credential written straight into the database, as earlier commands would have
/// left it (for tests that start pinflow with work already waiting).
pub struct Seed<'a> {
    /// `ordinary` or `device`.
    pub kind: &'a str,
    /// `issued` (its initial PIN valid for `window` more) or `active` (for five months
    /// more, since a month).
    pub status: &'a str,
    /// The hash of its PIN, or of its initial PIN while issued.
    pub hash: &'a str,
    /// How much longer the initial PIN of an issued credential is valid (negative:
    /// its window has passed).
    pub window: chrono::Duration,
    /// Consecutive failed checks.
    pub failed_attempts: i32,
}

impl Default for Seed<'_> {
    fn default() -> Self {
        Seed {
            kind: "ordinary",
            status: "active",
            hash: "not-a-real-hash",
            window: chrono::Duration::days(30),
            failed_attempts: 0,
        }
    }
}

/// Writes `seed` as `tax_code`'s credential, whose holder lives in Germany; its id.
pub async fn seed_credential(app: &TestApp, tax_code: &str, seed: Seed<'_>) -> String {
    let issued = seed.status == "issued";
    let id: Uuid = sqlx::query_scalar(
        "insert into credentials (id, tax_code, kind, holder, channel, status, given_name,
             family_name, birth_date, residence_country, contacts, postal_address,
             pin_hash, initial_pin_hash, initial_pin_expires_at, activated_at, valid_until,
             failed_attempts, issued_at)
         values (gen_random_uuid(), $1, $2, 'citizen', 'online', $3, 'Mario', 'Rossi',
             date '1985-12-10', 'DE', '{\"mobile\": \"+4915112345678\"}',
             '{\"line1\": \"Hauptstrasse 1\", \"city\": \"Berlin\", \"postal_code\": \"10115\", \"country\": \"DE\"}',
             case when $4 then null else $5 end, case when $4 then $5 end, $6,
             case when $4 then null else now() - interval '1 month' end,
             case when $4 then null else now() + interval '5 months' end,
             $7, now() - interval '1 month')
         returning id",
    )
    .bind(tax_code)
    .bind(seed.kind)
    .bind(seed.status)
    .bind(issued)
    .bind(seed.hash)
    .bind(chrono::Utc::now() + seed.window)
    .bind(seed.failed_attempts)
    .fetch_one(&app.pool)
    .await
    .expect("seed a credential");
    id.to_string()
}

/// A CloudEvent command.
pub fn command(message_type: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": Uuid::new_v4().to_string(),
        "source": "portal",
        "type": message_type,
        "time": "2026-11-22T10:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    })
}
