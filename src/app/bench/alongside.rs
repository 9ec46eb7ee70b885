//! `pinflow bench --alongside TYPE`: whether commands of another type keep flowing
//! while a burst of the measured type (`pin.request` or `pin.verify`: Argon2) is
//! handled. With the workers running, commands of the other type are published at a
//! set rate, on a connection of their own, first alone, then again while every
//! command of the burst is published at once; each time their latency is measured as
//! the `--rate` mode measures it: from a command's publication until the last message
//! it causes arrived, matched by its trace id. They are for applicants of their own
//! (after the burst's, others in each sub-phase) and their trace ids carry phases of
//! their own, so the gateway tells them and the burst apart. The burst is the run's
//! measured phase.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lapin::Connection;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ceiling::{Bodies, pattern_latency};
use super::commands::{Commands, Group, MAX_APPLICANTS};
use super::gateway::{Gateway, Output, Phase, Traces};
use super::hashing::Load;
use super::report::{Latency, ratio};
use super::running::Running;
use super::tracking::{Outbound, Published, Tracker, publish_commands, sent_for, wait, wait_all};
use super::{BenchSetup, ceiling_bodies, command_binding, prelude};
use crate::app::Setup;
use crate::config::{Rules, Runtime};
use crate::manifest::Binding;

/// The trace phase of the other type's commands published alone.
const ALONE: Phase = 0x20;

/// The trace phase of the other type's commands published during the burst.
const DURING: Phase = 0x21;

/// The first trace phase of the prelude of the other type's commands of each
/// sub-phase (alone, during); the prelude's next steps take the phases after it.
const PRELUDES: [Phase; 2] = [0x10, 0x18];

/// The project's goal: while a burst is hashing, the other types' p99 latency at most
/// doubles.
pub const P99_RATIO_GOAL: f64 = 2.0;

/// What `--alongside` asks for.
#[derive(Debug, Clone, Copy)]
pub struct AlongsideSetup<'a> {
    /// The other command type (its example in `schemas/examples/` is the body).
    pub message_type: &'a str,
    /// Its commands a second, in both sub-phases.
    pub rate: f64,
    /// Its commands in each sub-phase; `None`: 5 s worth, and at least 200.
    pub messages: Option<u32>,
}

impl AlongsideSetup<'_> {
    /// The other type's commands in each sub-phase.
    pub fn messages(&self) -> u32 {
        self.messages
            .unwrap_or_else(|| ((self.rate * 5.0).ceil() as u32).max(200))
    }

    /// Refuses what this mode cannot measure: a set rate for the burst (it is
    /// published at once), more applicants than there are tax codes, and a type that
    /// causes nothing (both are timed by what they cause).
    pub(super) fn check(&self, bench: &BenchSetup<'_>, burst: &Binding) -> anyhow::Result<()> {
        anyhow::ensure!(
            bench.rate.is_none(),
            "--alongside publishes the burst at once; it takes no --rate"
        );
        anyhow::ensure!(
            self.rate > 0.0 && self.rate.is_finite(),
            "--alongside-rate must be above 0"
        );
        let messages = self.messages();
        anyhow::ensure!(messages > 0, "--alongside-messages must be at least 1");
        anyhow::ensure!(
            u64::from(bench.messages) + 2 * u64::from(messages) <= u64::from(MAX_APPLICANTS),
            "at most {MAX_APPLICANTS} applicants: the burst's and twice --alongside-messages"
        );
        let other = command_binding(bench.registry, self.message_type)?;
        for (message_type, binding) in [(bench.message_type, burst), (self.message_type, &other)] {
            anyhow::ensure!(
                !binding.causes.is_empty(),
                "{message_type} causes no message, and --alongside times a command by what \
                 it causes"
            );
        }
        Ok(())
    }
}

/// What `--alongside` found. Every figure is explained in `pinflow bench --help`.
#[derive(Debug, Clone, Serialize)]
pub struct Alongside {
    /// The other command type.
    pub message_type: String,
    /// What one of its commands causes, from the worker's description.
    pub causes: Vec<String>,
    /// `--alongside-rate`: its commands a second asked for.
    pub offered_rate: f64,
    /// Its commands published in each sub-phase.
    pub messages: u32,
    /// Its commands a second actually published, alone.
    pub published_rate_alone: f64,
    /// Its commands a second actually published, during the burst.
    pub published_rate_during: f64,
    /// Its commands that completed, alone.
    pub completed_alone: u32,
    /// Its commands that completed, in the sub-phase of the burst (those published
    /// after the burst's end included).
    pub completed_during: u32,
    /// Its latency alone: nothing else was published.
    pub alone: Latency,
    /// Its latency during the burst: of its commands published before the burst's
    /// last output (`samples` says how many).
    pub during: Latency,
    /// `during.p99_ms / alone.p99_ms`.
    pub p99_ratio: f64,
    /// Seconds from the burst's start until the broker had confirmed every burst
    /// command: how long it took the burst in.
    pub burst_taken_in_seconds: f64,
    /// Its latency while the burst hashed: of its commands published after the broker
    /// had confirmed the whole burst and before the burst's last output (a part of
    /// `during`).
    pub during_hashing: Latency,
    /// `during_hashing.p99_ms / alone.p99_ms`.
    pub p99_ratio_hashing: f64,
    /// The goal for `p99_ratio`: at most this.
    pub p99_ratio_goal: f64,
    /// `p99_ratio <= p99_ratio_goal`.
    pub meets_p99_goal: bool,
    /// Burst commands fully handled a second, from the burst's start until its last
    /// output (the report's `pinflow_rate`).
    pub burst_rate: f64,
    /// Seconds from the burst's start until its last output.
    pub burst_seconds: f64,
    /// `burst_rate / argon2.hashes_per_second` (the report's `ratio_to_hash_ceiling`).
    pub burst_ratio_to_hash_ceiling: f64,
    /// The broker alone running the other type's pattern at the same rate, timed as
    /// `--rate` times it (no database, no pinflow), with nothing else published.
    pub broker_alone: Latency,
    /// The same while as many commands of the burst's type are published at once into
    /// a quorum queue that nothing consumes, and the benchmark hashes beside it on as
    /// many threads as the burst would: what taking the burst in and hashing it cost
    /// the other type with no pinflow.
    pub broker_during: Latency,
    /// `broker_during.p99_ms / broker_alone.p99_ms`: how far the broker and the hashing
    /// by themselves move the goal's figure on this machine.
    pub broker_p99_ratio: f64,
    /// Outputs of the other type's commands counted, both sub-phases, by routing key.
    pub outputs: BTreeMap<String, u64>,
    /// Outputs of its phases that its description does not list, by routing key (0 in
    /// a clean run).
    pub unexpected_outputs: BTreeMap<String, u64>,
}

impl std::fmt::Display for Alongside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |l: &Latency| format!("{:.1} / {:.1} / {:.1} ms", l.p50_ms, l.p99_ms, l.max_ms);
        let lines = [
            (
                "alongside:",
                format!(
                    "{} at {:.0} cmd/s asked, {} commands alone and again during the burst",
                    self.message_type, self.offered_rate, self.messages
                ),
            ),
            (
                "  alone p50 / p99 / max:",
                format!(
                    "{} ({} of {} complete, {:.0} cmd/s published)",
                    ms(&self.alone),
                    self.completed_alone,
                    self.messages,
                    self.published_rate_alone
                ),
            ),
            (
                "  during the burst p50 / p99 / max:",
                format!(
                    "{} ({} published during it; {} of {} complete, {:.0} cmd/s published)",
                    ms(&self.during),
                    self.during.samples,
                    self.completed_during,
                    self.messages,
                    self.published_rate_during
                ),
            ),
            (
                "  p99 during ÷ alone:",
                format!(
                    "{:.2} (goal: at most {:.2}: {})",
                    self.p99_ratio,
                    self.p99_ratio_goal,
                    if self.meets_p99_goal {
                        "met"
                    } else {
                        "NOT met"
                    }
                ),
            ),
            (
                "  once the burst was taken in:",
                format!(
                    "{} ({} published then; the broker confirmed the burst {:.1} s after its start)",
                    ms(&self.during_hashing),
                    self.during_hashing.samples,
                    self.burst_taken_in_seconds
                ),
            ),
            (
                "  p99 then ÷ alone:",
                format!("{:.2}", self.p99_ratio_hashing),
            ),
            (
                "  burst:",
                format!(
                    "{:.0} cmd/s in {:.1} s; {:.3} of the argon2 ceiling",
                    self.burst_rate, self.burst_seconds, self.burst_ratio_to_hash_ceiling
                ),
            ),
            (
                "  broker alone, alone / beside:",
                format!(
                    "p99 {:.1} / {:.1} ms, × {:.2}: the ratio without pinflow",
                    self.broker_alone.p99_ms, self.broker_during.p99_ms, self.broker_p99_ratio
                ),
            ),
        ];
        for (i, (label, value)) in lines.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{label:<36}{value}")?;
        }
        if !self.unexpected_outputs.is_empty() {
            write!(
                f,
                "\n{:<36}{:?}",
                "  unexpected outputs:", self.unexpected_outputs
            )?;
        }
        Ok(())
    }
}

/// The other type's commands of both sub-phases, ready to publish.
pub(super) struct Sides {
    /// The other command type.
    message_type: String,
    /// Its binding: what one command causes, whether it is answered.
    binding: Binding,
    /// Its commands a second.
    rate: f64,
    /// Its commands in each sub-phase.
    messages: u32,
    /// On a connection of its own, as another upstream system's would be: on the
    /// burst's, they would wait behind its publications in the benchmark's own socket
    /// and in the broker's reader of that connection before pinflow could see them.
    outbound: Outbound,
    /// That connection, closed once both sub-phases are done.
    connection: Connection,
    /// The commands published alone.
    alone: Arc<Commands>,
    /// The commands published during the burst.
    during: Arc<Commands>,
}

/// The broker alone running the other type's pattern at its rate, alone and beside a
/// burst it takes in (see `Sides::broker_floor`).
pub(super) struct Floor {
    alone: Latency,
    during: Latency,
}

/// The burst, as the run's measured phase sees it, and the other type's figures.
pub(super) struct Burst {
    /// When the burst's publication began.
    pub started: Instant,
    /// When each burst command was published.
    pub published: Vec<Instant>,
    /// From the start until the last burst command was published.
    pub published_for: Duration,
    /// CPU seconds the workers used from the burst's start until its last output.
    pub cpu_seconds: f64,
    side: Alongside,
}

impl Burst {
    /// The other type's figures, with the burst's rate, its length and the Argon2
    /// ceiling measured in the same run, and the broker alone's.
    pub(super) fn figures(
        self,
        rate: f64,
        seconds: f64,
        hashes_per_second: f64,
        floor: Floor,
    ) -> Alongside {
        Alongside {
            burst_rate: rate,
            burst_seconds: seconds,
            burst_ratio_to_hash_ceiling: rate / hashes_per_second,
            broker_p99_ratio: ratio(floor.during.p99_ms, floor.alone.p99_ms),
            broker_alone: floor.alone,
            broker_during: floor.during,
            ..self.side
        }
    }
}

impl Sides {
    /// With `--alongside`: runs, untimed, what the other type's commands of each
    /// sub-phase need first and builds them, for applicants after the burst's, others
    /// in each sub-phase. `None` without it.
    pub(super) async fn prepare(
        bench: &BenchSetup<'_>,
        amqp_url: &str,
        gateway: &mut Gateway,
        outbound: &Outbound,
        traces: Traces,
        setup: &dyn Fn() -> anyhow::Result<Setup>,
    ) -> anyhow::Result<Option<Sides>> {
        let Some(asked) = bench.alongside else {
            return Ok(None);
        };
        let binding = command_binding(bench.registry, asked.message_type)?;
        let messages = asked.messages();
        let connection = crate::broker::connect(amqp_url).await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(Default::default()).await?;
        let outbound = Outbound {
            channel,
            reply_to: binding.rpc.then(|| gateway.replies.clone()),
            ..outbound.clone()
        };
        let mut built = Vec::with_capacity(2);
        for (k, (first_step, phase)) in PRELUDES.into_iter().zip([ALONE, DURING]).enumerate() {
            let first = bench.messages + k as u32 * messages;
            let group = Group {
                traces,
                phase: first_step,
                first,
            };
            let facts = prelude::run(
                gateway,
                &outbound,
                bench.registry,
                binding.needs,
                messages,
                group,
                setup()?,
            )
            .await?;
            let group = Group { phase, ..group };
            let commands = Commands::new(asked.message_type, Arc::new(facts), group)?;
            built.push(Arc::new(commands));
        }
        let [alone, during]: [Arc<Commands>; 2] = built
            .try_into()
            .map_err(|_| anyhow::anyhow!("not one group of commands per sub-phase"))?;
        Ok(Some(Sides {
            message_type: asked.message_type.to_owned(),
            binding,
            rate: asked.rate,
            messages,
            outbound,
            connection,
            alone,
            during,
        }))
    }

    /// The other command type.
    pub(super) fn message_type(&self) -> &str {
        &self.message_type
    }

    /// With the workers running and consuming: the other type alone, then again while
    /// every command of the burst (`commands`, counted by `burst`) is published at
    /// once, until every command of both has completed.
    pub(super) async fn run(
        &self,
        outputs: &mut mpsc::UnboundedReceiver<Output>,
        running: &mut Running,
        outbound: Outbound,
        commands: Arc<Commands>,
        burst: &mut Tracker,
    ) -> anyhow::Result<Burst> {
        let mut alone = Tracker::new(ALONE, &self.binding, self.messages);
        let started_alone = Instant::now();
        let publisher = self.publish(&self.alone);
        let waited = wait(outputs, &mut alone, running, None, None).await;
        let alone_sent = publisher.await??;
        waited?;

        let cpu_before = running.usage().cpu_seconds;
        let mut during = Tracker::new(DURING, &self.binding, self.messages);
        let started = Instant::now();
        let n = burst.n();
        let bursting = tokio::spawn(async move {
            let published = publish_commands(outbound, commands, n, None).await;
            (published, Instant::now())
        });
        let publisher = self.publish(&self.during);
        burst.last_progress = started;
        let trackers = &mut [&mut *burst, &mut during];
        // Until the burst is done, then until the rest of the other type is too.
        let mut waited = wait_all(outputs, trackers, 1, running, None, None).await;
        let cpu_seconds = running.usage().cpu_seconds - cpu_before;
        if waited.is_ok() {
            waited = wait_all(outputs, trackers, 2, running, None, None).await;
        }
        let (published, taken_in) = bursting.await?;
        let published = published?;
        let during_sent = publisher.await??;
        waited?;
        let _ = self.outbound.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;

        let burst_end = burst.last_done().unwrap_or(started);
        let latency_alone = Latency::of(alone.latencies(&alone_sent, ..), false);
        let latency_during = Latency::of(during.latencies(&during_sent, ..=burst_end), false);
        let latency_hashing =
            Latency::of(during.latencies(&during_sent, taken_in..=burst_end), false);
        let p99_ratio = ratio(latency_during.p99_ms, latency_alone.p99_ms);
        let p99_ratio_hashing = ratio(latency_hashing.p99_ms, latency_alone.p99_ms);
        let side = Alongside {
            message_type: self.message_type.clone(),
            causes: alone.causes.clone(),
            offered_rate: self.rate,
            messages: self.messages,
            published_rate_alone: self.published_rate(started_alone, &alone_sent),
            published_rate_during: self.published_rate(started, &during_sent),
            completed_alone: alone.completed,
            completed_during: during.completed,
            alone: latency_alone,
            during: latency_during,
            p99_ratio,
            burst_taken_in_seconds: taken_in.saturating_duration_since(started).as_secs_f64(),
            p99_ratio_hashing,
            during_hashing: latency_hashing,
            p99_ratio_goal: P99_RATIO_GOAL,
            meets_p99_goal: p99_ratio <= P99_RATIO_GOAL,
            burst_rate: 0.0,
            burst_seconds: 0.0,
            burst_ratio_to_hash_ceiling: 0.0,
            broker_alone: Latency::of(Vec::new(), false),
            broker_during: Latency::of(Vec::new(), false),
            broker_p99_ratio: 0.0,
            outputs: merged(&alone.outputs, &during.outputs),
            unexpected_outputs: merged(&alone.unexpected, &during.unexpected),
        };
        Ok(Burst {
            started,
            published_for: sent_for(started, &published),
            published,
            cpu_seconds,
            side,
        })
    }

    /// The broker alone running the other type's pattern at the same rate and count,
    /// first with nothing else published, then while `burst` (bodies of the burst's
    /// type, as many) is published at once into a queue nothing consumes and this
    /// process hashes as the burst would beside it (see `hashing::Load`): what taking
    /// the burst in and hashing it cost the other type with no pinflow at all. After
    /// pinflow's phase, on the ceiling's queues (see `ceiling::pattern_latency`).
    pub(super) async fn broker_floor(
        &self,
        amqp_url: &str,
        tag: &str,
        (runtime, rules): (&Runtime, &Rules),
        burst: &Bodies,
    ) -> anyhow::Result<Floor> {
        let bodies = ceiling_bodies(&self.message_type, self.messages)?;
        let (bodies, causes) = (&bodies, self.binding.causes);
        let time = |beside| async move {
            pattern_latency(amqp_url, tag, bodies, causes, runtime, (self.rate, beside))
                .await?
                .map(|(latency, _)| latency)
                .context("the other type causes nothing to time")
        };
        let alone = time(None).await?;
        let hashing = Load::start(rules)?;
        let during = time(Some(burst)).await;
        hashing.stop().await?;
        Ok(Floor {
            alone,
            during: during?,
        })
    }

    /// Publishes the other type's commands of one sub-phase at the rate asked.
    fn publish(&self, commands: &Arc<Commands>) -> JoinHandle<anyhow::Result<Published>> {
        tokio::spawn(publish_commands(
            self.outbound.clone(),
            commands.clone(),
            self.messages,
            Some(self.rate),
        ))
    }

    /// Commands a second published in a sub-phase that began at `started`.
    fn published_rate(&self, started: Instant, sent: &[Instant]) -> f64 {
        f64::from(self.messages) / sent_for(started, sent).as_secs_f64().max(1e-9)
    }
}

/// Two counts by routing key, added up.
fn merged(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut sum = a.clone();
    for (key, n) in b {
        *sum.entry(key.clone()).or_default() += n;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_count_is_five_seconds_worth_and_at_least_200() {
        let at = |rate| AlongsideSetup {
            message_type: "application.submit",
            rate,
            messages: None,
        };
        assert_eq!(at(50.0).messages(), 250);
        assert_eq!(at(10.0).messages(), 200);
        let asked = AlongsideSetup {
            messages: Some(7),
            ..at(50.0)
        };
        assert_eq!(asked.messages(), 7);
    }

    #[test]
    fn the_phases_of_the_other_type_are_apart_from_the_burst_and_its_prelude() {
        let mut phases = vec![super::super::MEASURED, ALONE, DURING];
        // A prelude has at most a few steps.
        for first in [super::super::PRELUDE, PRELUDES[0], PRELUDES[1]] {
            phases.extend(first..first + 4);
        }
        let distinct: std::collections::HashSet<_> = phases.iter().collect();
        assert_eq!(distinct.len(), phases.len());
    }

    #[test]
    fn counts_add_up_by_key() {
        let a = BTreeMap::from([("x".to_owned(), 2), ("y".to_owned(), 1)]);
        let b = BTreeMap::from([("x".to_owned(), 3)]);
        let sum = merged(&a, &b);
        assert_eq!(sum["x"], 5);
        assert_eq!(sum["y"], 1);
        assert_eq!(ratio(3.0, 0.0), 0.0);
    }
}
