//! The metrics pinflow records, by name, in one place: counters by worker, message
//! type and outcome; latency histograms with fixed buckets (they add up across
//! replicas, unlike summaries); gauges for the outbox, the credentials and the sweeps.
//! Recorded through the `metrics` facade into a Prometheus recorder that `install`
//! sets up once per process; the `/metrics` endpoint renders it. Recording costs a
//! few atomic operations, and nothing when no recorder is installed.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: from a fast database round trip to a slow Argon2 hash
/// behind a queue.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once; later calls return the
/// same handle). `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RECEIVED, "Deliveries taken from a worker's queue.");
    describe_counter!(
        PROCESSED,
        "Deliveries whose handling committed (outcome handled) or that were already handled (duplicate)."
    );
    describe_counter!(
        RETRIED,
        "Deliveries sent to a delay queue for another attempt."
    );
    describe_counter!(
        DEAD_LETTERED,
        "Deliveries sent to a dead-letter queue (reason invalid, rejected or attempts)."
    );
    describe_histogram!(
        HANDLING,
        Unit::Seconds,
        "From taking a batch of deliveries to committing its effects, per delivery."
    );
    describe_histogram!(
        RELAY_PUBLISH,
        Unit::Seconds,
        "From the first publish of a relay round to the last confirm."
    );
    describe_counter!(RELAY_PUBLISHED, "Outbox rows published and confirmed.");
    describe_counter!(RELAY_DEFERRED, "Outbox rows put back for a later attempt.");
    describe_gauge!(OUTBOX_BACKLOG, "Outbox rows not yet published.");
    describe_gauge!(
        OUTBOX_OLDEST,
        Unit::Seconds,
        "Age of the oldest outbox row not yet published (0 when none)."
    );
    describe_gauge!(CREDENTIALS, "Credentials by status and kind.");
    describe_gauge!(
        EXPIRING_WEEK,
        "Active or locked credentials whose validity ends within seven days."
    );
    describe_gauge!(
        SWEEP_LAG,
        Unit::Seconds,
        "How long ago the oldest deadline that no sweep has handled yet fell due (0 when none)."
    );
    describe_counter!(RECONNECTS, "Broker sessions lost and started again.");
    describe_gauge!(ARGON2_WAITING, "Hashes waiting for a free core.");
    describe_gauge!(
        ARGON2_STEPPED_ASIDE,
        "Hashing threads waiting while commands that do not hash are handled."
    );
    describe_histogram!(ARGON2, Unit::Seconds, "Time of one Argon2id hash or check.");
    describe_gauge!(
        GAUGES_AGE,
        Unit::Seconds,
        "Unix time of the last refresh of the database gauges."
    );
}

const RECEIVED: &str = "pinflow_messages_received_total";
const PROCESSED: &str = "pinflow_messages_processed_total";
const RETRIED: &str = "pinflow_messages_retried_total";
const DEAD_LETTERED: &str = "pinflow_messages_dead_lettered_total";
const HANDLING: &str = "pinflow_handling_duration_seconds";
const RELAY_PUBLISH: &str = "pinflow_relay_publish_duration_seconds";
const RELAY_PUBLISHED: &str = "pinflow_relay_published_total";
const RELAY_DEFERRED: &str = "pinflow_relay_deferred_total";
const OUTBOX_BACKLOG: &str = "pinflow_outbox_backlog";
const OUTBOX_OLDEST: &str = "pinflow_outbox_oldest_unsent_age_seconds";
const CREDENTIALS: &str = "pinflow_credentials";
const EXPIRING_WEEK: &str = "pinflow_credentials_expiring_within_7d";
const SWEEP_LAG: &str = "pinflow_expiry_sweep_lag_seconds";
const RECONNECTS: &str = "pinflow_broker_reconnects_total";
const ARGON2_WAITING: &str = "pinflow_argon2_queue_depth";
const ARGON2_STEPPED_ASIDE: &str = "pinflow_argon2_threads_stepped_aside";
const ARGON2: &str = "pinflow_argon2_duration_seconds";
const GAUGES_AGE: &str = "pinflow_gauges_refreshed_timestamp_seconds";

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its effects committed.
    Handled,
    /// Already handled before (the inbox knew its id).
    Duplicate,
    /// Sent to a delay queue.
    Retried,
    /// Did not parse (bad JSON, schema, type, reply address): dead-lettered.
    Invalid,
    /// The handler refused it for good: dead-lettered.
    Rejected,
    /// Out of attempts: dead-lettered.
    Exhausted,
}

impl Outcome {
    /// The label value, also the span's `outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Duplicate => "duplicate",
            Outcome::Retried => "retried",
            Outcome::Invalid => "invalid",
            Outcome::Rejected => "rejected",
            Outcome::Exhausted => "attempts",
        }
    }
}

/// Makes `worker`'s message counters exist, at zero, for every type it takes, so a
/// rate over them reads 0 rather than nothing before the first retry or dead letter.
pub fn declare(worker: &'static str, types: &[&'static str]) {
    for &kind in types {
        counter!(RECEIVED, "worker" => worker, "type" => kind).increment(0);
        for outcome in [Outcome::Handled, Outcome::Duplicate] {
            counter!(PROCESSED, "worker" => worker, "type" => kind, "outcome" => outcome.as_str())
                .increment(0);
        }
        counter!(RETRIED, "worker" => worker, "type" => kind).increment(0);
        for reason in [Outcome::Invalid, Outcome::Rejected, Outcome::Exhausted] {
            counter!(DEAD_LETTERED, "worker" => worker, "type" => kind, "reason" => reason.as_str())
                .increment(0);
        }
    }
}

/// A delivery taken from `worker`'s queue.
pub fn received(worker: &'static str, message_type: &str) {
    counter!(RECEIVED, "worker" => worker, "type" => message_type.to_owned()).increment(1);
}

/// What became of a delivery, and (when it committed) how long its batch took.
pub fn finished(worker: &'static str, message_type: &str, outcome: Outcome, took: Duration) {
    let kind = message_type.to_owned();
    match outcome {
        Outcome::Handled | Outcome::Duplicate => {
            counter!(PROCESSED, "worker" => worker, "type" => kind.clone(), "outcome" => outcome.as_str())
                .increment(1);
            histogram!(HANDLING, "worker" => worker, "type" => kind).record(took);
        }
        Outcome::Retried => {
            counter!(RETRIED, "worker" => worker, "type" => kind).increment(1);
        }
        Outcome::Invalid | Outcome::Rejected | Outcome::Exhausted => {
            counter!(DEAD_LETTERED, "worker" => worker, "type" => kind, "reason" => outcome.as_str())
                .increment(1);
        }
    }
}

/// A relay round (or a batch published at commit): the destination of each row
/// confirmed, rows put back, and how long from the first publish to the last confirm.
pub fn relay_round(
    published: impl IntoIterator<Item = &'static str>,
    deferred: u64,
    took: Duration,
) {
    let mut counts = [("event", 0), ("notification", 0), ("reply", 0)];
    for destination in published {
        if let Some((_, n)) = counts.iter_mut().find(|(name, _)| *name == destination) {
            *n += 1;
        }
    }
    for (destination, n) in counts {
        counter!(RELAY_PUBLISHED, "destination" => destination).increment(n);
    }
    counter!(RELAY_DEFERRED).increment(deferred);
    histogram!(RELAY_PUBLISH).record(took);
}

/// `lost` broker sessions of `component` (a worker's name, `relay`, `intake`); called
/// with 0 when it starts, so the series exists from the start.
pub fn reconnects(component: &str, lost: u64) {
    counter!(RECONNECTS, "component" => component.to_owned()).increment(lost);
}

/// A hash starts waiting for a core (+1) or stops waiting (-1).
pub fn argon2_waiting(delta: f64) {
    gauge!(ARGON2_WAITING).increment(delta);
}

/// A hashing thread steps aside for commands that do not hash (+1), or takes hashes
/// again (-1).
pub fn argon2_stepped_aside(delta: f64) {
    gauge!(ARGON2_STEPPED_ASIDE).increment(delta);
}

/// One Argon2id computation took `took`.
pub fn argon2(took: Duration) {
    histogram!(ARGON2).record(took);
}

/// The figures read from the database periodically (see `runtime::gauges`).
#[derive(Debug, Default)]
pub struct DatabaseGauges {
    /// Unpublished outbox rows.
    pub outbox_backlog: i64,
    /// Age of the oldest, in seconds.
    pub outbox_oldest_seconds: f64,
    /// (status, kind, count).
    pub credentials: Vec<(String, String, i64)>,
    /// Active or locked credentials whose validity ends within seven days.
    pub expiring_within_7d: i64,
    /// How long ago the oldest unhandled deadline fell due, in seconds.
    pub sweep_lag_seconds: f64,
}

/// Sets the database gauges; every status and kind seen before is set again, to zero
/// when it has no credential left.
pub fn database(figures: &DatabaseGauges, now_unix: f64) {
    gauge!(OUTBOX_BACKLOG).set(figures.outbox_backlog as f64);
    gauge!(OUTBOX_OLDEST).set(figures.outbox_oldest_seconds);
    for status in ["issued", "active", "locked", "expired", "revoked"] {
        for kind in ["ordinary", "device"] {
            let n = figures
                .credentials
                .iter()
                .find(|(s, k, _)| s == status && k == kind)
                .map_or(0, |(_, _, n)| *n);
            gauge!(CREDENTIALS, "status" => status, "kind" => kind).set(n as f64);
        }
    }
    gauge!(EXPIRING_WEEK).set(figures.expiring_within_7d as f64);
    gauge!(SWEEP_LAG).set(figures.sweep_lag_seconds);
    gauge!(GAUGES_AGE).set(now_unix);
}
