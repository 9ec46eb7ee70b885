//! Where the machine's CPU time went during a phase: the broker's processes
//! (`beam.smp`), PostgreSQL's (`postgres`) and the rest, read from `/proc`, with how
//! many cores were kept busy. pinflow shares the machine with both; when the cores
//! are busy, the split says which of the three a faster pinflow would have to spend
//! less of.

use std::time::Instant;

use serde::Serialize;

use super::running::clock_ticks;

/// The process name (`/proc/PID/comm`) of RabbitMQ's runtime.
const BROKER: &str = "beam.smp";

/// The process name of PostgreSQL's server and backends.
const DATABASE: &str = "postgres";

/// CPU time used so far, in seconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    at: Instant,
    /// The machine's busy time (every state but idle and waiting for I/O).
    busy: f64,
    /// The broker's processes; `None` when none runs on this machine.
    broker: Option<f64>,
    /// PostgreSQL's processes, with the backends that have exited (their parent's
    /// count of waited-for children).
    database: Option<f64>,
}

/// Where a phase's CPU time went, per 1,000 of its commands.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuSplit {
    /// Seconds the phase took.
    pub seconds: f64,
    /// The machine's busy CPU seconds ÷ `seconds`: cores kept busy, of `cores`.
    pub busy_cores: f64,
    /// Cores of the machine.
    pub cores: usize,
    /// The broker's processes (`beam.smp`), CPU seconds per 1,000 commands; `null`
    /// when no broker runs on this machine (one in a container of another machine).
    pub broker_per_1000: Option<f64>,
    /// PostgreSQL's processes (`postgres`), the same way.
    pub database_per_1000: Option<f64>,
    /// Everything else that was busy, per 1,000 commands: pinflow, the benchmark's
    /// client and whatever else the machine ran.
    pub rest_per_1000: f64,
}

impl Snapshot {
    /// The CPU time used so far.
    pub(super) fn take() -> Snapshot {
        let ticks = clock_ticks();
        let (mut broker, mut database) = (None, None);
        for (name, seconds) in processes(ticks) {
            let total = match name.as_str() {
                BROKER => &mut broker,
                DATABASE => &mut database,
                _ => continue,
            };
            *total = Some(total.unwrap_or(0.0) + seconds);
        }
        Snapshot {
            at: Instant::now(),
            busy: machine_busy(ticks).unwrap_or(0.0),
            broker,
            database,
        }
    }

    /// What `commands` commands cost from `self` until now.
    pub(super) fn split(&self, commands: usize) -> CpuSplit {
        let now = Snapshot::take();
        let seconds = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let per_1000 = |s: f64| s * 1000.0 / (commands.max(1) as f64);
        let used = |before: Option<f64>, after: Option<f64>| Some((after? - before?).max(0.0));
        let broker = used(self.broker, now.broker);
        let database = used(self.database, now.database);
        let known = broker.unwrap_or(0.0) + database.unwrap_or(0.0);
        // The machine's counters and the processes' tick apart: over a short phase the
        // processes may show a tick the machine does not yet.
        let busy = (now.busy - self.busy).max(known);
        let rest = busy - known;
        CpuSplit {
            seconds,
            busy_cores: busy / seconds,
            cores: crate::domain::hashing::cores(),
            broker_per_1000: broker.map(per_1000),
            database_per_1000: database.map(per_1000),
            rest_per_1000: per_1000(rest),
        }
    }
}

impl CpuSplit {
    /// Commands a second these cores would allow were nothing busy but the broker and
    /// PostgreSQL, at their CPU seconds per command here: the cores ÷ the two added
    /// up. `None` when either is out of sight or cost nothing.
    pub fn others_bound(&self) -> Option<f64> {
        let per_command = (self.broker_per_1000? + self.database_per_1000?) / 1000.0;
        (per_command > 0.0).then(|| self.cores as f64 / per_command)
    }
}

impl std::fmt::Display for CpuSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}"));
        write!(
            f,
            "{} / {} / {:.3} s; {:.2} of {} cores busy",
            seconds(self.broker_per_1000),
            seconds(self.database_per_1000),
            self.rest_per_1000,
            self.busy_cores,
            self.cores
        )
    }
}

/// Every process's name and CPU seconds (its own, and its waited-for children's).
fn processes(ticks: f64) -> Vec<(String, f64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let pid = name
                .to_str()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(&stat, ticks)
        })
        .collect()
}

/// The name and CPU seconds in a `/proc/PID/stat` line: utime, stime, cutime and
/// cstime (fields 14 to 17).
fn parse_stat(stat: &str, ticks: f64) -> Option<(String, f64)> {
    // The name (field 2) is in parentheses and may hold spaces or parentheses.
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let mut total = 0u64;
    for field in fields.get(11..15)? {
        total += field.parse::<u64>().ok()?;
    }
    Some((name.to_owned(), total as f64 / ticks))
}

/// The machine's busy CPU seconds since it booted, from `/proc/stat`.
fn machine_busy(ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_busy(stat.lines().next()?, ticks)
}

/// Busy seconds in the `cpu` line of `/proc/stat`: user, nice, system, irq, softirq
/// and steal (idle and iowait are not; guest time is already in user).
fn parse_busy(line: &str, ticks: f64) -> Option<f64> {
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let values: Vec<u64> = fields.map(str::parse).collect::<Result<_, _>>().ok()?;
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| values.get(i).copied().unwrap_or(0))
        .sum();
    Some(busy as f64 / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_name_and_its_cpu_with_its_reaped_children() {
        let line = "2255 (postgres) S 1 2255 2255 0 -1 4194560 6023 1000 0 0 \
                    150 50 300 100 20 0 1 0 1500 227233792 7000";
        assert_eq!(parse_stat(line, 100.0), Some(("postgres".to_owned(), 6.0)));
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 9 9";
        assert_eq!(parse_stat(odd, 10.0), Some(("a (b) c".to_owned(), 1.0)));
        assert_eq!(parse_stat("7 (short) R 1 2", 100.0), None);
    }

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let line = "cpu  100 10 50 9000 400 5 5 30 0 0";
        assert_eq!(parse_busy(line, 100.0), Some(2.0));
        assert_eq!(parse_busy("cpu0 1 2 3", 100.0), None);
    }

    #[test]
    fn the_others_bound_spreads_the_broker_and_the_database_over_every_core() {
        let split = CpuSplit {
            seconds: 1.0,
            busy_cores: 1.5,
            cores: 2,
            broker_per_1000: Some(0.02),
            database_per_1000: Some(0.08),
            rest_per_1000: 0.05,
        };
        let bound = split.others_bound().expect("both seen");
        assert!((bound - 20_000.0).abs() < 1e-6, "{bound}");
        let unseen = CpuSplit {
            database_per_1000: None,
            ..split
        };
        assert_eq!(unseen.others_bound(), None);
        let idle = CpuSplit {
            broker_per_1000: Some(0.0),
            database_per_1000: Some(0.0),
            ..split
        };
        assert_eq!(idle.others_bound(), None);
    }

    #[test]
    fn this_machine_is_seen_busy_while_a_thread_spins() {
        let before = Snapshot::take();
        let until = Instant::now() + std::time::Duration::from_millis(300);
        let mut spins = 0u64;
        while Instant::now() < until {
            spins = std::hint::black_box(spins + 1);
        }
        let split = before.split(1000);
        assert!(split.busy_cores > 0.5, "{split:?}");
        assert!(split.rest_per_1000 > 0.15, "{split:?}");
    }
}
