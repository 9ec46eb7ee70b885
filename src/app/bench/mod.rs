//! `pinflow bench`: the load benchmark. For one command type it measures, in one run
//! on the same broker, (1) the broker's own ceiling for that type's message pattern as
//! the worker's description gives it (consume one command, publish what it causes
//! with confirms, acknowledge), and (2) pinflow end to end: N commands already
//! queued, the workers started, until everything they cause has come out. Figures are
//! reported as ratios, since absolute rates on a shared machine move from run to run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use lapin::options::QueueDeleteOptions;
use serde_json::{Value, json};
use uuid::Uuid;

mod ceiling;
mod prelude;
pub mod sweep;

use ceiling::{pattern_ceiling, publish_all, sink_for};
use prelude::Pinflow;

use super::Setup;
use crate::broker::{self, Names};
use crate::clock::SystemClock;
use crate::config::{Connections, Rules, Runtime};
use crate::contract::schemas::Schemas;
use crate::manifest::Binding;
use crate::runtime::{JobTrigger, Registration, descriptions};
use crate::seal::{KeyRing, OutboxKey};

/// What was measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The command type driven.
    pub message_type: String,
    /// What one command causes, from the worker's description.
    pub causes: Vec<String>,
    /// Commands sent in each phase.
    pub messages: u32,
    /// Broker ceiling: publish with confirms, messages per second.
    pub broker_publish_rate: f64,
    /// Broker ceiling for the pattern: commands per second consumed, their outputs
    /// published with confirms, acknowledged.
    pub broker_pattern_rate: f64,
    /// pinflow: commands fully handled (every output out) per second.
    pub pinflow_rate: f64,
    /// Peak resident memory of this process, in KiB.
    pub peak_rss_kib: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>, label: &str, value: String| {
            writeln!(f, "{label:<34}{value}")
        };
        line(f, "command type:", self.message_type.clone())?;
        line(f, "each causes:", self.causes.join(", "))?;
        line(f, "commands per phase:", self.messages.to_string())?;
        line(
            f,
            "broker publish-confirm ceiling:",
            format!("{:.0} msg/s", self.broker_publish_rate),
        )?;
        line(
            f,
            "broker ceiling for the pattern:",
            format!("{:.0} cmd/s", self.broker_pattern_rate),
        )?;
        line(
            f,
            "pinflow end to end:",
            format!("{:.0} cmd/s", self.pinflow_rate),
        )?;
        line(
            f,
            "ratio to the pattern ceiling:",
            format!("{:.3}", self.pinflow_rate / self.broker_pattern_rate),
        )?;
        write!(
            f,
            "{:<34}{} MiB",
            "peak RSS of this process:",
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

/// Command `n` of a benchmark: the contract's example of the type, with a new id and
/// every `tax_code` in its data replaced by applicant `n`'s.
pub fn command(message_type: &str, n: u32) -> anyhow::Result<Value> {
    fn retax(value: &mut Value, code: &str) {
        match value {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    if key == "tax_code" {
                        *item = json!(code);
                    } else {
                        retax(item, code);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| retax(i, code)),
            _ => {}
        }
    }
    let mut event = Schemas::example(message_type)
        .with_context(|| format!("the contract has no example of {message_type}"))?;
    event["id"] = json!(Uuid::new_v4().to_string());
    event["source"] = json!("bench");
    retax(&mut event["data"], &tax_code(n));
    Ok(event)
}

/// What `run` needs besides the connections.
pub struct BenchSetup<'a> {
    /// Runtime settings for the workers.
    pub runtime: &'a Runtime,
    /// Business rules (Argon2 cost).
    pub rules: &'a Rules,
    /// Every registered worker.
    pub registry: &'a [Registration],
    /// The command type to drive.
    pub message_type: &'a str,
    /// Commands per phase.
    pub messages: u32,
}

fn binding_of(registry: &[Registration], message_type: &str) -> anyhow::Result<Binding> {
    registry
        .iter()
        .find_map(|r| r.description.binding(message_type).copied())
        .with_context(|| format!("no registered worker takes {message_type}"))
}

/// Runs both phases and cleans up after itself (namespace and database).
pub async fn run(connections: &Connections, bench: BenchSetup<'_>) -> anyhow::Result<Report> {
    let BenchSetup {
        runtime,
        rules,
        registry,
        message_type,
        messages,
    } = bench;
    let binding = binding_of(registry, message_type)?;
    let outputs = binding.causes.len();
    anyhow::ensure!(outputs > 0, "{message_type} causes nothing to wait for");
    let tag = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut bodies = Vec::with_capacity(messages as usize);
    for n in 0..messages {
        let event = command(message_type, n)?;
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        bodies.push((id, serde_json::to_vec(&event)?));
    }
    let connection = broker::connect(&connections.amqp_url).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let (broker_publish_rate, broker_pattern_rate) =
        pattern_ceiling(&channel, &tag, &bodies, outputs, runtime).await?;

    // Phase 2: pinflow, with the commands already queued; everything they cause
    // (events, notifications, replies) also lands in one sink queue.
    let base = connections
        .database_url
        .rsplit_once('/')
        .map_or(&*connections.database_url, |(h, _)| h);
    let bench_connections = Connections {
        amqp_url: connections.amqp_url.clone(),
        database_url: format!("{base}/{tag}"),
        namespace: tag.clone(),
    };
    let workers = descriptions(registry);
    super::declare_topology(&bench_connections, runtime, &workers).await?;
    let names = Names::new(&tag);
    let sink = sink_for(&channel, &tag, &names).await?;
    let pool =
        super::prepare_database(&bench_connections.database_url, 2, &Default::default()).await?;
    let key = OutboxKey::generate().to_base64();
    let setup = || -> anyhow::Result<Setup> {
        Ok(Setup {
            connections: bench_connections.clone(),
            runtime: runtime.clone(),
            rules: rules.clone(),
            keys: KeyRing::single(OutboxKey::from_base64(&key)?),
            clock: Arc::new(SystemClock),
            registry: registry.to_vec(),
            workers: Vec::new(),
            jobs_now: JobTrigger::default(),
        })
    };
    // What the measured commands need done first (untimed), then the commands queued.
    let target = prelude::Target {
        names: &names,
        sink: &sink,
        confirm_timeout: runtime.confirm_timeout,
    };
    prelude::run(
        &channel,
        target,
        registry,
        binding.needs,
        messages,
        setup()?,
    )
    .await?;
    let reply_to = binding.rpc.then_some(sink.as_str());
    let kind = (message_type, reply_to);
    publish_all(
        &channel,
        &names.commands(),
        message_type,
        &bodies,
        kind,
        runtime.confirm_timeout,
    )
    .await?;
    let started = Instant::now();
    let pinflow = Pinflow::start(setup()?);
    let expected = messages.saturating_mul(outputs as u32);
    pinflow.wait_for(&channel, &sink, expected).await?;
    let pinflow_rate = f64::from(messages) / started.elapsed().as_secs_f64();
    pinflow.stop().await?;
    channel
        .queue_delete(sink.as_str().into(), QueueDeleteOptions::default())
        .await?;
    broker::topology::delete(&channel, &names, runtime, &workers).await?;
    let _ = connection.close(200, "done".into()).await;
    pool.close().await;
    let admin = crate::store::connect(&format!("{base}/postgres"), 1).await?;
    sqlx::query(&format!("drop database if exists {tag} with (force)"))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(Report {
        message_type: message_type.to_owned(),
        causes: binding.causes.iter().map(|c| (*c).to_owned()).collect(),
        messages,
        broker_publish_rate,
        broker_pattern_rate,
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
