//! `pinflow bench --sweep`: the timed jobs against a backlog of due deadlines. N active
//! credentials whose validity ended a moment ago are written straight into a fresh
//! database; then, in one run on the same broker, (1) the broker publishes and
//! confirms as many messages as the sweep will announce (an event and a notice per
//! credential), and (2) two replicas of every registered worker that has timed jobs
//! start on that database and sweep it together, until every credential is marked and
//! every announcement is confirmed on the broker. Reported as rates and their ratio.
//! Names no worker: the workers with timed jobs are found by their descriptions.

use std::time::{Duration, Instant};

use lapin::Channel;
use lapin::options::QueueDeleteOptions;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::ceiling::{count, declare, events_sink, publish_all};
use super::commands::tax_code;
use super::database::{Counters, DatabaseWork, OURS};
use super::running::peak_rss_kib;
use super::setup_for;
use crate::broker::names::NOTIFY_CHANNELS;
use crate::broker::{self, Names};
use crate::config::{Connections, Rules, Runtime};
use crate::runtime::{Registration, descriptions};
use crate::seal::OutboxKey;

/// Replicas that share the sweep.
const REPLICAS: usize = 2;

/// Messages announced per expired credential: `pin.expired` and a notice.
const PER_CREDENTIAL: u32 = 2;

/// What was measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepReport {
    /// Credentials due.
    pub credentials: u32,
    /// Broker ceiling: messages published with confirms per second.
    pub broker_publish_rate: f64,
    /// Credentials marked expired per second, both replicas together.
    pub marked_rate: f64,
    /// Credentials expired and announced (every message confirmed) per second.
    pub announced_rate: f64,
    /// Peak resident memory of this process, in KiB.
    pub peak_rss_kib: u64,
    /// What PostgreSQL did from the replicas' start until everything was announced,
    /// per credential (see `Report::database`).
    pub database: DatabaseWork,
    /// The namespace (and database name) the run used, removed afterwards.
    pub namespace: String,
}

impl SweepReport {
    /// Announced messages per second as a share of the broker's publish-confirm rate.
    pub fn ratio(&self) -> f64 {
        self.announced_rate * f64::from(PER_CREDENTIAL) / self.broker_publish_rate
    }
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = f64::from(self.credentials);
        let messages = self.credentials * PER_CREDENTIAL;
        let lines = [
            ("credentials due:", format!("{}", self.credentials)),
            ("replicas sharing the sweep:", format!("{REPLICAS}")),
            (
                "messages to announce:",
                format!("{messages} (an event and a notice each)"),
            ),
            (
                "broker publish-confirm ceiling:",
                format!("{:.0} msg/s", self.broker_publish_rate),
            ),
            (
                "swept (all marked expired):",
                format!(
                    "{:.1} s, {:.0} credentials/s",
                    n / self.marked_rate,
                    self.marked_rate
                ),
            ),
            (
                "swept and announced:",
                format!(
                    "{:.1} s, {:.0} credentials/s",
                    n / self.announced_rate,
                    self.announced_rate
                ),
            ),
            (
                "ratio to the publish-confirm ceiling:",
                format!("{:.3}", self.ratio()),
            ),
            (
                "peak RSS of this process:",
                format!("{} MiB", self.peak_rss_kib / 1024),
            ),
        ];
        for (label, value) in lines {
            writeln!(f, "{label:<40}{value}")?;
        }
        self.database.write(f, 40, "credential")?;
        writeln!(f)
    }
}

/// Writes `n` active credentials whose validity ended within the last minute, each
/// with an e-mail on record, half citizens and half intermediaries.
pub async fn seed(pool: &PgPool, n: u32) -> anyhow::Result<()> {
    let chunk = 20_000;
    for start in (0..n).step_by(chunk) {
        let codes: Vec<String> = (start..n.min(start + chunk as u32)).map(tax_code).collect();
        sqlx::query(
            "insert into credentials (id, tax_code, kind, holder, channel, status, given_name,
                 family_name, birth_date, residence_country, contacts, postal_address,
                 pin_hash, activated_at, valid_until, issued_at)
             select gen_random_uuid(), code, 'ordinary',
                 case when i % 2 = 0 then 'citizen' else 'intermediary' end, 'online',
                 'active', 'Laura', 'Bianchi', date '1980-01-01', 'AR',
                 jsonb_build_object('email', lower(code) || '@example.org'), $2,
                 'not-a-real-hash', now() - interval '3 months',
                 now() - interval '1 second' - (i % 60000) * interval '1 millisecond',
                 now() - interval '4 months'
             from unnest($1::text[]) with ordinality as c(code, i)",
        )
        .bind(&codes)
        .bind(json!({ "line1": "Avenida 1", "city": "Buenos Aires", "postal_code": "C1000", "country": "AR" }))
        .execute(pool)
        .await?;
    }
    sqlx::query("analyze credentials").execute(pool).await?;
    Ok(())
}

/// Runs both phases and removes the namespace and the database afterwards, also when a
/// phase fails.
pub async fn run(
    connections: &Connections,
    runtime: &Runtime,
    rules: &Rules,
    registry: &[Registration],
    credentials: u32,
) -> anyhow::Result<SweepReport> {
    let sweepers: Vec<String> = registry
        .iter()
        .filter(|r| !r.description.jobs.is_empty())
        .map(|r| r.description.name.to_owned())
        .collect();
    anyhow::ensure!(!sweepers.is_empty(), "no registered worker has timed jobs");
    let tag = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let base = connections
        .database_url
        .rsplit_once('/')
        .map_or(&*connections.database_url, |(h, _)| h);
    let bench = Connections {
        amqp_url: connections.amqp_url.clone(),
        database_url: format!("{base}/{tag}"),
        namespace: tag.clone(),
    };
    let outcome = measure(&bench, runtime, rules, registry, &sweepers, credentials).await;
    let cleaned = super::teardown(&bench, runtime, &descriptions(registry), base).await;
    let report = outcome?;
    cleaned?;
    Ok(report)
}

/// Both phases, on the run's namespace and database.
async fn measure(
    bench: &Connections,
    runtime: &Runtime,
    rules: &Rules,
    registry: &[Registration],
    sweepers: &[String],
    credentials: u32,
) -> anyhow::Result<SweepReport> {
    let tag = &bench.namespace;
    let pool = super::super::prepare_database(&bench.database_url, 4, &Default::default()).await?;
    seed(&pool, credentials).await?;
    let connection = broker::connect(&bench.amqp_url).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let messages = credentials * PER_CREDENTIAL;
    let broker_publish_rate = broker_ceiling(&channel, tag, messages, runtime).await?;

    // Phase 2: the replicas; their events are counted in a sink bound to the events
    // exchange, their notices in the namespace's own `notify.*` queues.
    let workers = descriptions(registry);
    super::super::declare_topology(bench, runtime, &workers).await?;
    let names = Names::new(tag);
    let sink = events_sink(&channel, tag, &names).await?;
    let mut counted: Vec<String> = NOTIFY_CHANNELS
        .iter()
        .map(|c| names.notify_queue(c))
        .collect();
    counted.push(sink);
    let database = Counters::take(&pool).await?;
    let started = Instant::now();
    let replicas = start_replicas(bench, runtime, rules, registry, sweepers)?;
    let (marked, announced) = wait(&channel, &counted, &pool, messages, &replicas, started).await?;
    let database = database.since(&pool, credentials).await?;
    for (stop, task) in replicas {
        let _ = stop.send(());
        task.await??;
    }
    // Closed here, not dropped: the connection closes next.
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    pool.close().await;
    let n = f64::from(credentials);
    Ok(SweepReport {
        credentials,
        broker_publish_rate,
        marked_rate: n / marked.as_secs_f64(),
        announced_rate: n / announced.as_secs_f64(),
        peak_rss_kib: peak_rss_kib("self"),
        database,
        namespace: tag.clone(),
    })
}

/// Phase 1: the broker alone publishes and confirms `messages` messages of about the
/// size of a notice to a quorum queue. Messages per second.
async fn broker_ceiling(
    channel: &Channel,
    tag: &str,
    messages: u32,
    runtime: &Runtime,
) -> anyhow::Result<f64> {
    let data = json!({ "notification_id": Uuid::new_v4(), "template": "pin_expired",
        "to": "laura@example.org", "params": { "credential_id": Uuid::new_v4(),
        "given_name": "Laura", "family_name": "Bianchi", "expired_at": "2027-05-22T10:00:00.000Z" } });
    let body = serde_json::to_vec(&json!({ "data": data }))?;
    let bodies: Vec<(String, Vec<u8>)> = (0..messages)
        .map(|i| (i.to_string(), body.clone()))
        .collect();
    let queue = format!("{tag}.ceiling");
    declare(channel, &queue, true).await?;
    let started = Instant::now();
    let kind = ("bench", None);
    publish_all(
        channel,
        "",
        &queue,
        &bodies,
        kind,
        runtime.confirm_timeout,
        None,
    )
    .await?;
    let rate = f64::from(messages) / started.elapsed().as_secs_f64();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    Ok(rate)
}

/// A running replica: how to stop it, and its task.
type Replica = (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>);

/// Starts `REPLICAS` copies of the workers with timed jobs on one database, as
/// separate deployments would run them; each runs a pass at once.
fn start_replicas(
    bench: &Connections,
    runtime: &Runtime,
    rules: &Rules,
    registry: &[Registration],
    sweepers: &[String],
) -> anyhow::Result<Vec<Replica>> {
    let key = OutboxKey::generate().to_base64();
    let mut replicas = Vec::with_capacity(REPLICAS);
    for _ in 0..REPLICAS {
        let (stop, stopped) = oneshot::channel::<()>();
        let setup = setup_for(bench, runtime, rules, &key, registry, sweepers.to_vec())?;
        let task = tokio::spawn(super::super::run(setup, async move {
            let _ = stopped.await;
        }));
        replicas.push((stop, task));
    }
    Ok(replicas)
}

/// Waits until every announcement is in the queues counted; returns when no
/// credential was left unmarked and when everything was announced, both from
/// `started`.
async fn wait(
    channel: &Channel,
    counted: &[String],
    pool: &PgPool,
    messages: u32,
    replicas: &[Replica],
    started: Instant,
) -> anyhow::Result<(Duration, Duration)> {
    let mut marked = None;
    loop {
        let mut arrived = 0;
        for queue in counted {
            arrived += count(channel, queue).await?;
        }
        if arrived >= messages {
            break;
        }
        anyhow::ensure!(
            replicas.iter().all(|(_, t)| !t.is_finished()),
            "a replica stopped during the benchmark"
        );
        if marked.is_none() {
            let active = format!("{OURS} select count(*) from credentials where status = 'active'");
            let left: i64 = sqlx::query_scalar(&active).fetch_one(pool).await?;
            if left == 0 {
                marked = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let announced = started.elapsed();
    Ok((marked.unwrap_or(announced), announced))
}
