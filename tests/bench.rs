//! `pinflow bench` as a user reads it: for a few commands of two types (one that
//! needs a prelude reading PIN halves and a first-access PIN), in process, every
//! expected output is counted and nothing else, the JSON carries every figure, the
//! latency percentiles are ordered, and afterwards nothing of the run is left: no
//! message in a queue that is not a `notify.*` one, and no queue, exchange or
//! database of its namespace at all. With `--alongside`, another type published at a
//! rate completes wholly alone and beside a burst, and each of its figures is there,
//! the broker alone's beside a burst included.
//! With `--rate`, the broker alone is timed at the same rate, every command of it.
//! Every run reports the database's WAL and, where the server loads
//! `pg_stat_statements`, its statements, the benchmark's own marked; `--sweep` too.
//! Never asserts a speed.

mod common;

use clap::Parser;
use lapin::ExchangeKind;
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use pinflow::app::bench::{
    self, AlongsideSetup, BenchSetup, DatabaseWork, Report, Statement, Statements,
};
use pinflow::broker::names::NOTIFY_CHANNELS;
use pinflow::broker::{self as amqp, Names};
use pinflow::config::{Connections, Rules, Runtime};
use pinflow::runtime::descriptions;
use pinflow::workers::REGISTRY;

#[derive(Parser)]
struct Settings {
    #[command(flatten)]
    runtime: Runtime,
    #[command(flatten)]
    rules: Rules,
}

const COMMANDS: u32 = 50;

/// Cheap Argon2, the rest default.
fn cheap_hashing() -> (Runtime, Rules) {
    let settings = Settings::parse_from([
        "bench",
        "--argon2-m-cost",
        "256",
        "--argon2-t-cost",
        "1",
        "--dev-allow-weak-argon2",
    ]);
    (settings.runtime, settings.rules)
}

async fn measure(
    message_type: &str,
    runtime: &Runtime,
    rules: &Rules,
    rate: Option<f64>,
    alongside: Option<AlongsideSetup<'_>>,
) -> Report {
    let burst = alongside.is_some();
    let services = common::services().await;
    let connections = Connections {
        amqp_url: services.amqp_url.clone(),
        database_url: services.database_url.clone(),
        namespace: String::new(),
    };
    let setup = BenchSetup {
        runtime,
        rules,
        registry: REGISTRY,
        message_type,
        messages: COMMANDS,
        rate,
        processes: 0,
        alongside,
    };
    let runs = bench::run_sizes(&connections, setup, &[COMMANDS])
        .await
        .unwrap_or_else(|e| panic!("bench {message_type}: {e:#}"));
    assert!(runs.scaling.is_none(), "one size, nothing to compare");
    let json = serde_json::to_value(&runs).expect("serializes");
    let report = &json["runs"][0];
    for field in [
        "message_type",
        "causes",
        "messages",
        "mode",
        "published_rate",
        "processes",
        "broker_publish_rate",
        "broker_pattern_rate",
        "broker_pattern_rate_before",
        "broker_pattern_rate_after",
        "pinflow_rate",
        "ratio_to_pattern_ceiling",
        "latency",
        "broker_pattern_latency",
        "p99_to_broker_p99",
        "completion",
        "completed",
        "expected_outputs",
        "outputs",
        "unexpected_outputs",
        "cpu_seconds",
        "cpu_seconds_per_1000",
        "cpu_split",
        "broker_alone_cpu_split",
        "broker_pattern_cpu_split",
        "bound_without_pinflow",
        "database",
        "peak_rss_kib",
        "peak_rss_total_kib",
        "usage_includes_bench_client",
        "argon2",
        "ratio_to_hash_ceiling",
        "argon2_cpu_share",
        "leftover_messages",
        "namespace",
        "cleaned_up",
        "elapsed_seconds",
        "alongside",
    ] {
        assert!(
            report.get(field).is_some(),
            "{message_type}: the JSON has no {field}"
        );
    }
    let before = report["broker_pattern_rate_before"]
        .as_f64()
        .expect("a rate");
    let after = report["broker_pattern_rate_after"]
        .as_f64()
        .expect("a rate");
    assert!(
        before > 0.0 && after > 0.0,
        "{message_type}: {before}, {after}"
    );
    let mean = report["broker_pattern_rate"].as_f64().expect("a rate");
    assert!(
        (mean - (before + after) / 2.0).abs() < 1e-6,
        "the ceiling is their mean"
    );
    for field in ["samples", "p50_ms", "p99_ms", "max_ms", "includes_queueing"] {
        assert!(report["latency"].get(field).is_some(), "latency.{field}");
    }
    for field in [
        "hashes_per_second",
        "hashes_per_second_before",
        "hashes_per_second_after",
        "cpu_seconds_per_hash",
        "hashes_per_second_free_cores",
    ] {
        assert!(report["argon2"][field].as_f64().is_some(), "argon2.{field}");
    }
    for split in ["cpu_split", "broker_alone_cpu_split"] {
        let split = &report[split];
        let seconds = split["seconds"].as_f64().expect("seconds");
        let busy = split["busy_cores"].as_f64().expect("busy cores");
        let cores = split["cores"].as_u64().expect("cores") as f64;
        assert!(seconds > 0.0 && busy >= 0.0, "{message_type}: {split}");
        // /proc counts in clock ticks (10 ms at most): a short phase may read a tick
        // or two more than it lasted on each core.
        assert!(
            busy * seconds <= cores * (seconds + 0.02),
            "{message_type}: {split}"
        );
        // The three parts add up to the machine's busy time.
        let part = |name: &str| split[name].as_f64().unwrap_or(0.0);
        let parts = ["broker_per_1000", "database_per_1000", "rest_per_1000"];
        assert!(
            parts.iter().all(|p| part(p) >= 0.0),
            "{message_type}: {split}"
        );
        let sum: f64 = parts.iter().map(|p| part(p)).sum();
        let busy_seconds = sum * f64::from(COMMANDS) / 1000.0;
        assert!(
            (busy_seconds - busy * seconds).abs() < 1e-6,
            "{message_type}: the parts make the busy time: {split}"
        );
    }
    let busy = report["cpu_split"]["busy_cores"].as_f64();
    assert!(
        busy > Some(0.0),
        "{message_type}: pinflow's phase kept a core busy"
    );
    // Where this machine sees the broker and PostgreSQL, the bound their CPU sets is
    // the cores ÷ their CPU per command, and that ÷ the pattern ceiling; beside a
    // burst there is none (the split counts the other type's commands too).
    let split = &report["cpu_split"];
    let bound = &report["bound_without_pinflow"];
    let seen = |name: &str| split[name].as_f64();
    match (seen("broker_per_1000"), seen("database_per_1000")) {
        (Some(broker), Some(database)) if !burst => {
            let cores = split["cores"].as_u64().expect("cores") as f64;
            let rate = bound["rate"].as_f64().expect("a bound");
            let expected = cores * 1000.0 / (broker + database);
            assert!(
                (rate - expected).abs() <= 1e-6 * expected,
                "{message_type}: {bound} from {split}"
            );
            let ratio = bound["ratio_to_pattern_ceiling"].as_f64().expect("a ratio");
            assert!(
                (ratio - rate / mean).abs() <= 1e-9 * ratio.max(1.0),
                "{message_type}: {bound}"
            );
        }
        _ => assert!(bound.is_null(), "{message_type}: {bound}"),
    }
    let report = runs.runs.into_iter().next().expect("one report");
    // A type that causes nothing is seen complete by the benchmark's reads of the
    // inbox, which are its own, not pinflow's.
    let read = (report.completion == "inbox").then_some("from inbox");
    let kind = &report.message_type;
    let statements = assert_database_work(kind, &report.database, &report.to_string(), read);
    if let Some(statements) = statements {
        let inbox = statements
            .ran
            .iter()
            .find(|s| s.text.starts_with("insert into inbox"))
            .unwrap_or_else(|| panic!("{kind}: no inbox insert among {statements:?}"));
        assert!(
            inbox.wal_bytes_per_command > 0.0 && !inbox.benchmark,
            "{inbox:?}"
        );
    }
    report
}

/// Every command writes rows, so the server wrote WAL; and the statements are either
/// measured (returned), pinflow's writing WAL, the benchmark's own marked (`read`: a
/// piece of one it must have run), or not, with the reason, in the printed `text`.
fn assert_database_work<'a>(
    kind: &str,
    database: &'a DatabaseWork,
    text: &str,
    read: Option<&str>,
) -> Option<&'a Statements> {
    assert!(database.wal_bytes_per_command > 0.0, "{kind}: {database:?}");
    let Some(statements) = &database.statements else {
        let why = database.statements_missing.as_deref().unwrap_or_default();
        assert!(why.contains("pg_stat_statements"), "{kind}: {why}");
        assert!(text.contains(&format!("not measured: {why}")), "{kind}");
        return None;
    };
    assert!(database.statements_missing.is_none(), "{kind}");
    assert!(statements.commits_per_1000 > 0.0, "{kind}: {statements:?}");
    // Every statement that ran is listed: the shares make the whole.
    let shares: f64 = statements.ran.iter().map(|s| s.share).sum();
    assert!((shares - 1.0).abs() < 1e-6, "{kind}: {statements:?}");
    let writes = |s: &Statement| !s.benchmark && s.wal_bytes_per_command > 0.0;
    assert!(statements.ran.iter().any(writes), "{kind}: {statements:?}");
    let ours: f64 = (statements.ran.iter())
        .filter(|s| s.benchmark)
        .map(|s| s.exec_ms_per_1000)
        .sum();
    let total = statements.benchmark_ms_per_1000;
    assert!((ours - total).abs() <= 1e-6 * total.max(1.0), "{kind}");
    if let Some(read) = read {
        let found = statements
            .ran
            .iter()
            .find(|s| s.text.contains(read))
            .unwrap_or_else(|| panic!("{kind}: nothing {read} in {statements:?}"));
        assert!(found.benchmark, "{found:?}");
    }
    Some(statements)
}

/// A clean run: nothing left in a queue but the `notify.*` ones, the run says it
/// cleaned up, and its queues and database are gone.
async fn assert_clean(report: &Report, runtime: &Runtime) {
    assert!(
        report.leftover_messages.is_empty(),
        "{}: left in non-notify queues: {:?}",
        report.message_type,
        report.leftover_messages
    );
    assert!(report.cleaned_up, "{}", report.message_type);
    let services = common::services().await;
    let connection = amqp::connect(&services.amqp_url).await.expect("broker");
    let names = Names::new(&report.namespace);
    let mut queues = bench::non_notify_queues(&report.namespace, runtime, &descriptions(REGISTRY));
    queues.extend(NOTIFY_CHANNELS.iter().map(|c| names.notify_queue(c)));
    queues.extend(bench::bench_queues(&report.namespace));
    for queue in queues {
        let channel = connection.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let found = channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await;
        assert!(found.is_err(), "{queue} is still there after the run");
    }
    let channel = connection.create_channel().await.expect("channel");
    let exchange = bench::bench_exchange(&report.namespace);
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let found = channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            passive,
            FieldTable::default(),
        )
        .await;
    assert!(found.is_err(), "{exchange} is still there after the run");
    let _ = connection.close(200, "done".into()).await;
    assert_no_database(&services.database_url, &report.namespace).await;
}

/// The run's database is gone.
async fn assert_no_database(database_url: &str, namespace: &str) {
    let admin = pinflow::store::connect(database_url, 1)
        .await
        .expect("database");
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(namespace)
            .fetch_one(&admin)
            .await
            .expect("query");
    assert!(!exists, "the database {namespace} is still there");
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_counts_every_output_and_leaves_nothing_behind() {
    let (runtime, rules) = cheap_hashing();
    // delivery.receipt causes nothing: its commands are complete by their inbox rows.
    for message_type in [
        "pin.request",
        "pin.verify",
        "phone_pin.request",
        "phone_pin.verify",
        "delivery.receipt",
    ] {
        let report = measure(message_type, &runtime, &rules, None, None).await;
        let completion = if message_type == "delivery.receipt" {
            "inbox"
        } else {
            "outputs"
        };
        assert_eq!(report.completion, completion, "{message_type}");
        assert_eq!(report.completed, COMMANDS, "{message_type}: all complete");
        let counted: u64 = report.outputs.values().sum();
        assert_eq!(counted, report.expected_outputs, "{message_type}");
        assert_eq!(
            report.expected_outputs,
            u64::from(COMMANDS) * report.causes.len() as u64
        );
        for cause in &report.causes {
            assert!(
                report.outputs.contains_key(cause),
                "{message_type}: {cause}"
            );
        }
        assert!(
            report.unexpected_outputs.is_empty(),
            "{message_type}: {:?}",
            report.unexpected_outputs
        );
        let latency = &report.latency;
        assert_eq!(latency.samples, COMMANDS as usize);
        assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
        assert!(latency.includes_queueing, "full speed queues first");
        assert!(
            report.broker_pattern_latency.is_none(),
            "timed at a rate only"
        );
        assert!(report.broker_pattern_cpu_split.is_none(), "at a rate only");
        assert_clean(&report, &runtime).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_set_rate_the_broker_alone_is_timed_at_the_same_rate() {
    let (runtime, rules) = cheap_hashing();
    let report = measure("pin.verify", &runtime, &rules, Some(100.0), None).await;
    assert_eq!(report.mode, "rate");
    assert_eq!(report.completed, COMMANDS);
    assert!(!report.latency.includes_queueing, "published at a rate");
    let broker = report
        .broker_pattern_latency
        .as_ref()
        .expect("the broker alone, timed at the same rate");
    assert_eq!(broker.samples, COMMANDS as usize, "every command timed");
    assert!(!broker.includes_queueing);
    assert!(broker.p50_ms > 0.0, "a real round trip takes time");
    assert!(broker.p50_ms <= broker.p99_ms && broker.p99_ms <= broker.max_ms);
    let ratio = report.p99_to_broker_p99.expect("a ratio");
    assert!((ratio - report.latency.p99_ms / broker.p99_ms).abs() < 1e-9);
    // Its CPU over that run: the broker's and the client's, as long as the run took.
    let split = report
        .broker_pattern_cpu_split
        .as_ref()
        .expect("the broker alone's CPU at the same rate");
    let broker_per_1000 = split
        .broker_per_1000
        .expect("the broker is on this machine");
    assert!(broker_per_1000 > 0.0, "the broker worked: {split:?}");
    assert!(split.rest_per_1000 > 0.0, "the client worked: {split:?}");
    let at_the_rate = f64::from(COMMANDS) / 100.0;
    assert!(
        split.seconds >= 0.9 * at_the_rate,
        "published at 100/s, so it lasted about {at_the_rate} s or more: {split:?}"
    );
    assert_clean(&report, &runtime).await;
    // A type that causes nothing has no outputs to time.
    let report = measure("delivery.receipt", &runtime, &rules, Some(100.0), None).await;
    assert_eq!(report.completed, COMMANDS);
    assert!(report.broker_pattern_latency.is_none());
    assert!(report.p99_to_broker_p99.is_none());
    assert!(report.broker_pattern_cpu_split.is_none());
    assert_clean(&report, &runtime).await;
}

const ALONGSIDE: u32 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alongside_a_burst_another_type_is_timed_alone_and_during_it() {
    let (runtime, rules) = cheap_hashing();
    let asked = AlongsideSetup {
        message_type: "application.submit",
        rate: 50.0,
        messages: Some(ALONGSIDE),
    };
    let report = measure("pin.request", &runtime, &rules, None, Some(asked)).await;
    assert_eq!(report.mode, "alongside");
    assert_eq!(report.completed, COMMANDS, "the whole burst completed");
    assert!(report.unexpected_outputs.is_empty(), "{report}");
    let side = report.alongside.as_ref().expect("the alongside figures");
    assert_eq!(side.message_type, "application.submit");
    assert_eq!(side.messages, ALONGSIDE);
    assert_eq!(side.completed_alone, ALONGSIDE, "all complete alone");
    assert_eq!(
        side.completed_during, ALONGSIDE,
        "all complete beside the burst"
    );
    let counted: u64 = side.outputs.values().sum();
    assert_eq!(counted, 2 * u64::from(ALONGSIDE) * side.causes.len() as u64);
    assert!(side.unexpected_outputs.is_empty(), "{side}");
    assert_eq!(side.alone.samples, ALONGSIDE as usize);
    assert!(
        side.during.samples >= 1 && side.during.samples <= ALONGSIDE as usize,
        "{side}"
    );
    for latency in [&side.alone, &side.during] {
        assert!(latency.p50_ms > 0.0, "{side}");
        assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
        assert!(!latency.includes_queueing, "published at a rate");
    }
    for (name, figure) in [
        ("published_rate_alone", side.published_rate_alone),
        ("published_rate_during", side.published_rate_during),
        ("p99_ratio", side.p99_ratio),
        ("burst_rate", side.burst_rate),
        ("burst_seconds", side.burst_seconds),
        (
            "burst_ratio_to_hash_ceiling",
            side.burst_ratio_to_hash_ceiling,
        ),
    ] {
        assert!(figure > 0.0 && figure.is_finite(), "{name}: {figure}");
    }
    assert_eq!(side.burst_rate, report.pinflow_rate);
    assert_eq!(side.meets_p99_goal, side.p99_ratio <= side.p99_ratio_goal);
    assert!(report.to_string().contains("p99 during ÷ alone"));
    // Once the broker had taken the whole burst in: a part of "during" (with cheap
    // hashing the burst may be over by then, and the part empty).
    assert!(
        side.burst_taken_in_seconds > 0.0 && side.burst_taken_in_seconds <= side.burst_seconds,
        "{side}"
    );
    let hashing = &side.during_hashing;
    assert!(hashing.samples <= side.during.samples, "{side}");
    assert!(hashing.max_ms <= side.during.max_ms, "{side}");
    if hashing.samples > 0 {
        assert!(hashing.p50_ms <= hashing.p99_ms && hashing.p99_ms <= hashing.max_ms);
        assert_eq!(side.p99_ratio_hashing, hashing.p99_ms / side.alone.p99_ms);
    } else {
        assert_eq!(side.p99_ratio_hashing, 0.0, "{side}");
    }
    assert!(report.to_string().contains("once the burst was taken in"));
    // The broker alone, at the same rate and count: every command timed, alone and
    // beside as many burst commands taken in.
    for latency in [&side.broker_alone, &side.broker_during] {
        assert_eq!(latency.samples, ALONGSIDE as usize, "{side}");
        assert!(latency.p50_ms > 0.0, "a real round trip takes time: {side}");
        assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
        assert!(!latency.includes_queueing, "published at a rate");
    }
    assert_eq!(
        side.broker_p99_ratio,
        side.broker_during.p99_ms / side.broker_alone.p99_ms
    );
    assert!(report.to_string().contains("broker alone, alone / beside"));
    // Its burst queue too is gone (`bench_queues` names it).
    assert!(
        bench::bench_queues(&report.namespace)
            .iter()
            .any(|q| q.ends_with(".ceiling.burst")),
        "the teardown knows the burst queue"
    );
    assert_clean(&report, &runtime).await;
}

/// `--sweep`: every due credential is marked expired and announced by the replicas,
/// the database's figures are there, and nothing of the run is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_bench_announces_every_due_credential_and_leaves_no_database() {
    let (runtime, rules) = cheap_hashing();
    let services = common::services().await;
    let connections = Connections {
        amqp_url: services.amqp_url.clone(),
        database_url: services.database_url.clone(),
        namespace: String::new(),
    };
    let credentials = 300;
    let report = bench::sweep::run(&connections, &runtime, &rules, REGISTRY, credentials)
        .await
        .unwrap_or_else(|e| panic!("bench --sweep: {e:#}"));
    assert_eq!(report.credentials, credentials);
    // Announced (every message confirmed) comes after marked.
    assert!(report.marked_rate >= report.announced_rate, "{report:?}");
    assert!(
        report.announced_rate > 0.0 && report.ratio() > 0.0,
        "{report:?}"
    );
    let json = serde_json::to_value(&report).expect("serializes");
    for field in ["marked_rate", "announced_rate", "database", "namespace"] {
        assert!(json.get(field).is_some(), "the sweep's JSON has no {field}");
    }
    // Its count of the credentials still to mark is the benchmark's own reading.
    let text = report.to_string();
    let read = Some("count(*) from credentials");
    assert_database_work("sweep", &report.database, &text, read);
    assert!(text.contains("db WAL per credential:"), "{text}");
    assert_no_database(&services.database_url, &report.namespace).await;
}
