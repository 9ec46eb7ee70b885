//! pinflow during a phase of the benchmark: in this process (a task running
//! `app::run`) or as separate `pinflow run` processes configured by environment
//! variables, and what each cost in CPU time and memory, from `/proc`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::Setup;
use crate::config::{Connections, Rules, Runtime};

/// CPU time and peak resident memory of what ran the workers.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Usage {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// The largest peak resident set (VmHWM) of one process, in KiB.
    pub peak_rss_kib: u64,
    /// The peaks of all processes added up, in KiB.
    pub peak_rss_total_kib: u64,
}

/// pinflow running for a phase.
pub(super) enum Running {
    /// A task of this process.
    InProcess {
        stop: oneshot::Sender<()>,
        task: JoinHandle<anyhow::Result<()>>,
        /// This process's CPU seconds when it started.
        cpu_before: f64,
    },
    /// `pinflow run` child processes.
    Children(Vec<Child>),
}

impl Running {
    /// Starts every worker of `setup` in this process. The peak-memory mark of the
    /// process is reset first (where the kernel allows), so the peak reported is this
    /// phase's.
    pub(super) fn in_process(setup: Setup) -> Running {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let cpu_before = cpu_seconds("self").unwrap_or(0.0);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::app::run(setup, async move {
            let _ = stopped.await;
        }));
        Running::InProcess {
            stop,
            task,
            cpu_before,
        }
    }

    /// Starts `n` `pinflow run` processes of this executable, each running every
    /// worker, with the settings of `runtime` and `rules`. With a metrics address set,
    /// the children serve `/metrics` on it and the ports after it, one each.
    pub(super) fn children(
        n: u16,
        connections: &Connections,
        key: &str,
        runtime: &Runtime,
        rules: &Rules,
    ) -> anyhow::Result<Running> {
        let exe = std::env::current_exe()?;
        let mut children = Vec::with_capacity(usize::from(n));
        for index in 0..n {
            let mut command = Command::new(&exe);
            command
                .arg("run")
                .env("PINFLOW_AMQP_URL", &connections.amqp_url)
                .env("PINFLOW_DATABASE_URL", &connections.database_url)
                .env("PINFLOW_NAMESPACE", &connections.namespace)
                .env("PINFLOW_OUTBOX_KEY", key)
                .env_remove("PINFLOW_OUTBOX_KEY_FILE")
                .env_remove("PINFLOW_FAILPOINTS")
                .env_remove("PINFLOW_METRICS_ADDR")
                .env("PINFLOW_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            for (name, value) in settings_env(runtime, rules) {
                command.env(name, value);
            }
            if let Some(addr) = child_metrics_addr(runtime.metrics_addr, index)? {
                command.env("PINFLOW_METRICS_ADDR", addr.to_string());
            }
            children.push(command.spawn()?);
        }
        Ok(Running::Children(children))
    }

    /// Fails when pinflow has stopped by itself.
    pub(super) fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self {
            Running::InProcess { task, .. } => {
                anyhow::ensure!(!task.is_finished(), "pinflow stopped during the benchmark");
            }
            Running::Children(children) => {
                for child in children {
                    if let Some(status) = child.try_wait()? {
                        anyhow::bail!(
                            "a `pinflow run` process exited during the benchmark: {status}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// What it has used so far: read before it stops, while `/proc` still has it.
    pub(super) fn usage(&self) -> Usage {
        match self {
            Running::InProcess { cpu_before, .. } => {
                let peak = peak_rss_kib("self");
                Usage {
                    cpu_seconds: cpu_seconds("self").unwrap_or(0.0) - cpu_before,
                    peak_rss_kib: peak,
                    peak_rss_total_kib: peak,
                }
            }
            Running::Children(children) => {
                let mut usage = Usage::default();
                for child in children {
                    let pid = child.id().to_string();
                    usage.cpu_seconds += cpu_seconds(&pid).unwrap_or(0.0);
                    let peak = peak_rss_kib(&pid);
                    usage.peak_rss_kib = usage.peak_rss_kib.max(peak);
                    usage.peak_rss_total_kib += peak;
                }
                usage
            }
        }
    }

    /// Stops it (SIGTERM for the processes) and waits until it has.
    pub(super) async fn stop(self, limit: Duration) -> anyhow::Result<()> {
        match self {
            Running::InProcess { stop, task, .. } => {
                let _ = stop.send(());
                task.await?
            }
            Running::Children(mut children) => {
                for child in &children {
                    std::process::Command::new("kill")
                        .arg("-TERM")
                        .arg(child.id().to_string())
                        .status()?;
                }
                let deadline = std::time::Instant::now() + limit;
                let mut failed = Vec::new();
                for child in &mut children {
                    loop {
                        if let Some(status) = child.try_wait()? {
                            if !status.success() {
                                failed.push(status.to_string());
                            }
                            break;
                        }
                        if std::time::Instant::now() > deadline {
                            child.kill()?;
                            child.wait()?;
                            failed.push("killed: did not stop in time".to_owned());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                anyhow::ensure!(
                    failed.is_empty(),
                    "`pinflow run` did not stop cleanly: {}",
                    failed.join(", ")
                );
                Ok(())
            }
        }
    }
}

/// Where child `index` serves its metrics: N children cannot share one listener, so
/// each takes the port after the last one's (port 0 stays 0: each gets a free port).
fn child_metrics_addr(addr: Option<SocketAddr>, index: u16) -> anyhow::Result<Option<SocketAddr>> {
    let Some(mut addr) = addr else {
        return Ok(None);
    };
    if addr.port() != 0 {
        let port = addr.port().checked_add(index).with_context(|| {
            format!("no port left after {addr} for `pinflow run` process {index}")
        })?;
        addr.set_port(port);
    }
    Ok(Some(addr))
}

/// The environment that gives a `pinflow run` process these settings.
pub(super) fn settings_env(runtime: &Runtime, rules: &Rules) -> Vec<(&'static str, String)> {
    let d = |d: Duration| iso_duration(d);
    let mut env = vec![
        ("PINFLOW_ASYNC_THREADS", runtime.async_threads().to_string()),
        ("PINFLOW_PREFETCH", runtime.prefetch.to_string()),
        ("PINFLOW_CONSUMERS", runtime.consumers.to_string()),
        ("PINFLOW_BATCH_SIZE", runtime.batch_size.to_string()),
        (
            "PINFLOW_RETRY_MAX_ATTEMPTS",
            runtime.retry_max_attempts.to_string(),
        ),
        ("PINFLOW_RETRY_MIN_DELAY", d(runtime.retry_min_delay)),
        ("PINFLOW_RETRY_MAX_DELAY", d(runtime.retry_max_delay)),
        ("PINFLOW_DELIVERY_LIMIT", runtime.delivery_limit.to_string()),
        ("PINFLOW_CONFIRM_TIMEOUT", d(runtime.confirm_timeout)),
        ("PINFLOW_RELAY_INTERVAL", d(runtime.relay_interval)),
        ("PINFLOW_RELAY_BATCH", runtime.relay_batch.to_string()),
        (
            "PINFLOW_PUBLISH_AT_COMMIT",
            runtime.publish_at_commit.to_string(),
        ),
        ("PINFLOW_SHUTDOWN_TIMEOUT", d(runtime.shutdown_timeout)),
        (
            "PINFLOW_DB_MAX_CONNECTIONS",
            runtime.db_max_connections.to_string(),
        ),
        ("PINFLOW_SWEEP_INTERVAL", d(runtime.sweep_interval)),
        ("PINFLOW_SWEEP_BATCH", runtime.sweep_batch.to_string()),
        (
            "PINFLOW_VALIDITY_CITIZEN",
            rules.validity_citizen.to_string(),
        ),
        (
            "PINFLOW_VALIDITY_INTERMEDIARY",
            rules.validity_intermediary.to_string(),
        ),
        ("PINFLOW_INITIAL_PIN_TTL", rules.initial_pin_ttl.to_string()),
        (
            "PINFLOW_LOCKOUT_THRESHOLD",
            rules.lockout_threshold.to_string(),
        ),
        ("PINFLOW_ARGON2_M_COST", rules.argon2_m_cost.to_string()),
        ("PINFLOW_ARGON2_T_COST", rules.argon2_t_cost.to_string()),
        ("PINFLOW_ARGON2_P_COST", rules.argon2_p_cost.to_string()),
        (
            "PINFLOW_DEV_ALLOW_WEAK_ARGON2",
            rules.dev_allow_weak_argon2.to_string(),
        ),
        (
            "PINFLOW_CONVERSION_MAX_DOCUMENT_BYTES",
            rules.conversion_max_document_bytes.to_string(),
        ),
        ("PINFLOW_EXPIRY_REMINDER", rules.expiry_reminder.to_string()),
        ("PINFLOW_RESET_TOKEN_TTL", rules.reset_token_ttl.to_string()),
        (
            "PINFLOW_RESET_RATE_LIMIT",
            rules.reset_rate_limit.to_string(),
        ),
        (
            "PINFLOW_RESET_RATE_WINDOW",
            rules.reset_rate_window.to_string(),
        ),
    ];
    if let Some(threads) = rules.argon2_threads {
        env.push(("PINFLOW_ARGON2_THREADS", threads.to_string()));
    }
    if let Some(threads) = rules.argon2_threads_beside_others {
        env.push(("PINFLOW_ARGON2_THREADS_BESIDE_OTHERS", threads.to_string()));
    }
    env
}

/// An ISO 8601 duration in whole milliseconds, e.g. `PT1.500S`.
fn iso_duration(d: Duration) -> String {
    let ms = d.as_millis();
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

/// Clock ticks per second of `/proc/<pid>/stat`: the kernel's `AT_CLKTCK`, from this
/// process's auxiliary vector; `getconf CLK_TCK` if that cannot be read.
pub(super) fn clock_ticks() -> f64 {
    const AT_CLKTCK: u64 = 17;
    let from_auxv = std::fs::read("/proc/self/auxv").ok().and_then(|auxv| {
        auxv.chunks_exact(16).find_map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
            let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
            (key == AT_CLKTCK && value > 0).then_some(value)
        })
    });
    let ticks = from_auxv.or_else(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    });
    ticks.unwrap_or(100) as f64
}

/// User plus system CPU time of a process (`self` or a pid), in seconds.
pub(super) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// Peak resident memory (VmHWM) of a process (`self` or a pid), in KiB.
pub(super) fn peak_rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_duration;
    use crate::domain::Period;

    #[test]
    fn the_settings_a_child_gets_parse_back_to_the_same_values() {
        for d in [
            Duration::from_millis(1),
            Duration::from_millis(1500),
            Duration::from_secs(300),
        ] {
            assert_eq!(parse_duration(&iso_duration(d)), Ok(d));
        }
        for p in ["P6M", "P60D", "PT24H", "P1D", "P14D"] {
            let period = Period::parse(p).expect("valid");
            assert_eq!(Period::parse(&period.to_string()).ok(), Some(period));
        }
    }

    #[test]
    fn each_child_serves_metrics_on_a_port_of_its_own() {
        let addr: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let of = |index| child_metrics_addr(Some(addr), index).unwrap();
        assert_eq!(of(0), Some(addr));
        assert_eq!(of(2), Some("127.0.0.1:9466".parse().unwrap()));
        assert_eq!(child_metrics_addr(None, 1).unwrap(), None);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(child_metrics_addr(Some(any), 3).unwrap(), Some(any));
        let last: SocketAddr = "127.0.0.1:65535".parse().unwrap();
        assert!(child_metrics_addr(Some(last), 1).is_err());
    }

    #[test]
    fn this_process_has_cpu_time_and_a_peak() {
        assert!(clock_ticks() >= 1.0);
        assert!(cpu_seconds("self").is_some());
        assert!(peak_rss_kib("self") > 0);
    }
}
