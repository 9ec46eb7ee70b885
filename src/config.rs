//! Every setting, from command-line flags and `PINFLOW_*` environment variables.
//!
//! Values are parsed here, once, into typed settings; a bad value stops start-up with
//! a message naming the flag and its variable (see `main`). No I/O beyond reading the
//! outbox key file.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::domain::{HashParams, Period};
use crate::seal::{KeyRing, OutboxKey};

/// Where the broker and the database are, and which namespace to use.
#[derive(Args, Clone)]
pub struct Connections {
    /// AMQP URL of RabbitMQ.
    #[arg(
        long,
        env = "PINFLOW_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// PostgreSQL URL; the database is created if it does not exist.
    #[arg(
        long,
        env = "PINFLOW_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/pinflow"
    )]
    pub database_url: String,

    /// Prefix of every exchange and queue, so installations can share a broker.
    #[arg(long, env = "PINFLOW_NAMESPACE", default_value = "", value_parser = parse_namespace)]
    pub namespace: String,
}

/// How the consumer loop, the retries and the relay behave.
#[derive(Args, Clone, Debug)]
pub struct Runtime {
    /// Deliveries the broker may have in flight to one worker (basic.qos).
    #[arg(long, env = "PINFLOW_PREFETCH", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// Threads of the async runtime, which runs the consumers, the relay and their
    /// connections (default: half the cores, at least one). Argon2 has threads of its
    /// own (`PINFLOW_ARGON2_THREADS`); with the broker and the database on the same
    /// cores, fewer async threads wake each other less often.
    #[arg(long, env = "PINFLOW_ASYNC_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub async_threads: Option<u16>,

    /// Consumer loops per worker in one process, each with its own connection and
    /// transaction, competing on the worker's queue.
    #[arg(long, env = "PINFLOW_CONSUMERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub consumers: u16,

    /// Deliveries handled in one database transaction and acknowledged together.
    #[arg(long, env = "PINFLOW_BATCH_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,

    /// Attempts before a transiently failing message goes to its dead-letter queue.
    #[arg(long, env = "PINFLOW_RETRY_MAX_ATTEMPTS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub retry_max_attempts: u32,

    /// Delay before the first retry (ISO 8601 duration); doubles with each attempt.
    #[arg(long, env = "PINFLOW_RETRY_MIN_DELAY", default_value = "PT1S", value_parser = parse_duration)]
    pub retry_min_delay: Duration,

    /// Longest delay between two attempts (ISO 8601 duration).
    #[arg(long, env = "PINFLOW_RETRY_MAX_DELAY", default_value = "PT5M", value_parser = parse_duration)]
    pub retry_max_delay: Duration,

    /// Deliveries of one message the broker allows before dead-lettering it itself
    /// (a message that crashes the worker every time).
    #[arg(long, env = "PINFLOW_DELIVERY_LIMIT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_limit: u32,

    /// How long to wait for a publisher confirm before treating the publish as failed.
    #[arg(long, env = "PINFLOW_CONFIRM_TIMEOUT", default_value = "PT10S", value_parser = parse_duration)]
    pub confirm_timeout: Duration,

    /// How often the outbox relay looks for due rows when nothing woke it (its own
    /// workers' commits and other processes' relays wake it at once).
    #[arg(long, env = "PINFLOW_RELAY_INTERVAL", default_value = "PT1S", value_parser = parse_duration)]
    pub relay_interval: Duration,

    /// Outbox rows the relay publishes per round.
    #[arg(long, env = "PINFLOW_RELAY_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub relay_batch: u32,

    /// Whether a worker publishes what a batch caused as soon as the batch commits
    /// (the relay then publishes only what is left: rows the broker refused or
    /// returned, and those of a process that stopped before their confirms). `false`
    /// leaves every row to the relay.
    #[arg(long, env = "PINFLOW_PUBLISH_AT_COMMIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub publish_at_commit: bool,

    /// How long a stop may take to finish in-flight work before giving up.
    #[arg(long, env = "PINFLOW_SHUTDOWN_TIMEOUT", default_value = "PT30S", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest number of database connections in the pool.
    #[arg(long, env = "PINFLOW_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: u32,

    /// How often the timed jobs (sweeps of due deadlines) run a pass.
    #[arg(long, env = "PINFLOW_SWEEP_INTERVAL", default_value = "PT1M", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// Rows a timed job claims and handles in one transaction.
    #[arg(long, env = "PINFLOW_SWEEP_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub sweep_batch: u32,

    /// Where `pinflow run` serves `/metrics` (Prometheus), `/healthz` and `/readyz`,
    /// e.g. `0.0.0.0:9464`; off when unset.
    #[arg(long, env = "PINFLOW_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// How often the gauges read from the database (outbox backlog, credentials by
    /// status, expiries) are refreshed (ISO 8601 duration).
    #[arg(long, env = "PINFLOW_METRICS_INTERVAL", default_value = "PT15S", value_parser = parse_duration)]
    pub metrics_interval: Duration,
}

impl Runtime {
    /// Threads of the async runtime: `PINFLOW_ASYNC_THREADS`, or half the cores, at
    /// least one.
    pub fn async_threads(&self) -> usize {
        self.async_threads
            .map_or_else(default_async_threads, usize::from)
    }
}

/// Half the cores, at least one: the async runtime's threads where nothing sets them.
pub fn default_async_threads() -> usize {
    (crate::domain::hashing::cores() / 2).max(1)
}

/// The business rules that a decree may change: periods, lockout, hashing cost.
#[derive(Args, Clone, Debug)]
pub struct Rules {
    /// Validity of a citizen's PIN from activation (ISO 8601 duration).
    #[arg(long, env = "PINFLOW_VALIDITY_CITIZEN", default_value = "P6M", value_parser = parse_period)]
    pub validity_citizen: Period,

    /// Validity of an intermediary's PIN from activation.
    #[arg(long, env = "PINFLOW_VALIDITY_INTERMEDIARY", default_value = "P3M", value_parser = parse_period)]
    pub validity_intermediary: Period,

    /// How long an initial PIN may wait for its first access.
    #[arg(long, env = "PINFLOW_INITIAL_PIN_TTL", default_value = "P60D", value_parser = parse_period)]
    pub initial_pin_ttl: Period,

    /// Consecutive failed checks that lock a credential.
    #[arg(long, env = "PINFLOW_LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub lockout_threshold: u32,

    /// Argon2id memory cost in KiB (OWASP minimum: 19456).
    #[arg(long, env = "PINFLOW_ARGON2_M_COST", default_value_t = 19456)]
    pub argon2_m_cost: u32,

    /// Argon2id iterations (OWASP minimum: 2).
    #[arg(long, env = "PINFLOW_ARGON2_T_COST", default_value_t = 2)]
    pub argon2_t_cost: u32,

    /// Argon2id parallelism.
    #[arg(long, env = "PINFLOW_ARGON2_P_COST", default_value_t = 1)]
    pub argon2_p_cost: u32,

    /// Threads that run Argon2 (default: one per core). Fewer leave cores to the other
    /// message types, and to a broker or database on the same machine, while a burst
    /// of hashing commands is handled, at the cost of hashes per second.
    #[arg(long, env = "PINFLOW_ARGON2_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub argon2_threads: Option<u16>,

    /// Threads that keep hashing while commands that do not hash are being handled
    /// (default: one fewer than `PINFLOW_ARGON2_THREADS`, at least one). The others
    /// step aside between two hashes until no such command has been seen for 250 ms,
    /// leaving their cores to those commands and to a broker or database on the same
    /// machine. Set it to `PINFLOW_ARGON2_THREADS` for hashing never to step aside.
    #[arg(long, env = "PINFLOW_ARGON2_THREADS_BESIDE_OTHERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub argon2_threads_beside_others: Option<u16>,

    /// Development only: allow Argon2 costs below the OWASP minimum (cheap hashing for
    /// tests and for measuring the runtime alone).
    #[arg(long, env = "PINFLOW_DEV_ALLOW_WEAK_ARGON2")]
    pub dev_allow_weak_argon2: bool,

    // Device-PIN conversion (the verification and conversion workers).
    /// Largest document a conversion accepts, in bytes (10 MiB); an empty one is
    /// refused too.
    #[arg(long, env = "PINFLOW_CONVERSION_MAX_DOCUMENT_BYTES", default_value_t = 10 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub conversion_max_document_bytes: u64,

    // The expiry, reset and revocation workers.
    /// How long before a PIN's deadline the reminder (`pin.expiring`) goes out.
    #[arg(long, env = "PINFLOW_EXPIRY_REMINDER", default_value = "P14D", value_parser = parse_period)]
    pub expiry_reminder: Period,

    /// How long a reset link's token works.
    #[arg(long, env = "PINFLOW_RESET_TOKEN_TTL", default_value = "PT24H", value_parser = parse_period)]
    pub reset_token_ttl: Period,

    /// Reset requests one tax code may make within `PINFLOW_RESET_RATE_WINDOW`; the
    /// next ones are refused (`rate_limited`) and send nothing.
    #[arg(long, env = "PINFLOW_RESET_RATE_LIMIT", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub reset_rate_limit: u32,

    /// The window the reset requests of one tax code are counted over.
    #[arg(long, env = "PINFLOW_RESET_RATE_WINDOW", default_value = "P1D", value_parser = parse_period)]
    pub reset_rate_window: Period,
}

/// The OWASP minimum for Argon2id: 19 MiB of memory and two passes (or, in OWASP's
/// equivalent settings, at least as much memory times passes, with no less than 7 MiB).
pub const ARGON2_MIN_M_KIB: u32 = 19_456;
/// See [`ARGON2_MIN_M_KIB`].
pub const ARGON2_MIN_T: u32 = 2;

impl Rules {
    /// Refuses Argon2 costs below the OWASP minimum unless the development setting
    /// allows them.
    pub fn check_hash_strength(&self) -> Result<(), String> {
        let work = u64::from(self.argon2_m_cost) * u64::from(self.argon2_t_cost);
        let floor = u64::from(ARGON2_MIN_M_KIB) * u64::from(ARGON2_MIN_T);
        if (work >= floor && self.argon2_m_cost >= 7_168) || self.dev_allow_weak_argon2 {
            return Ok(());
        }
        Err(format!(
            "Argon2 costs m={} KiB t={} are below the OWASP minimum (m={ARGON2_MIN_M_KIB} KiB, t={ARGON2_MIN_T}); \
             set PINFLOW_DEV_ALLOW_WEAK_ARGON2=true only for development and tests",
            self.argon2_m_cost, self.argon2_t_cost
        ))
    }

    /// How many hashes run at a time: `PINFLOW_ARGON2_THREADS`, or one per core.
    pub fn hash_threads(&self) -> usize {
        self.argon2_threads
            .map_or_else(crate::domain::hashing::cores, usize::from)
    }

    /// How many hashes run at a time while commands that do not hash are being
    /// handled: `PINFLOW_ARGON2_THREADS_BESIDE_OTHERS`, or one fewer than
    /// [`Rules::hash_threads`]; at least one, at most that.
    pub fn hash_threads_beside_others(&self) -> usize {
        let threads = self.hash_threads();
        self.argon2_threads_beside_others
            .map_or(threads.saturating_sub(1), usize::from)
            .clamp(1, threads.max(1))
    }

    /// The Argon2id parameters these rules name.
    pub fn hash_params(&self) -> HashParams {
        HashParams {
            m_cost_kib: self.argon2_m_cost,
            t_cost: self.argon2_t_cost,
            p_cost: self.argon2_p_cost,
        }
    }
}

/// Where the keys for secrets waiting in the outbox and in dead letters come from.
#[derive(Args, Clone)]
pub struct Secrets {
    /// Outbox keys (32 random bytes each, base64), oldest first, separated by commas:
    /// new seals use the last. Generate one with `pinflow keygen`; every copy of
    /// pinflow sharing a database needs the same keys.
    #[arg(long, env = "PINFLOW_OUTBOX_KEY", hide_env_values = true)]
    pub outbox_key: Option<String>,

    /// A file of outbox keys, one per line, oldest first (for Docker secrets and for
    /// `pinflow keys rotate`); used when PINFLOW_OUTBOX_KEY is not set.
    #[arg(long, env = "PINFLOW_OUTBOX_KEY_FILE")]
    pub outbox_key_file: Option<PathBuf>,

    /// Where pinflow keeps the key file it made itself when no key is configured
    /// (`<dir>/outbox.keys`, mode 0600). Production sets PINFLOW_OUTBOX_KEY_FILE.
    #[arg(long, env = "PINFLOW_DATA_DIR", default_value = "pinflow-data")]
    pub data_dir: PathBuf,
}

/// Why the outbox keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error(
        "no outbox key: set PINFLOW_OUTBOX_KEY or PINFLOW_OUTBOX_KEY_FILE (generate one \
         with `pinflow keygen`), or let `pinflow run` create one in PINFLOW_DATA_DIR"
    )]
    Missing,
    #[error("cannot read or write the key file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("PINFLOW_OUTBOX_KEY holds a key that is not valid")]
    Invalid(#[source] crate::seal::SealError),
}

impl Secrets {
    /// The key file in use: the configured one, else the data directory's.
    pub fn key_file(&self) -> PathBuf {
        self.outbox_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("outbox.keys"))
    }

    /// The configured keys, from the variable, the key file, or the data directory's
    /// key file if it exists.
    pub fn key_ring(&self) -> Result<KeyRing, KeyConfigError> {
        let text = match &self.outbox_key {
            Some(keys) => zeroize::Zeroizing::new(keys.replace(',', "\n")),
            None => {
                let path = self.key_file();
                match std::fs::read_to_string(&path) {
                    Ok(text) => zeroize::Zeroizing::new(text),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && self.outbox_key_file.is_none() =>
                    {
                        return Err(KeyConfigError::Missing);
                    }
                    Err(source) => return Err(KeyConfigError::File { path, source }),
                }
            }
        };
        parse_keys(&text)
    }

    /// The configured keys, or, when none is configured at all, a new key written to
    /// the data directory (mode 0600) and used from then on. `true` when it was made.
    pub fn key_ring_or_create(&self) -> Result<(KeyRing, bool), KeyConfigError> {
        match self.key_ring() {
            Err(KeyConfigError::Missing) => {
                let path = self.key_file();
                append_key(&path, &OutboxKey::generate())?;
                Ok((self.key_ring()?, true))
            }
            other => other.map(|ring| (ring, false)),
        }
    }
}

/// Parses keys, one per line (blank lines and `#` comments skipped), oldest first.
pub fn parse_keys(text: &str) -> Result<KeyRing, KeyConfigError> {
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(OutboxKey::from_base64)
        .collect::<Result<Vec<_>, _>>()
        .map_err(KeyConfigError::Invalid)?;
    KeyRing::new(keys).ok_or(KeyConfigError::Missing)
}

/// Appends a key to a key file, creating it (and its folder) with owner-only
/// permissions.
pub fn append_key(path: &std::path::Path, key: &OutboxKey) -> Result<(), KeyConfigError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let fail = |source| KeyConfigError::File {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    writeln!(file, "{}", key.to_base64()).map_err(fail)
}

/// Parses an ISO 8601 duration of fixed length (weeks, days, hours, minutes, seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = iso8601::duration(text)
        .map_err(|_| format!("`{text}` is not an ISO 8601 duration such as PT1S or P1D"))?;
    if let iso8601::Duration::YMDHMS { year, month, .. } = parsed
        && (year != 0 || month != 0)
    {
        return Err(format!(
            "`{text}` uses years or months, whose length varies; use days"
        ));
    }
    let duration = Duration::from(parsed);
    if duration.is_zero() {
        return Err(format!("`{text}` is zero"));
    }
    Ok(duration)
}

fn parse_period(text: &str) -> Result<Period, String> {
    Period::parse(text).map_err(|e| format!("`{text}`: {e}"))
}

fn parse_namespace(text: &str) -> Result<String, String> {
    let ok = text.len() <= 48
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err("use at most 48 letters, digits, '-' or '_'".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_durations_parse_and_calendar_ones_are_refused() {
        assert_eq!(parse_duration("PT1S"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("PT5M"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("P1D"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("P1M").is_err());
        assert!(parse_duration("PT0S").is_err());
        assert!(parse_duration("5s").is_err());
    }

    #[derive(clap::Parser)]
    struct RulesOnly {
        #[command(flatten)]
        rules: Rules,
    }

    fn rules(args: &[&str]) -> Result<Rules, clap::Error> {
        use clap::Parser as _;
        RulesOnly::try_parse_from(std::iter::once("pinflow").chain(args.iter().copied()))
            .map(|parsed| parsed.rules)
    }

    #[test]
    fn hashing_threads_default_to_the_cores_and_can_be_fewer() {
        let cores = crate::domain::hashing::cores();
        assert_eq!(rules(&[]).expect("defaults").hash_threads(), cores);
        let one = rules(&["--argon2-threads", "1"]).expect("one thread");
        assert_eq!(one.hash_threads(), 1);
        assert!(rules(&["--argon2-threads", "0"]).is_err());
    }

    #[test]
    fn one_hashing_thread_fewer_beside_other_work_unless_set() {
        let beside = |args: &[&str]| rules(args).expect("rules").hash_threads_beside_others();
        assert_eq!(beside(&["--argon2-threads", "4"]), 3);
        assert_eq!(beside(&["--argon2-threads", "1"]), 1, "never none");
        let all = [
            "--argon2-threads",
            "4",
            "--argon2-threads-beside-others",
            "4",
        ];
        assert_eq!(beside(&all), 4);
        let more = [
            "--argon2-threads",
            "2",
            "--argon2-threads-beside-others",
            "8",
        ];
        assert_eq!(beside(&more), 2, "at most the threads there are");
        assert!(rules(&["--argon2-threads-beside-others", "0"]).is_err());
    }

    #[derive(clap::Parser)]
    struct RuntimeOnly {
        #[command(flatten)]
        runtime: Runtime,
    }

    #[test]
    fn async_threads_default_to_half_the_cores_and_can_be_set() {
        use clap::Parser as _;
        let runtime = |args: &[&str]| {
            RuntimeOnly::try_parse_from(std::iter::once("pinflow").chain(args.iter().copied()))
                .map(|parsed| parsed.runtime)
        };
        let half = (crate::domain::hashing::cores() / 2).max(1);
        assert_eq!(runtime(&[]).expect("defaults").async_threads(), half);
        let three = runtime(&["--async-threads", "3"]).expect("three threads");
        assert_eq!(three.async_threads(), 3);
        assert!(runtime(&["--async-threads", "0"]).is_err());
    }

    #[test]
    fn a_namespace_with_dots_or_spaces_is_refused() {
        assert!(parse_namespace("t42").is_ok());
        assert!(parse_namespace("").is_ok());
        assert!(parse_namespace("a.b").is_err());
        assert!(parse_namespace("a b").is_err());
    }
}
