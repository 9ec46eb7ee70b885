//! The figures of `pinflow bench`: the latency of the measured commands, the report
//! of one measurement, several sizes of it and how the figures moved between them,
//! and how each is printed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::alongside::Alongside;
use super::database::DatabaseWork;
use super::hashing::HashCeiling;
use super::machine::CpuSplit;

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
    /// The order statistics of `samples`.
    pub(super) fn of(mut samples: Vec<Duration>, includes_queueing: bool) -> Latency {
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
    /// published with confirms, acknowledged; the mean of the runs before and after
    /// pinflow's phase.
    pub broker_pattern_rate: f64,
    /// The same, run before pinflow's phase.
    pub broker_pattern_rate_before: f64,
    /// The same, run after pinflow's phase.
    pub broker_pattern_rate_after: f64,
    /// pinflow: commands fully handled (every output out) per second.
    pub pinflow_rate: f64,
    /// `pinflow_rate / broker_pattern_rate`.
    pub ratio_to_pattern_ceiling: f64,
    /// End-to-end latency.
    pub latency: Latency,
    /// With --rate: the broker alone running the pattern at the same rate, the same
    /// latency measured the same way (none for a type that causes nothing).
    pub broker_pattern_latency: Option<Latency>,
    /// pinflow's p99 ÷ the broker's alone at the same rate.
    pub p99_to_broker_p99: Option<f64>,
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
    /// The whole machine from the workers' start until the measured phase's end (with
    /// `--alongside`, the other type's commands included): CPU seconds per 1,000
    /// commands of the broker's processes, of PostgreSQL's and of the rest (pinflow,
    /// the benchmark's client, anything else), and the cores kept busy. Read from
    /// `/proc`: a broker or database on another machine or in a VM shows `null` and
    /// counts nowhere.
    pub cpu_split: CpuSplit,
    /// The same for the broker alone running the pattern, after pinflow's phase: the
    /// broker's own cost of the pattern, and the client's (in `rest`).
    pub broker_alone_cpu_split: CpuSplit,
    /// With --rate: the same for the broker alone running the pattern at the same rate
    /// (its latency run), the commands' publishing included as in pinflow's phase;
    /// `null` otherwise and for a type that causes nothing.
    pub broker_pattern_cpu_split: Option<CpuSplit>,
    /// What the broker's and PostgreSQL's work alone allow on this machine, from
    /// `cpu_split`; `null` with `--alongside` (the split counts the other type's
    /// commands too) or when either is out of sight.
    pub bound_without_pinflow: Option<Bound>,
    /// What PostgreSQL did in the same span as `cpu_split`, per command: the WAL the
    /// server wrote and, where it loads `pg_stat_statements`, the time by statement.
    pub database: DatabaseWork,
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

/// The most this machine allows at the broker's and PostgreSQL's CPU per command in
/// pinflow's phase: were pinflow's own CPU (and the benchmark client's) zero, the cores
/// would still have to hold theirs. A goal's ratio above `ratio_to_pattern_ceiling`
/// cannot be met here by making pinflow cheaper alone.
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    /// Commands a second: the cores ÷ (broker + database CPU seconds per command).
    pub rate: f64,
    /// `rate / broker_pattern_rate`.
    pub ratio_to_pattern_ceiling: f64,
}

impl Bound {
    /// The bound `split` sets, against the pattern ceiling `ceiling`.
    pub(super) fn of(split: &CpuSplit, ceiling: f64) -> Option<Bound> {
        let rate = split.others_bound()?;
        Some(Bound {
            rate,
            ratio_to_pattern_ceiling: ratio(rate, ceiling),
        })
    }
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
    /// From `first` to `last`.
    pub(super) fn of(first: &Report, last: &Report) -> Scaling {
        Scaling {
            from_messages: first.messages,
            to_messages: last.messages,
            rate: ratio(last.pinflow_rate, first.pinflow_rate),
            ratio_to_pattern_ceiling: ratio(
                last.ratio_to_pattern_ceiling,
                first.ratio_to_pattern_ceiling,
            ),
            p50: ratio(last.latency.p50_ms, first.latency.p50_ms),
            p99: ratio(last.latency.p99_ms, first.latency.p99_ms),
            cpu_per_1000: ratio(last.cpu_seconds_per_1000, first.cpu_seconds_per_1000),
            peak_rss: ratio(last.peak_rss_kib as f64, first.peak_rss_kib as f64),
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
            format!(
                "{:.0} cmd/s (before {:.0}, after {:.0})",
                self.broker_pattern_rate,
                self.broker_pattern_rate_before,
                self.broker_pattern_rate_after
            ),
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
        if let (Some(broker), Some(ratio)) = (&self.broker_pattern_latency, self.p99_to_broker_p99)
        {
            line(
                f,
                "broker alone at the same rate:",
                format!(
                    "{:.1} / {:.1} / {:.1} ms (pinflow's p99 ÷ the broker's: {ratio:.2})",
                    broker.p50_ms, broker.p99_ms, broker.max_ms
                ),
            )?;
        }
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
        line(
            f,
            "cpu / 1,000, broker / db / rest:",
            self.cpu_split.to_string(),
        )?;
        line(
            f,
            "  the same, broker alone:",
            self.broker_alone_cpu_split.to_string(),
        )?;
        if let Some(split) = &self.broker_pattern_cpu_split {
            line(f, "  broker alone at the same rate:", split.to_string())?;
        }
        if let Some(bound) = &self.bound_without_pinflow {
            line(
                f,
                "bound by broker + db CPU:",
                format!(
                    "{:.0} cmd/s, {:.3} of the pattern ceiling (pinflow's own CPU taken as zero)",
                    bound.rate, bound.ratio_to_pattern_ceiling
                ),
            )?;
        }
        writeln!(f, "{}", self.database)?;
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

/// `a / b`, 0 when `b` is not above 0.
pub(super) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
