//! `pinflow bench`: the load benchmark. It measures, in one run on the same broker,
//! (1) the broker's own ceiling for the message pattern (publish-confirm of
//! `pin.request`-sized bodies into a quorum queue, then consume and ack them), and
//! (2) pinflow end to end: N `pin.request`s already queued, the workers started, until
//! every second half has reached `notify.post`. Figures are reported as ratios of the
//! two, since absolute rates on a shared machine move from run to run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{self, Setup};
use crate::broker::{self, Names, publish};
use crate::clock::SystemClock;
use crate::config::{Connections, Rules, Runtime};
use crate::contract::CONTENT_TYPE;
use crate::seal::OutboxKey;

/// What was measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Requests sent in each phase.
    pub messages: u32,
    /// Broker ceiling: publish with confirms, messages per second.
    pub broker_publish_rate: f64,
    /// Broker ceiling: consume and ack, messages per second.
    pub broker_consume_rate: f64,
    /// pinflow: requests fully handled (both halves published) per second.
    pub pinflow_rate: f64,
    /// Peak resident memory of this process, in KiB.
    pub peak_rss_kib: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "messages per phase:              {}", self.messages)?;
        writeln!(
            f,
            "broker publish-confirm ceiling:  {:.0} msg/s",
            self.broker_publish_rate
        )?;
        writeln!(
            f,
            "broker consume+ack ceiling:      {:.0} msg/s",
            self.broker_consume_rate
        )?;
        writeln!(
            f,
            "pinflow pin.request end to end:  {:.0} req/s",
            self.pinflow_rate
        )?;
        writeln!(
            f,
            "ratio to publish-confirm:        {:.3}",
            self.pinflow_rate / self.broker_publish_rate
        )?;
        writeln!(
            f,
            "ratio to consume+ack:            {:.3}",
            self.pinflow_rate / self.broker_consume_rate
        )?;
        write!(
            f,
            "peak RSS of this process:        {} MiB",
            self.peak_rss_kib / 1024
        )
    }
}

/// A valid, distinct tax code for each `n` below 28,000.
pub fn tax_code(n: u32) -> String {
    let day = 1 + (n / 1000) % 28;
    let first15 = format!("BNCLRA80A{day:02}Z{:03}", n % 1000);
    let check = crate::domain::tax_code::check_character(&first15).unwrap_or('X');
    format!("{first15}{check}")
}

/// A `pin.request` for benchmark applicant `n`.
pub fn request(n: u32) -> Value {
    json!({
        "specversion": "1.0", "id": Uuid::new_v4().to_string(), "source": "bench",
        "type": "pin.request", "time": "2026-11-22T10:00:00Z", "datacontenttype": "application/json",
        "data": {
            "channel": "online", "holder": "citizen",
            "applicant": { "tax_code": tax_code(n), "given_name": "Laura", "family_name": "Bianchi",
                "birth_date": "1980-01-01", "residence_country": "AR", "italian_id_document": false },
            "postal_address": { "line1": "Avenida 1", "city": "Buenos Aires", "postal_code": "C1000", "country": "AR" },
            "contacts": { "mobile": "+5491112345678" },
            "first_half_via": "sms"
        }
    })
}

fn properties(id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_message_id(ShortString::from(id))
        .with_type(ShortString::from("pin.request"))
        .with_delivery_mode(2)
}

/// Publishes bodies with confirms, keeping `window` confirms outstanding.
async fn publish_all(
    channel: &Channel,
    exchange: &str,
    key: &str,
    bodies: &[(String, Vec<u8>)],
    limit: Duration,
) -> anyhow::Result<()> {
    let window = 256;
    let mut pending = std::collections::VecDeque::new();
    for (id, body) in bodies {
        pending
            .push_back(publish::start(channel, exchange, key, body, properties(id), true).await?);
        if pending.len() >= window
            && let Some(confirm) = pending.pop_front()
        {
            publish::confirmed(confirm, limit).await?;
        }
    }
    for confirm in pending {
        publish::confirmed(confirm, limit).await?;
    }
    Ok(())
}

/// Runs both phases and cleans up after itself.
pub async fn run(
    connections: &Connections,
    runtime: &Runtime,
    rules: &Rules,
    messages: u32,
) -> anyhow::Result<Report> {
    let tag = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let bodies: Vec<(String, Vec<u8>)> = (0..messages)
        .map(|n| {
            let event = request(n);
            (
                event["id"].as_str().unwrap_or_default().to_owned(),
                serde_json::to_vec(&event).unwrap_or_default(),
            )
        })
        .collect();

    let connection = broker::connect(&connections.amqp_url).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;

    // Phase 1: the broker's ceiling, same bodies, same queue type.
    let queue = format!("{tag}.ceiling");
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    let started = Instant::now();
    publish_all(&channel, "", &queue, &bodies, runtime.confirm_timeout).await?;
    let broker_publish_rate = f64::from(messages) / started.elapsed().as_secs_f64();
    channel
        .basic_qos(runtime.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let batch = u32::from(runtime.batch_size);
    for n in 1..=messages {
        let delivery = consumer
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("consumer closed"))??;
        if n % batch == 0 || n == messages {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let broker_consume_rate = f64::from(messages) / started.elapsed().as_secs_f64();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;

    // Phase 2: pinflow, with the requests already queued.
    let base = connections
        .database_url
        .rsplit_once('/')
        .map(|(head, _)| head)
        .unwrap_or(&connections.database_url);
    let bench_connections = Connections {
        amqp_url: connections.amqp_url.clone(),
        database_url: format!("{base}/{tag}"),
        namespace: tag.clone(),
    };
    app::declare_topology(&bench_connections, runtime).await?;
    let names = Names::new(&tag);
    publish_all(
        &channel,
        &names.commands(),
        "pin.request",
        &bodies,
        runtime.confirm_timeout,
    )
    .await?;
    let pool =
        app::prepare_database(&bench_connections.database_url, 2, &Default::default()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let setup = Setup {
        connections: bench_connections.clone(),
        runtime: runtime.clone(),
        rules: rules.clone(),
        key: OutboxKey::generate(),
        clock: Arc::new(SystemClock),
        workers: Vec::new(),
    };
    let started = Instant::now();
    let worker = tokio::spawn(app::run(setup, async move {
        let _ = stopped.await;
    }));
    let post = names.notify_queue("post");
    loop {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(post.as_str().into(), passive, FieldTable::default())
            .await?;
        if declared.message_count() >= messages {
            break;
        }
        anyhow::ensure!(
            !worker.is_finished(),
            "pinflow stopped during the benchmark"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pinflow_rate = f64::from(messages) / started.elapsed().as_secs_f64();
    let _ = stop.send(());
    worker.await??;
    broker::topology::delete(&channel, &names, runtime, crate::workers::ALL).await?;
    let _ = connection.close(200, "done".into()).await;
    pool.close().await;
    let admin = crate::store::connect(&format!("{base}/postgres"), 1).await?;
    sqlx::query(&format!("drop database if exists {tag} with (force)"))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(Report {
        messages,
        broker_publish_rate,
        broker_consume_rate,
        pinflow_rate,
        peak_rss_kib: peak_rss_kib(),
    })
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
