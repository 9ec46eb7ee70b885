//! `pinflow bench`: the load benchmark. For one command type it measures, in one run
//! on the same broker: (1) the Argon2 ceiling (hashes a second with the configured
//! parameters on all cores), (2) the broker's own ceiling for that type's message
//! pattern as the worker's description gives it (consume one command, publish what it
//! causes with confirms, acknowledge), and (3) pinflow end to end, either with the
//! commands already queued before the workers start (full speed) or published at a
//! set rate while they run, in this process or as `pinflow run` child processes,
//! until everything the commands cause has come out. Each command carries its own
//! trace id, so the latency of each is known: from its publication until the last
//! message it causes arrives. Figures are reported as ratios too, since absolute rates
//! on a shared machine move from run to run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;
use zeroize::Zeroizing;

mod alongside;
mod ceiling;
mod gateway;
mod hashing;
mod prelude;
mod running;
pub mod sweep;

use alongside::Sides;
pub use alongside::{Alongside, AlongsideSetup};
use ceiling::{pattern_ceiling, traced};
use gateway::{Gateway, Output, Phase, Traces};
pub use hashing::HashCeiling;
use prelude::Facts;
use running::{Running, Usage};

use super::Setup;
use crate::broker::{self, Names, publish};
use crate::clock::SystemClock;
use crate::config::{Connections, Rules, Runtime};
use crate::contract::schemas::Schemas;
use crate::manifest::Binding;
use crate::runtime::{JobTrigger, Registration, descriptions};
use crate::seal::{KeyRing, OutboxKey};

/// The phase of the measured commands in their trace ids.
const MEASURED: Phase = 0;

/// The phase of the first step of the measured commands' prelude (the next steps take
/// 2, 3…).
const PRELUDE: Phase = 1;

/// How long without a single new output before the benchmark gives up.
const STALL: Duration = Duration::from_secs(60);

/// End-to-end latency of the measured commands, in milliseconds: from a command's
/// publication until the last message it causes has arrived (for a type that causes
/// nothing, until the transaction that handled it began, from the inbox). Exact
/// order statistics of every sample (no histogram).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Commands measured.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// At full speed every command was queued before the workers started, so its
    /// latency includes the time it waited behind the others.
    pub includes_queueing: bool,
}

impl Latency {
    fn of(mut samples: Vec<Duration>, includes_queueing: bool) -> Latency {
        samples.sort_unstable();
        let rank = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1000.0
        };
        Latency {
            samples: samples.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
            includes_queueing,
        }
    }
}

/// What one measurement found. Every figure is explained in `pinflow bench --help`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command type driven.
    pub message_type: String,
    /// What one command causes, from the worker's description.
    pub causes: Vec<String>,
    /// Commands measured (and commands in the broker's ceiling run).
    pub messages: u32,
    /// `full_speed` (commands queued first, then the workers started) or `rate`.
    pub mode: String,
    /// `--rate`: commands per second asked for.
    pub offered_rate: Option<f64>,
    /// Commands per second actually published in the measured phase.
    pub published_rate: f64,
    /// `pinflow run` processes that ran the workers; 0: in the benchmark's process.
    pub processes: u16,
    /// Broker alone: messages published with confirms per second.
    pub broker_publish_rate: f64,
    /// Broker alone running the pattern: commands per second consumed, their outputs
    /// published with confirms, acknowledged.
    pub broker_pattern_rate: f64,
    /// pinflow: commands fully handled (every output out) per second.
    pub pinflow_rate: f64,
    /// `pinflow_rate / broker_pattern_rate`.
    pub ratio_to_pattern_ceiling: f64,
    /// End-to-end latency.
    pub latency: Latency,
    /// How completion was seen: `outputs` (every message a command causes arrived)
    /// or `inbox` (a type that causes nothing: its inbox row was committed).
    pub completion: String,
    /// Commands that completed.
    pub completed: u32,
    /// Outputs expected: commands × what each causes.
    pub expected_outputs: u64,
    /// Outputs counted, by routing key.
    pub outputs: BTreeMap<String, u64>,
    /// Outputs the description does not list for this type, or of no measured
    /// command, by routing key (0 in a clean run).
    pub unexpected_outputs: BTreeMap<String, u64>,
    /// CPU seconds (user and system) of what ran the workers, during the phase.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per 1,000 commands.
    pub cpu_seconds_per_1000: f64,
    /// Peak resident memory (VmHWM) of one process that ran the workers, KiB.
    pub peak_rss_kib: u64,
    /// The peaks of all those processes added up, KiB.
    pub peak_rss_total_kib: u64,
    /// In process, the CPU and memory are the whole process's, so they include the
    /// benchmark's own publisher and consumers.
    pub usage_includes_bench_client: bool,
    /// The Argon2 ceiling measured in the same run.
    pub argon2: HashCeiling,
    /// `pinflow_rate / argon2.hashes_per_second`: for `pin.request` and `pin.verify`
    /// (one Argon2 computation each) how close pinflow comes to the hashing ceiling.
    pub ratio_to_hash_ceiling: f64,
    /// `argon2.cpu_seconds_per_hash ÷ (cpu_seconds / messages)`: for `pin.request` and
    /// `pin.verify`, the share of the CPU per command that is the hash (1.0: nothing
    /// else costs). CPU time is not lowered by other load as rates are, so on a
    /// shared machine this is the steadier view of the same question.
    pub argon2_cpu_share: f64,
    /// Messages left at the end in a queue of the namespace other than `notify.*`
    /// (work, retry and dead-letter queues, the benchmark's own), by queue; empty in
    /// a clean run.
    pub leftover_messages: BTreeMap<String, u32>,
    /// The namespace (and database name) the run used.
    pub namespace: String,
    /// Whether the namespace's queues and exchanges and the database were removed.
    pub cleaned_up: bool,
    /// Seconds the measured phase took.
    pub elapsed_seconds: f64,
    /// With `--alongside`: the other type's latency alone and during the burst (the
    /// measured phase is then the burst); otherwise `null`.
    pub alongside: Option<Alongside>,
}

/// Several sizes of the same measurement, and how the figures moved.
#[derive(Debug, Clone, Serialize)]
pub struct Runs {
    /// One report per size, in the order asked.
    pub runs: Vec<Report>,
    /// From the first size to the last, when there are several.
    pub scaling: Option<Scaling>,
}

/// How the figures moved from the first size to the last: each is last ÷ first, so
/// 1.0 is no change; a latency or CPU ratio well above 1 (or a rate ratio well below)
/// is a cost that grows with the backlog.
#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    /// The first size.
    pub from_messages: u32,
    /// The last size.
    pub to_messages: u32,
    /// pinflow rate, last ÷ first.
    pub rate: f64,
    /// Ratio to the pattern ceiling, last ÷ first.
    pub ratio_to_pattern_ceiling: f64,
    /// p50 latency, last ÷ first.
    pub p50: f64,
    /// p99 latency, last ÷ first.
    pub p99: f64,
    /// CPU seconds per 1,000 commands, last ÷ first.
    pub cpu_per_1000: f64,
    /// Peak resident memory, last ÷ first.
    pub peak_rss: f64,
}

impl Scaling {
    fn of(first: &Report, last: &Report) -> Scaling {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Scaling {
            from_messages: first.messages,
            to_messages: last.messages,
            rate: div(last.pinflow_rate, first.pinflow_rate),
            ratio_to_pattern_ceiling: div(
                last.ratio_to_pattern_ceiling,
                first.ratio_to_pattern_ceiling,
            ),
            p50: div(last.latency.p50_ms, first.latency.p50_ms),
            p99: div(last.latency.p99_ms, first.latency.p99_ms),
            cpu_per_1000: div(last.cpu_seconds_per_1000, first.cpu_seconds_per_1000),
            peak_rss: div(last.peak_rss_kib as f64, first.peak_rss_kib as f64),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>, label: &str, value: String| {
            writeln!(f, "{label:<36}{value}")
        };
        let causes = if self.causes.is_empty() {
            "nothing (completion: its inbox row)".to_owned()
        } else {
            self.causes.join(", ")
        };
        line(f, "command type:", self.message_type.clone())?;
        line(f, "each causes:", causes)?;
        line(f, "commands:", self.messages.to_string())?;
        let mode = match (self.offered_rate, &self.alongside) {
            (_, Some(_)) => format!(
                "burst: all published at once while the workers ran ({:.0} cmd/s published)",
                self.published_rate
            ),
            (Some(rate), None) => format!(
                "rate: {rate:.0} cmd/s asked, {:.0} cmd/s published",
                self.published_rate
            ),
            (None, None) => "full speed (all queued, then the workers started)".to_owned(),
        };
        line(f, "mode:", mode)?;
        let workers = match self.processes {
            0 => "in the benchmark's process".to_owned(),
            n => format!("{n} `pinflow run` process(es)"),
        };
        line(f, "workers:", workers)?;
        line(
            f,
            "argon2 ceiling:",
            format!(
                "{:.0} hashes/s (before {:.0}, after {:.0}; {:.1} ms CPU each, {:.0}/s on free cores; m={} KiB t={} p={}, {} at a time)",
                self.argon2.hashes_per_second,
                self.argon2.hashes_per_second_before,
                self.argon2.hashes_per_second_after,
                self.argon2.cpu_seconds_per_hash * 1000.0,
                self.argon2.hashes_per_second_free_cores,
                self.argon2.m_cost_kib,
                self.argon2.t_cost,
                self.argon2.p_cost,
                self.argon2.parallel
            ),
        )?;
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
            format!(
                "{:.0} cmd/s ({} of {} complete, {:.1} s)",
                self.pinflow_rate, self.completed, self.messages, self.elapsed_seconds
            ),
        )?;
        line(
            f,
            "ratio to the pattern ceiling:",
            format!("{:.3}", self.ratio_to_pattern_ceiling),
        )?;
        line(
            f,
            "ratio to the argon2 ceiling:",
            format!(
                "{:.3} (argon2's share of the CPU per command: {:.3})",
                self.ratio_to_hash_ceiling, self.argon2_cpu_share
            ),
        )?;
        let queueing = if self.latency.includes_queueing {
            " (includes queueing)"
        } else {
            ""
        };
        line(
            f,
            "latency p50 / p99 / max:",
            format!(
                "{:.1} / {:.1} / {:.1} ms{queueing}",
                self.latency.p50_ms, self.latency.p99_ms, self.latency.max_ms
            ),
        )?;
        if let Some(alongside) = &self.alongside {
            writeln!(f, "{alongside}")?;
        }
        let outputs: Vec<String> = self
            .outputs
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        line(
            f,
            "outputs counted:",
            format!(
                "{} of {} expected ({})",
                self.outputs.values().sum::<u64>(),
                self.expected_outputs,
                outputs.join(", ")
            ),
        )?;
        if !self.unexpected_outputs.is_empty() {
            line(
                f,
                "unexpected outputs:",
                format!("{:?}", self.unexpected_outputs),
            )?;
        }
        let whose = if self.usage_includes_bench_client {
            " (whole process, bench client included)"
        } else {
            ""
        };
        line(
            f,
            "cpu per 1,000 commands:",
            format!(
                "{:.2} s ({:.1} s in all){whose}",
                self.cpu_seconds_per_1000, self.cpu_seconds
            ),
        )?;
        let total = if self.processes > 1 {
            format!(", {} MiB all processes", self.peak_rss_total_kib / 1024)
        } else {
            String::new()
        };
        line(
            f,
            "peak RSS:",
            format!("{} MiB{total}{whose}", self.peak_rss_kib / 1024),
        )?;
        let left = if self.leftover_messages.is_empty() {
            "none".to_owned()
        } else {
            format!("{:?}", self.leftover_messages)
        };
        line(f, "left in non-notify queues:", left)?;
        write!(
            f,
            "{:<36}{}",
            "namespace removed:",
            if self.cleaned_up { "yes" } else { "NO" }
        )
    }
}

impl std::fmt::Display for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, report) in self.runs.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{report}")?;
        }
        if let Some(s) = &self.scaling {
            writeln!(
                f,
                "\nfrom {} to {} commands (last ÷ first; 1.00 = no change):",
                s.from_messages, s.to_messages
            )?;
            writeln!(
                f,
                "  rate {:.2}, ratio to the pattern ceiling {:.2}",
                s.rate, s.ratio_to_pattern_ceiling
            )?;
            writeln!(f, "  latency p50 {:.2}, p99 {:.2}", s.p50, s.p99)?;
            writeln!(
                f,
                "  cpu per 1,000 commands {:.2}, peak RSS {:.2}",
                s.cpu_per_1000, s.peak_rss
            )?;
        }
        Ok(())
    }
}

/// A valid, distinct tax code for each `n` below 672,000: day of birth (women's +40),
/// month letter and a three-digit town number vary.
pub fn tax_code(n: u32) -> String {
    const MONTHS: &[u8] = b"ABCDEHLMPRST";
    let town = n % 1000;
    let day = 1 + (n / 1000) % 56;
    let day = if day > 28 { day - 28 + 40 } else { day };
    let month = char::from(MONTHS[(n / 56_000) as usize % MONTHS.len()]);
    let first15 = format!("BNCLRA80{month}{day:02}Z{town:03}");
    let check = crate::domain::tax_code::check_character(&first15).unwrap_or('X');
    format!("{first15}{check}")
}

/// The most applicants `tax_code` tells apart.
pub const MAX_APPLICANTS: u32 = 672_000;

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

/// Command `n` of a benchmark: the contract's example of the type, with a new id and
/// every `tax_code` in its data replaced by applicant `n`'s.
pub fn command(message_type: &str, n: u32) -> anyhow::Result<Value> {
    let mut event = Schemas::example(message_type)
        .with_context(|| format!("the contract has no example of {message_type}"))?;
    event["id"] = json!(Uuid::new_v4().to_string());
    event["source"] = json!("bench");
    retax(&mut event["data"], &tax_code(n));
    Ok(event)
}

/// A group of commands of one run: command `n` is traced as command `n` of `phase`
/// and is for applicant `first + n`, so groups of different phases can be for
/// applicants of their own.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// The run's trace ids.
    traces: Traces,
    /// The phase of the group's trace ids (a prelude's first step; each further step
    /// takes the next).
    phase: Phase,
    /// The applicant of command 0.
    first: u32,
}

impl Group {
    /// Applicants `0..`, traced as `phase` of `traces`.
    fn new(traces: Traces, phase: Phase) -> Group {
        Group {
            traces,
            phase,
            first: 0,
        }
    }
}

/// Builds the commands of one type for a group of applicants, filling in what the
/// prelude learned for the same group (the initial PIN for `pin.first_access`, the PIN
/// for `pin.verify`, a notification's id for `delivery.receipt`). A secret is written
/// straight into the body, which is wiped when dropped.
struct Commands {
    message_type: String,
    example: Value,
    facts: Arc<Facts>,
    group: Group,
}

/// Stands for the secret in the serialized body until it is spliced in.
const SLOT: &str = "\u{1}bench-secret\u{1}";

impl Commands {
    fn new(message_type: &str, facts: Arc<Facts>, group: Group) -> anyhow::Result<Commands> {
        let example = Schemas::example(message_type)
            .with_context(|| format!("the contract has no example of {message_type}"))?;
        Ok(Commands {
            message_type: message_type.to_owned(),
            example,
            facts,
            group,
        })
    }

    /// Command `n`: its id, its body and its `traceparent`.
    fn build(&self, n: u32) -> anyhow::Result<(String, Zeroizing<Vec<u8>>, String)> {
        let mut event = self.example.clone();
        let id = Uuid::new_v4().to_string();
        event["id"] = json!(id);
        event["source"] = json!("bench");
        let applicant = self.group.first + n;
        retax(&mut event["data"], &tax_code(applicant));
        let i = n as usize;
        let mut secret: Vec<&str> = Vec::new();
        match self.message_type.as_str() {
            "pin.first_access" => {
                let first = self.facts.first_half.get(i).and_then(Option::as_ref);
                let second = self.facts.second_half.get(i).and_then(Option::as_ref);
                let (Some(first), Some(second)) = (first, second) else {
                    anyhow::bail!(
                        "the prelude did not deliver both halves of applicant {applicant}"
                    );
                };
                secret.extend([first.as_str(), second.as_str()]);
                event["data"]["initial_pin"] = json!(SLOT);
            }
            "pin.verify" => {
                let pin = self.facts.pin.get(i).and_then(Option::as_ref);
                let pin =
                    pin.with_context(|| format!("no PIN came back for applicant {applicant}"))?;
                secret.push(pin.as_str());
                event["data"]["pin"] = json!(SLOT);
            }
            "delivery.receipt" => {
                let id = self.facts.notification.get(i).and_then(Option::as_ref);
                let id =
                    id.with_context(|| format!("no notification for applicant {applicant}"))?;
                event["data"]["notification_id"] = json!(id);
            }
            _ => {}
        }
        let text = serde_json::to_string(&event)?;
        let mut body = Zeroizing::new(Vec::with_capacity(text.len() + 32));
        let slot = serde_json::to_string(SLOT)?;
        match text.split_once(&slot) {
            Some((head, tail)) if !secret.is_empty() => {
                anyhow::ensure!(
                    secret
                        .iter()
                        .all(|s| s.bytes().all(|b| b.is_ascii_alphanumeric())),
                    "a secret the prelude received is not plain letters and digits"
                );
                body.extend_from_slice(head.as_bytes());
                body.push(b'"');
                for part in &secret {
                    body.extend_from_slice(part.as_bytes());
                }
                body.push(b'"');
                body.extend_from_slice(tail.as_bytes());
            }
            _ => body.extend_from_slice(text.as_bytes()),
        }
        let traceparent = self.group.traces.traceparent(self.group.phase, n);
        Ok((id, body, traceparent))
    }
}

/// Where commands go and how they are published.
#[derive(Clone)]
struct Outbound {
    /// A channel in confirm mode.
    pub channel: Channel,
    /// The commands exchange.
    pub exchange: String,
    /// The reply queue, for an RPC type.
    pub reply_to: Option<String>,
    /// How long to wait for a confirm.
    pub confirm_timeout: Duration,
}

/// When each command was published, and their numbers by id (when kept).
type Published = (Vec<Instant>, HashMap<String, u32>);

/// Publishes commands `0..n` with confirms (a window of 256 outstanding), at most
/// `rate` a second when given. Returns when each was published, and the ids when
/// `keep_ids` (to find them in the inbox).
async fn publish_commands(
    out: Outbound,
    commands: Arc<Commands>,
    n: u32,
    rate: Option<f64>,
    keep_ids: bool,
) -> anyhow::Result<Published> {
    let window = 256;
    let mut pending = std::collections::VecDeque::new();
    let mut published = Vec::with_capacity(n as usize);
    let mut ids = HashMap::new();
    let start = Instant::now();
    for i in 0..n {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(f64::from(i) / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let (id, body, traceparent) = commands.build(i)?;
        let reply_to = out.reply_to.as_deref();
        let props = traced(&id, &commands.message_type, reply_to, Some(&traceparent));
        published.push(Instant::now());
        let confirm = publish::start(
            &out.channel,
            &out.exchange,
            &commands.message_type,
            &body,
            props,
            true,
        )
        .await?;
        drop(body);
        pending.push_back(confirm);
        if keep_ids {
            ids.insert(id, i);
        }
        if pending.len() >= window
            && let Some(confirm) = pending.pop_front()
        {
            check(publish::confirmed(confirm, out.confirm_timeout).await?)?;
        }
    }
    for confirm in pending {
        check(publish::confirmed(confirm, out.confirm_timeout).await?)?;
    }
    Ok((published, ids))
}

/// From `started` until the last of `published`.
fn sent_for(started: Instant, published: &[Instant]) -> Duration {
    published.last().map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    })
}

fn check(confirmed: publish::Confirmed) -> anyhow::Result<()> {
    match confirmed {
        publish::Confirmed::Routed => Ok(()),
        publish::Confirmed::Returned(_) => anyhow::bail!("a command was not routed"),
    }
}

/// Counts what arrives for one phase and when each command was complete.
struct Tracker {
    phase: Phase,
    per_command: u32,
    causes: Vec<String>,
    remaining: Vec<u32>,
    done_at: Vec<Option<Instant>>,
    completed: u32,
    outputs: BTreeMap<String, u64>,
    unexpected: BTreeMap<String, u64>,
    last_progress: Instant,
}

impl Tracker {
    fn new(phase: Phase, binding: &Binding, n: u32) -> Tracker {
        let per_command = binding.causes.len() as u32;
        Tracker {
            phase,
            per_command,
            causes: binding.causes.iter().map(|c| (*c).to_owned()).collect(),
            remaining: vec![per_command; n as usize],
            done_at: vec![None; n as usize],
            completed: 0,
            outputs: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            last_progress: Instant::now(),
        }
    }

    fn n(&self) -> u32 {
        self.remaining.len() as u32
    }

    fn add(&mut self, output: &Output) {
        self.last_progress = Instant::now();
        let index = match output.trace {
            Some((phase, index))
                if phase == self.phase && (index as usize) < self.remaining.len() =>
            {
                index as usize
            }
            _ => {
                *self
                    .unexpected
                    .entry(format!("{} (no command of this phase)", output.kind))
                    .or_default() += 1;
                return;
            }
        };
        if !self.causes.contains(&output.kind) || self.remaining[index] == 0 {
            *self.unexpected.entry(output.kind.clone()).or_default() += 1;
            return;
        }
        *self.outputs.entry(output.kind.clone()).or_default() += 1;
        self.remaining[index] -= 1;
        if self.remaining[index] == 0 {
            self.done_at[index] = Some(output.at);
            self.completed += 1;
        }
    }

    fn finished(&self) -> bool {
        self.completed == self.n()
    }

    /// When the last command was complete.
    fn last_done(&self) -> Option<Instant> {
        self.done_at.iter().flatten().max().copied()
    }

    /// Each complete command's latency: from its publication (`published`, by
    /// command) until it was complete; only the commands published by `until`, when
    /// given.
    fn latencies(&self, published: &[Instant], until: Option<Instant>) -> Vec<Duration> {
        self.done_at
            .iter()
            .zip(published)
            .filter(|(_, sent)| until.is_none_or(|until| **sent <= until))
            .filter_map(|(done, sent)| done.map(|d| d.saturating_duration_since(*sent)))
            .collect()
    }

    fn summary(&self) -> String {
        format!(
            "{} of {} commands complete; outputs {:?}; unexpected {:?}",
            self.completed,
            self.n(),
            self.outputs,
            self.unexpected
        )
    }
}

/// For a type that causes nothing: its commands are complete when their inbox rows
/// are committed.
struct Inbox<'a> {
    pool: &'a PgPool,
    message_type: &'a str,
}

impl Inbox<'_> {
    async fn count(&self) -> anyhow::Result<u32> {
        let n: i64 = sqlx::query_scalar("select count(*) from inbox where message_type = $1")
            .bind(self.message_type)
            .fetch_one(self.pool)
            .await?;
        Ok(n as u32)
    }

    /// Each inbox row's time (its transaction's start) as an `Instant`.
    async fn times(&self, ids: &HashMap<String, u32>, tracker: &mut Tracker) -> anyhow::Result<()> {
        let (origin, wall) = (Instant::now(), chrono::Utc::now());
        let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as("select message_id, processed_at from inbox where message_type = $1")
                .bind(self.message_type)
                .fetch_all(self.pool)
                .await?;
        for (id, at) in rows {
            let Some(&i) = ids.get(&id) else { continue };
            let ago = (wall - at).to_std().unwrap_or_default();
            tracker.done_at[i as usize] = Some(origin.checked_sub(ago).unwrap_or(origin));
        }
        tracker.completed = tracker.done_at.iter().flatten().count() as u32;
        Ok(())
    }
}

/// Waits until every command of the tracker's phase is complete, taking in what the
/// gateway receives (and handing what the prelude asked for to `facts`). Fails when
/// pinflow stops or nothing arrives for `STALL`.
async fn wait(
    outputs: &mut mpsc::UnboundedReceiver<Output>,
    tracker: &mut Tracker,
    running: &mut Running,
    facts: Option<&mut Facts>,
    inbox: Option<&Inbox<'_>>,
) -> anyhow::Result<()> {
    wait_all(outputs, &mut [tracker], 1, running, facts, inbox).await
}

/// Waits until every command of the first `needed` trackers is complete, handing each
/// output to the tracker of its phase (one of no tracker's phase to the first, which
/// counts it as unexpected). `inbox` completes the trackers of a type that causes
/// nothing. Fails when pinflow stops or nothing arrives for `STALL`.
async fn wait_all(
    outputs: &mut mpsc::UnboundedReceiver<Output>,
    trackers: &mut [&mut Tracker],
    needed: usize,
    running: &mut Running,
    mut facts: Option<&mut Facts>,
    inbox: Option<&Inbox<'_>>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        if trackers.iter().take(needed).all(|t| t.finished()) {
            return Ok(());
        }
        tokio::select! {
            output = outputs.recv() => {
                let mut output = output.context("the gateway stopped")?;
                let phase = output.trace.map(|(phase, _)| phase);
                let k = trackers.iter().position(|t| Some(t.phase) == phase).unwrap_or(0);
                trackers[k].add(&output);
                if let (Some(facts), Some(learned), Some((_, i))) =
                    (facts.as_deref_mut(), output.learned.take(), output.trace)
                {
                    facts.absorb(i, learned);
                }
            }
            _ = tick.tick() => {
                running.ensure_running()?;
                if let Some(inbox) = inbox {
                    for tracker in trackers.iter_mut().filter(|t| t.per_command == 0) {
                        let n = inbox.count().await?;
                        if n > tracker.completed {
                            tracker.completed = n.min(tracker.n());
                            tracker.last_progress = Instant::now();
                        }
                    }
                }
                let progress = trackers.iter().map(|t| t.last_progress).max();
                anyhow::ensure!(
                    progress.is_some_and(|p| p.elapsed() < STALL),
                    "nothing arrived for {STALL:?}: {}",
                    trackers.iter().map(|t| t.summary()).collect::<Vec<_>>().join("; ")
                );
            }
        }
    }
}

/// What `run` needs besides the connections.
#[derive(Clone, Copy)]
pub struct BenchSetup<'a> {
    /// Runtime settings for the workers.
    pub runtime: &'a Runtime,
    /// Business rules (Argon2 cost).
    pub rules: &'a Rules,
    /// Every registered worker.
    pub registry: &'a [Registration],
    /// The command type to drive.
    pub message_type: &'a str,
    /// Commands to measure.
    pub messages: u32,
    /// Publish this many commands a second while pinflow runs, instead of queueing
    /// them all before it starts.
    pub rate: Option<f64>,
    /// Run the workers as this many `pinflow run` processes of the current
    /// executable; 0: in this process.
    pub processes: u16,
    /// Measure how the latency of another command type moves while the commands to
    /// measure are handled as one burst (see `alongside`).
    pub alongside: Option<AlongsideSetup<'a>>,
}

fn binding_of(registry: &[Registration], message_type: &str) -> anyhow::Result<Binding> {
    registry
        .iter()
        .find_map(|r| r.description.binding(message_type).copied())
        .with_context(|| format!("no registered worker takes {message_type}"))
}

/// The binding of a command type (an event is refused: drive the command that causes
/// it).
fn command_binding(registry: &[Registration], message_type: &str) -> anyhow::Result<Binding> {
    let binding = binding_of(registry, message_type)?;
    anyhow::ensure!(
        binding.source == crate::manifest::Source::Commands,
        "{message_type} is an event; drive the command that causes it"
    );
    Ok(binding)
}

/// The work queue of the worker that takes `message_type`.
fn work_queue_of(registry: &[Registration], names: &Names, message_type: &str) -> Option<String> {
    registry
        .iter()
        .find(|r| r.description.accepts(message_type))
        .map(|r| names.work_queue(r.description.name))
}

/// The one place a benchmark makes a `Setup`: every worker (or `workers`), on the
/// benchmark's own namespace and database.
fn setup_for(
    connections: &Connections,
    runtime: &Runtime,
    rules: &Rules,
    key: &str,
    registry: &[Registration],
    workers: Vec<String>,
) -> anyhow::Result<Setup> {
    Ok(Setup {
        connections: connections.clone(),
        runtime: runtime.clone(),
        rules: rules.clone(),
        keys: KeyRing::single(OutboxKey::from_base64(key)?),
        clock: Arc::new(SystemClock),
        registry: registry.to_vec(),
        workers,
        jobs_now: JobTrigger::default(),
    })
}

/// The same measurement for each size, and how the figures moved between the first
/// and the last.
pub async fn run_sizes(
    connections: &Connections,
    bench: BenchSetup<'_>,
    sizes: &[u32],
) -> anyhow::Result<Runs> {
    let mut runs = Vec::with_capacity(sizes.len());
    for &messages in sizes {
        let setup = BenchSetup { messages, ..bench };
        runs.push(run(connections, setup).await?);
    }
    let scaling = match (runs.first(), runs.last()) {
        (Some(first), Some(last)) if runs.len() > 1 => Some(Scaling::of(first, last)),
        _ => None,
    };
    Ok(Runs { runs, scaling })
}

/// Runs every phase and cleans up after itself (namespace and database), also when a
/// phase fails.
pub async fn run(connections: &Connections, bench: BenchSetup<'_>) -> anyhow::Result<Report> {
    anyhow::ensure!(bench.messages > 0, "--messages must be at least 1");
    anyhow::ensure!(
        bench.messages <= MAX_APPLICANTS,
        "at most {MAX_APPLICANTS} commands (distinct applicants)"
    );
    if let Some(rate) = bench.rate {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be above 0");
    }
    let binding = command_binding(bench.registry, bench.message_type)?;
    if let Some(alongside) = &bench.alongside {
        alongside.check(&bench, &binding)?;
    }
    let tag = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let base = connections
        .database_url
        .rsplit_once('/')
        .map_or(&*connections.database_url, |(h, _)| h)
        .to_owned();
    let ours = Connections {
        amqp_url: connections.amqp_url.clone(),
        database_url: format!("{base}/{tag}"),
        namespace: tag.clone(),
    };
    let connection = broker::connect(&connections.amqp_url).await?;
    let outcome = measure(&connection, &ours, &binding, bench).await;
    let workers = descriptions(bench.registry);
    let cleaned = teardown(&connection, &ours, bench.runtime, &workers, &base).await;
    let _ = connection.close(200, "done".into()).await;
    let mut report = outcome?;
    report.cleaned_up = cleaned.is_ok();
    cleaned?;
    Ok(report)
}

/// Removes the benchmark's queues, exchanges and database.
async fn teardown(
    connection: &Connection,
    ours: &Connections,
    runtime: &Runtime,
    workers: &[crate::manifest::Description],
    base: &str,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    let names = Names::new(&ours.namespace);
    for queue in bench_queues(&ours.namespace) {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    broker::topology::delete(&channel, &names, runtime, workers).await?;
    let admin = crate::store::connect(&format!("{base}/postgres"), 1).await?;
    sqlx::query(&format!(
        "drop database if exists {} with (force)",
        ours.namespace
    ))
    .execute(&admin)
    .await?;
    admin.close().await;
    Ok(())
}

/// The benchmark's own queues in a namespace (the gateway's, the ceiling's).
fn bench_queues(tag: &str) -> Vec<String> {
    ["bench.events", "bench.replies", "ceiling", "ceiling.sink"]
        .iter()
        .map(|q| format!("{tag}.{q}"))
        .collect()
}

/// Every queue of the namespace that is not a `notify.*` delivery queue: what must
/// hold no secret (and, at the end of a clean run, nothing at all).
pub fn non_notify_queues(
    namespace: &str,
    runtime: &Runtime,
    workers: &[crate::manifest::Description],
) -> Vec<String> {
    let names = Names::new(namespace);
    let mut queues = vec![names.unrouted_dlq(), names.intake()];
    for worker in workers.iter().filter(|w| w.has_queue()) {
        let work = names.work_queue(worker.name);
        queues.push(Names::dlq(&work));
        queues.extend(
            broker::topology::retry_ttls(runtime)
                .into_iter()
                .map(|t| Names::retry_queue(&work, t)),
        );
        queues.push(work);
    }
    queues.extend(bench_queues(namespace).into_iter().take(2));
    queues
}

/// How many messages each queue holds (a queue that does not exist is skipped).
async fn leftovers(
    connection: &Connection,
    queues: &[String],
) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut left = BTreeMap::new();
    let mut channel = connection.create_channel().await?;
    for queue in queues {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(q) if q.message_count() > 0 => {
                left.insert(queue.clone(), q.message_count());
            }
            Ok(_) => {}
            // A failed passive declare closes the channel.
            Err(_) => channel = connection.create_channel().await?,
        }
    }
    Ok(left)
}

/// Every phase, on the benchmark's namespace and database.
async fn measure(
    connection: &Connection,
    ours: &Connections,
    binding: &Binding,
    bench: BenchSetup<'_>,
) -> anyhow::Result<Report> {
    let BenchSetup {
        runtime,
        rules,
        registry,
        message_type,
        messages,
        rate,
        processes,
        alongside: _,
    } = bench;
    let tag = &ours.namespace;
    let names = Names::new(tag);
    let traces = Traces::new();

    // Phase 1: the Argon2 ceiling, with nothing else running.
    let argon2 = hashing::ceiling(rules, Duration::from_secs(3)).await?;

    // Phase 2: the broker alone running the pattern.
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let (broker_publish_rate, broker_pattern_rate) = {
        let mut bodies = Vec::with_capacity(messages as usize);
        for n in 0..messages {
            let event = command(message_type, n)?;
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            bodies.push((id, serde_json::to_vec(&event)?));
        }
        pattern_ceiling(
            connection,
            &channel,
            tag,
            &bodies,
            binding.causes.len(),
            runtime,
        )
        .await?
    };

    // Phase 3: pinflow. The gateway takes everything pinflow publishes.
    let workers = descriptions(registry);
    super::declare_topology(ours, runtime, &workers).await?;
    let pool = super::prepare_database(&ours.database_url, 2, &Default::default()).await?;
    let mut gateway = Gateway::start(connection, &channel, tag, &names, traces).await?;
    let key = OutboxKey::generate().to_base64();
    let outbound = Outbound {
        channel: channel.clone(),
        exchange: names.commands(),
        reply_to: binding.rpc.then(|| gateway.replies.clone()),
        confirm_timeout: runtime.confirm_timeout,
    };

    // What the measured commands need done first, untimed.
    let setup = || setup_for(ours, runtime, rules, &key, registry, Vec::new());
    let facts = prelude::run(
        &mut gateway,
        &outbound,
        registry,
        binding.needs,
        messages,
        Group::new(traces, PRELUDE),
        setup()?,
    )
    .await?;
    // With --alongside, the other type's commands, and what they need first.
    let sides = Sides::prepare(&bench, connection, &mut gateway, &outbound, traces, &setup).await?;
    let group = Group::new(traces, MEASURED);
    let commands = Arc::new(Commands::new(message_type, Arc::new(facts), group)?);
    let mut tracker = Tracker::new(MEASURED, binding, messages);
    let inbox = Inbox {
        pool: &pool,
        message_type,
    };
    let no_outputs = binding.causes.is_empty();
    let start_workers = || -> anyhow::Result<Running> {
        if processes == 0 {
            Ok(Running::in_process(setup()?))
        } else {
            Running::children(processes, ours, &key, runtime, rules)
        }
    };
    let mut burst = None;
    let (started, mut running, published, ids) = match (rate, &sides) {
        (_, Some(sides)) => {
            let types = [message_type, sides.message_type()];
            let mut running = consuming(connection, &bench, &names, &types, start_workers).await?;
            let (outputs, out) = (&mut gateway.outputs, outbound.clone());
            let run = sides.run(outputs, &mut running, out, commands.clone(), &mut tracker);
            let mut run = run.await?;
            let started = run.started;
            let published = (std::mem::take(&mut run.published), run.published_for);
            burst = Some(run);
            (started, running, published, HashMap::new())
        }
        (None, None) => {
            let publishing = Instant::now();
            let (published, ids) = publish_commands(
                outbound.clone(),
                commands.clone(),
                messages,
                None,
                no_outputs,
            )
            .await?;
            let published_for = publishing.elapsed();
            let started = Instant::now();
            let running = start_workers()?;
            (started, running, (published, published_for), ids)
        }
        (Some(rate), None) => {
            let mut running =
                consuming(connection, &bench, &names, &[message_type], start_workers).await?;
            let publisher = tokio::spawn(publish_commands(
                outbound.clone(),
                commands.clone(),
                messages,
                Some(rate),
                no_outputs,
            ));
            let started = Instant::now();
            tracker.last_progress = started;
            let waited = wait(
                &mut gateway.outputs,
                &mut tracker,
                &mut running,
                None,
                Some(&inbox).filter(|_| no_outputs),
            )
            .await;
            let (published, ids) = publisher.await??;
            waited?;
            let published_for = sent_for(started, &published);
            (started, running, (published, published_for), ids)
        }
    };
    let full_speed = rate.is_none() && sides.is_none();
    if full_speed {
        tracker.last_progress = Instant::now();
        wait(
            &mut gateway.outputs,
            &mut tracker,
            &mut running,
            None,
            Some(&inbox).filter(|_| no_outputs),
        )
        .await?;
    }
    if no_outputs {
        inbox.times(&ids, &mut tracker).await?;
    }
    let finished = tracker.last_done().unwrap_or(started);
    let usage: Usage = match &burst {
        Some(burst) => Usage {
            cpu_seconds: burst.cpu_seconds,
            ..running.usage()
        },
        None => running.usage(),
    };
    running
        .stop(runtime.shutdown_timeout * 2 + Duration::from_secs(5))
        .await?;
    let (published, published_for) = published;
    let elapsed = finished
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(1e-9);
    let latency = Latency::of(tracker.latencies(&published, None), rate.is_none());
    // Whatever still arrives (nothing, in a clean run) is counted as unexpected.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(output) = gateway.outputs.try_recv() {
        tracker.add(&output);
    }
    let left = leftovers(connection, &non_notify_queues(tag, runtime, &workers)).await?;
    gateway.stop().await;
    pool.close().await;
    let argon2 = argon2.and_after(hashing::ceiling(rules, Duration::from_secs(3)).await?);
    let pinflow_rate = f64::from(tracker.completed) / elapsed;
    let per_1000 = usage.cpu_seconds * 1000.0 / f64::from(messages);
    let alongside = burst.map(|b| b.figures(pinflow_rate, elapsed, argon2.hashes_per_second));
    Ok(Report {
        message_type: message_type.to_owned(),
        causes: tracker.causes.clone(),
        messages,
        mode: match (rate, &sides) {
            (_, Some(_)) => "alongside",
            (Some(_), None) => "rate",
            (None, None) => "full_speed",
        }
        .to_owned(),
        offered_rate: rate,
        published_rate: f64::from(messages) / published_for.as_secs_f64().max(1e-9),
        processes,
        broker_publish_rate,
        broker_pattern_rate,
        pinflow_rate,
        ratio_to_pattern_ceiling: pinflow_rate / broker_pattern_rate,
        latency,
        completion: if no_outputs { "inbox" } else { "outputs" }.to_owned(),
        completed: tracker.completed,
        expected_outputs: u64::from(messages) * binding.causes.len() as u64,
        outputs: tracker.outputs.clone(),
        unexpected_outputs: tracker.unexpected.clone(),
        cpu_seconds: usage.cpu_seconds,
        cpu_seconds_per_1000: per_1000,
        peak_rss_kib: usage.peak_rss_kib,
        peak_rss_total_kib: usage.peak_rss_total_kib,
        usage_includes_bench_client: processes == 0,
        ratio_to_hash_ceiling: pinflow_rate / argon2.hashes_per_second,
        argon2_cpu_share: argon2.cpu_seconds_per_hash * f64::from(messages)
            / usage.cpu_seconds.max(1e-9),
        argon2,
        leftover_messages: left,
        namespace: tag.clone(),
        cleaned_up: false,
        elapsed_seconds: elapsed,
        alongside,
    })
}

/// Starts the workers and waits until the work queue of each of `types` has every
/// consumer they start.
async fn consuming(
    connection: &Connection,
    bench: &BenchSetup<'_>,
    names: &Names,
    types: &[&str],
    start: impl FnOnce() -> anyhow::Result<Running>,
) -> anyhow::Result<Running> {
    let mut running = start()?;
    let consumers = u32::from(bench.runtime.consumers) * u32::from(bench.processes.max(1));
    for message_type in types {
        let queue = work_queue_of(bench.registry, names, message_type)
            .with_context(|| format!("no work queue takes {message_type}"))?;
        wait_for_consumers(connection, &queue, consumers, &mut running).await?;
    }
    Ok(running)
}

/// Waits until `queue` has `consumers` consumers (every worker process is up).
async fn wait_for_consumers(
    connection: &Connection,
    queue: &str,
    consumers: u32,
    running: &mut Running,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    let started = Instant::now();
    loop {
        let declared = ceiling::look(&channel, queue).await?;
        if declared.consumer_count() >= consumers {
            return Ok(());
        }
        running.ensure_running()?;
        anyhow::ensure!(
            started.elapsed() < STALL,
            "the workers did not start consuming {queue} within {STALL:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_tax_codes_are_valid_and_distinct() {
        let codes: std::collections::HashSet<String> =
            (0..MAX_APPLICANTS).step_by(997).map(tax_code).collect();
        assert_eq!(codes.len(), (0..MAX_APPLICANTS).step_by(997).count());
        let all: std::collections::HashSet<String> = (0..120_000).map(tax_code).collect();
        assert_eq!(all.len(), 120_000);
        for n in [
            0,
            27_999,
            28_000,
            55_999,
            56_000,
            99_999,
            MAX_APPLICANTS - 1,
        ] {
            let code = tax_code(n);
            assert!(crate::domain::TaxCode::parse(&code).is_ok(), "{n}: {code}");
        }
    }

    #[test]
    fn percentiles_are_exact_order_statistics() {
        let samples = (1..=200).map(Duration::from_millis).collect();
        let latency = Latency::of(samples, false);
        assert_eq!(latency.samples, 200);
        assert_eq!(latency.p50_ms, 100.0);
        assert_eq!(latency.p99_ms, 198.0);
        assert_eq!(latency.max_ms, 200.0);
        assert_eq!(Latency::of(Vec::new(), false).max_ms, 0.0);
    }

    #[test]
    fn a_group_is_for_applicants_of_its_own_and_numbers_its_commands_from_0() {
        let traces = Traces::new();
        let group = Group {
            traces,
            phase: 0x21,
            first: 40,
        };
        let commands = Commands::new("application.submit", Arc::new(Facts::new(0)), group);
        let (_, body, traceparent) = commands.unwrap().build(2).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["data"]["tax_code"], tax_code(42));
        assert_eq!(traces.parse(&traceparent), Some((0x21, 2)));
    }

    #[test]
    fn latencies_can_be_limited_to_the_commands_published_by_a_moment() {
        let binding =
            crate::manifest::Binding::command("application.submit", &["application.held"]);
        let mut tracker = Tracker::new(MEASURED, &binding, 3);
        let t0 = Instant::now();
        let sent: Vec<Instant> = (0..3).map(|i| t0 + Duration::from_millis(i * 10)).collect();
        for (i, done) in tracker.done_at.iter_mut().enumerate() {
            *done = Some(sent[i] + Duration::from_millis(5));
        }
        assert_eq!(tracker.latencies(&sent, None).len(), 3);
        let early = tracker.latencies(&sent, Some(sent[1]));
        assert_eq!(early, vec![Duration::from_millis(5); 2]);
        assert_eq!(
            tracker.last_done(),
            Some(sent[2] + Duration::from_millis(5))
        );
    }

    #[test]
    fn a_secret_is_spliced_into_the_body_and_nowhere_else() {
        let mut facts = Facts::new(2);
        facts.pin[1] = Some(Zeroizing::new("ABCD2345".to_owned()));
        let group = Group::new(Traces::new(), 0);
        let commands = Commands::new("pin.verify", Arc::new(facts), group).unwrap();
        let (_, body, _) = commands.build(1).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["data"]["pin"], "ABCD2345");
        assert_eq!(value["data"]["tax_code"], tax_code(1));
        assert!(commands.build(0).is_err(), "no PIN, no command");
    }
}
