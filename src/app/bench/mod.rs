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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use backon::{ExponentialBuilder, Retryable as _};
use lapin::Connection;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use uuid::Uuid;

mod alongside;
mod ceiling;
mod commands;
mod database;
mod gateway;
mod hashing;
mod machine;
mod prelude;
mod report;
mod running;
pub mod sweep;
mod tracking;

use alongside::Sides;
pub use alongside::{Alongside, AlongsideSetup};
use ceiling::{pattern_ceiling, pattern_latency};
use commands::{Commands, Group};
pub use commands::{MAX_APPLICANTS, command, tax_code};
use database::Counters;
pub use database::{DatabaseWork, Statement, Statements};
use gateway::{Gateway, Phase, Traces};
pub use hashing::HashCeiling;
use machine::Snapshot;
pub use report::{Bound, Latency, Report, Runs, Scaling};
use running::{Running, Usage};
use tracking::{Inbox, Outbound, Tracker, publish_commands, sent_for, wait};

use super::Setup;
use crate::broker::{self, Names};
use crate::clock::SystemClock;
use crate::config::{Connections, Rules, Runtime};
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

/// The broker ceiling's commands: `messages` of the type, each with its id.
fn ceiling_bodies(message_type: &str, messages: u32) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut bodies = Vec::with_capacity(messages as usize);
    for n in 0..messages {
        let event = command(message_type, n)?;
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        bodies.push((id, serde_json::to_vec(&event)?));
    }
    Ok(bodies)
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
    let _ = connection.close(200, "done".into()).await;
    let workers = descriptions(bench.registry);
    let cleaned = teardown(&ours, bench.runtime, &workers, &base).await;
    let mut report = outcome?;
    report.cleaned_up = cleaned.is_ok();
    cleaned?;
    Ok(report)
}

/// Removes the benchmark's queues, exchanges and database, on a connection of its
/// own: the run's may be the reason it failed. A broker that drops the connection
/// midway (RabbitMQ 3.10 can, when a quorum queue is deleted, see the README) is
/// retried on a new one; deleting what is already gone is no error.
pub(super) async fn teardown(
    ours: &Connections,
    runtime: &Runtime,
    workers: &[crate::manifest::Description],
    base: &str,
) -> anyhow::Result<()> {
    let delete = || remove_namespace(&ours.amqp_url, &ours.namespace, runtime, workers);
    delete
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_times(4),
        )
        .sleep(tokio::time::sleep)
        .notify(|e, after| tracing::warn!(error = %e, ?after, "bench teardown: trying again"))
        .await
        .context("removing the benchmark's queues and exchanges")?;
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

/// Deletes the namespace's queues and exchanges, the benchmark's own included.
async fn remove_namespace(
    amqp_url: &str,
    namespace: &str,
    runtime: &Runtime,
    workers: &[crate::manifest::Description],
) -> anyhow::Result<()> {
    let connection = broker::connect(amqp_url).await?;
    let channel = connection.create_channel().await?;
    for queue in bench_queues(namespace) {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    channel
        .exchange_delete(
            bench_exchange(namespace).as_str().into(),
            Default::default(),
        )
        .await?;
    broker::topology::delete(&channel, &Names::new(namespace), runtime, workers).await?;
    // Closed here, not on drop: a channel dropped just before its connection closes
    // would be closed a second time by lapin, which logs that as a connection error.
    channel.close(200, "done".into()).await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// The benchmark's own queues in a namespace: the gateway's two, then the ceiling's
/// command queue and sinks.
pub fn bench_queues(tag: &str) -> Vec<String> {
    let mut queues: Vec<String> = ["bench.events", "bench.replies", "ceiling"]
        .iter()
        .map(|q| format!("{tag}.{q}"))
        .collect();
    queues.extend(ceiling::Sinks::names(tag).0);
    queues.push(ceiling::burst_queue(tag));
    queues
}

/// The benchmark's own exchange in a namespace (the ceiling's, for events).
pub fn bench_exchange(tag: &str) -> String {
    ceiling::Sinks::names(tag).1
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

    // Phase 2: the broker alone running the pattern (again after pinflow's phase).
    let bodies = ceiling_bodies(message_type, messages)?;
    let before = pattern_ceiling(&ours.amqp_url, tag, &bodies, binding.causes, runtime)
        .await
        .context("the broker's ceiling before pinflow's phase")?;
    let (broker_publish_rate, pattern_before) = (before.publish_rate, before.pattern_rate);
    // Built again for the run after pinflow's phase, so they take no memory during it.
    drop(bodies);
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;

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
    let sides = Sides::prepare(
        &bench,
        &ours.amqp_url,
        &mut gateway,
        &outbound,
        traces,
        &setup,
    )
    .await?;
    let group = Group::new(traces, MEASURED);
    let commands = Arc::new(Commands::new(message_type, Arc::new(facts), group)?);
    let mut tracker = Tracker::new(MEASURED, binding, messages);
    let no_outputs = binding.causes.is_empty();
    // A type that causes nothing is complete by its inbox rows.
    let mut inbox = if no_outputs {
        let queue = work_queue_of(registry, &names, message_type)
            .with_context(|| format!("no work queue takes {message_type}"))?;
        Some(Inbox::new(&pool, queue, &commands))
    } else {
        None
    };
    let start_workers = || -> anyhow::Result<Running> {
        if processes == 0 {
            Ok(Running::in_process(setup()?))
        } else {
            Running::children(processes, ours, &key, runtime, rules)
        }
    };
    let mut burst = None;
    let mut machine = Snapshot::take();
    let mut database = Counters::take(&pool).await?;
    let (started, mut running, published) = match (rate, &sides) {
        (_, Some(sides)) => {
            let types = [message_type, sides.message_type()];
            let mut running = consuming(connection, &bench, &names, &types, start_workers).await?;
            let (outputs, out) = (&mut gateway.outputs, outbound.clone());
            let run = sides.run(outputs, &mut running, out, commands.clone(), &mut tracker);
            let mut run = run.await?;
            let started = run.started;
            let published = (std::mem::take(&mut run.published), run.published_for);
            burst = Some(run);
            (started, running, published)
        }
        (None, None) => {
            let publishing = Instant::now();
            let published =
                publish_commands(outbound.clone(), commands.clone(), messages, None).await?;
            let published_for = publishing.elapsed();
            machine = Snapshot::take();
            database = database.again(&pool).await?;
            let started = Instant::now();
            let running = start_workers()?;
            (started, running, (published, published_for))
        }
        (Some(rate), None) => {
            let mut running =
                consuming(connection, &bench, &names, &[message_type], start_workers).await?;
            let publisher = tokio::spawn(publish_commands(
                outbound.clone(),
                commands.clone(),
                messages,
                Some(rate),
            ));
            let started = Instant::now();
            tracker.last_progress = started;
            let waited = wait(
                &mut gateway.outputs,
                &mut tracker,
                &mut running,
                None,
                inbox.as_mut(),
            )
            .await;
            let published = publisher.await??;
            waited?;
            let published_for = sent_for(started, &published);
            (started, running, (published, published_for))
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
            inbox.as_mut(),
        )
        .await?;
    }
    let finished = tracker.last_done().unwrap_or(started);
    let cpu_split = machine.split(messages as usize);
    let database = database.since(&pool, messages).await?;
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
    let latency = Latency::of(tracker.latencies(&published, ..), rate.is_none());
    // Whatever still arrives (nothing, in a clean run) is counted as unexpected.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(output) = gateway.outputs.try_recv() {
        tracker.add(&output);
    }
    let left = leftovers(connection, &non_notify_queues(tag, runtime, &workers)).await?;
    gateway.stop().await;
    pool.close().await;
    let argon2 = argon2.and_after(hashing::ceiling(rules, Duration::from_secs(3)).await?);
    let bodies = ceiling_bodies(message_type, messages)?;
    let after = pattern_ceiling(&ours.amqp_url, tag, &bodies, binding.causes, runtime)
        .await
        .context("the broker's ceiling after pinflow's phase")?;
    // With --rate, the broker alone at the same rate: the latency the pattern itself
    // has on this machine.
    let (broker_pattern_latency, broker_pattern_cpu_split) = match (rate, &sides) {
        (Some(rate), None) => pattern_latency(
            &ours.amqp_url,
            tag,
            &bodies,
            binding.causes,
            runtime,
            (rate, None),
        )
        .await
        .context("the broker's latency for the pattern")?
        .unzip(),
        _ => (None, None),
    };
    // Closed here, not dropped: the connection closes next (see `remove_namespace`).
    let _ = channel.close(200, "done".into()).await;
    let pattern_after = after.pattern_rate;
    let broker_pattern_rate = (pattern_before + pattern_after) / 2.0;
    let pinflow_rate = f64::from(tracker.completed) / elapsed;
    let per_1000 = usage.cpu_seconds * 1000.0 / f64::from(messages);
    let alongside = match (burst, &sides) {
        (Some(burst), Some(sides)) => {
            let floor = sides
                .broker_floor(&ours.amqp_url, tag, (runtime, rules), &bodies)
                .await
                .context("the broker alone beside the burst")?;
            Some(burst.figures(pinflow_rate, elapsed, argon2.hashes_per_second, floor))
        }
        _ => None,
    };
    let bound_without_pinflow = match alongside {
        Some(_) => None,
        None => Bound::of(&cpu_split, broker_pattern_rate),
    };
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
        broker_pattern_rate_before: pattern_before,
        broker_pattern_rate_after: pattern_after,
        pinflow_rate,
        ratio_to_pattern_ceiling: pinflow_rate / broker_pattern_rate,
        p99_to_broker_p99: broker_pattern_latency
            .as_ref()
            .map(|broker| latency.p99_ms / broker.p99_ms.max(1e-9)),
        latency,
        broker_pattern_latency,
        completion: if no_outputs { "inbox" } else { "outputs" }.to_owned(),
        completed: tracker.completed,
        expected_outputs: u64::from(messages) * binding.causes.len() as u64,
        outputs: tracker.outputs.clone(),
        unexpected_outputs: tracker.unexpected.clone(),
        cpu_seconds: usage.cpu_seconds,
        cpu_seconds_per_1000: per_1000,
        cpu_split,
        broker_alone_cpu_split: after.cpu,
        broker_pattern_cpu_split,
        bound_without_pinflow,
        database,
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
