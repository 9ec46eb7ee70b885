//! The `pinflow` command: run the workers, migrate, declare the topology, publish a
//! command, generate an outbox key.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, Subcommand};
use pinflow::app::bench::{AlongsideSetup, BenchSetup};
use pinflow::app::{self, Setup};
use pinflow::clock::SystemClock;
use pinflow::config::{Connections, Rules, Runtime, Secrets, parse_duration};
use pinflow::manifest::{Description, Source};
use pinflow::ops::publish::{self, PublishRequest};
use pinflow::runtime::{JobTrigger, descriptions};
use pinflow::seal::OutboxKey;
use pinflow::telemetry::{self, Logging};
use pinflow::workers::REGISTRY;
use tokio_util::sync::CancellationToken;

/// jemalloc instead of the system's allocator. A batch's deliveries are allocated on
/// lapin's I/O threads and freed on the async thread, and each message makes and drops
/// many small strings and JSON values. Against glibc's allocator this took about 9% off
/// the `pinflow run` process's CPU per command (the median of 22 alternating pairs), for
/// 4-5 MiB more resident memory (docs/performance.md, "A sixth sitting").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Runs the life of the PIN credential as message-driven workflows on RabbitMQ and
/// PostgreSQL.
#[derive(Parser)]
#[command(name = "pinflow", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    logging: Logging,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run workers (all of them unless --worker is given) until SIGTERM or Ctrl-C.
    /// Migrates the database and declares the topology first.
    Run {
        /// A worker to run (repeat for several); default: every worker.
        #[arg(long = "worker", value_name = "NAME")]
        workers: Vec<String>,
        #[command(flatten)]
        connections: Connections,
        #[command(flatten)]
        runtime: Runtime,
        #[command(flatten)]
        rules: Rules,
        #[command(flatten)]
        secrets: Secrets,
    },
    /// Create the database if needed and apply pending migrations.
    Migrate {
        #[command(flatten)]
        connections: Connections,
    },
    /// Declare every exchange and queue of the namespace.
    Topology {
        #[command(flatten)]
        connections: Connections,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Publish a command (a CloudEvent JSON file, or - for standard input) to
    /// pinflow.commands and wait for the broker's confirm.
    Publish {
        /// The CloudEvent to publish.
        file: String,
        /// Wait for the RPC reply and print it.
        #[arg(long)]
        reply: bool,
        /// How long to wait for the reply (ISO 8601 duration).
        #[arg(long, default_value = "PT30S", value_parser = parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        connections: Connections,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Dead letters: list, group, show, replay, edit, purge, export. A message fails
    /// for a reason (`list` and `groups` say which); fix the cause, then `replay` puts
    /// the messages back where they failed, keeping their ids, so nothing is lost or
    /// doubled. Every replay, edit and purge is audited.
    #[command(after_help = "A typical session:\n  \
        pinflow dlq groups                          what failed, and why, by cause\n  \
        pinflow dlq list --error TEXT --since PT1H  one line per dead letter\n  \
        pinflow dlq show ID                         one message in full, secrets redacted\n  \
        ... fix the cause ...\n  \
        pinflow dlq replay --group G --dry-run      what would go back, and where\n  \
        pinflow dlq replay --group G --yes          put them back (confirmed, then removed)\n  \
        pinflow dlq edit ID --data fixed.json       when the content itself was wrong\n  \
        pinflow dlq purge ID... --yes               when it must never run\n\n\
        Connection settings (PINFLOW_AMQP_URL, PINFLOW_DATABASE_URL, PINFLOW_NAMESPACE,\n\
        PINFLOW_OUTBOX_KEY) are those of `pinflow run`; see each command's --help.")]
    Dlq {
        #[command(subcommand)]
        command: pinflow::ops::dlq::cli::DlqCommand,
    },
    /// What the support desk may see of a credential.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// Exit 0 when the broker and the database answer and the workers' queues have
    /// consumers (for container health checks).
    Health {
        /// A worker whose queue must have a consumer (repeat); default: every worker.
        #[arg(long = "worker", value_name = "NAME")]
        workers: Vec<String>,
        #[command(flatten)]
        connections: Connections,
    },
    /// Measure throughput and latency: the Argon2 ceiling, the broker's own ceiling for
    /// a command's message pattern (from its worker's description), then pinflow
    /// handling that command end to end, in one run, as rates and ratios. Uses a
    /// namespace and a database of its own and removes them afterwards.
    #[command(after_long_help = BENCH_FIGURES)]
    Bench {
        /// Commands to measure; several sizes separated by commas (10000,100000) run
        /// the same measurement at each and report how the figures moved.
        #[arg(long, default_value = "2000", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=672_000))]
        messages: Vec<u32>,
        /// The command type to drive (its example in schemas/examples/ is the body):
        /// pin.request, pin.first_access, pin.verify, phone_pin.request,
        /// phone_pin.verify, conversion.submit, application.submit, delivery.receipt,
        /// or any other registered command whose example succeeds as it is.
        #[arg(long = "type", default_value = "pin.request")]
        message_type: String,
        /// Publish this many commands a second while pinflow runs (latency at a set
        /// load) instead of queueing them all before the workers start (full speed).
        #[arg(long, value_name = "R")]
        rate: Option<f64>,
        /// Also measure how the latency of another command type moves while the
        /// --messages commands of --type are handled as one burst (pin.request or
        /// pin.verify, which hash with Argon2): with the workers running, TYPE is
        /// published at --alongside-rate alone, then again while the whole burst is
        /// published at once. Reports TYPE's latency both times, the p99 ratio (the
        /// goal: at most 2) and the burst's rate. Both types must cause a message
        /// (delivery.receipt does not).
        #[arg(long, value_name = "TYPE", conflicts_with = "rate")]
        alongside: Option<String>,
        /// With --alongside: TYPE's commands a second, alone and during the burst.
        #[arg(long, value_name = "R", default_value = "50", requires = "alongside")]
        alongside_rate: f64,
        /// With --alongside: TYPE's commands in each of the two sub-phases (default:
        /// 5 s worth at --alongside-rate, at least 200).
        #[arg(long, value_name = "N", requires = "alongside", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        alongside_messages: Option<u32>,
        /// Run the workers as N `pinflow run` processes of this executable instead of
        /// in the benchmark's process. With a metrics address set, they serve
        /// `/metrics` on its port and the N-1 after it.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
        processes: Option<u16>,
        /// Print one JSON object with every figure instead of the table.
        #[arg(long)]
        json: bool,
        /// Measure the timed jobs instead: --messages credentials past their deadline,
        /// swept by two replicas, against the broker's publish-confirm rate; with
        /// PostgreSQL's WAL and statements per credential, as below.
        #[arg(long, conflicts_with_all = ["message_type", "rate", "processes", "alongside"])]
        sweep: bool,
        #[command(flatten)]
        connections: Connections,
        #[command(flatten)]
        runtime: Runtime,
        #[command(flatten)]
        rules: Rules,
    },
    /// Print every event and notification pinflow publishes, as it happens (from a
    /// private queue: the gateways' queues keep theirs). Secrets print as <redacted>
    /// unless --show-secrets.
    Watch {
        /// Print PIN halves and other secrets in clear (for trying pinflow out on test
        /// data only): refused unless PINFLOW_ALLOW_SHOW_SECRETS allows it on this
        /// installation; every use is written to the operator audit.
        #[arg(long)]
        show_secrets: bool,
        /// Allow --show-secrets on this installation (never in production).
        #[arg(long, env = "PINFLOW_ALLOW_SHOW_SECRETS")]
        allow_show_secrets: bool,
        /// Who is watching (default: the OS user), for the audit.
        #[arg(long)]
        operator: Option<String>,
        #[command(flatten)]
        connections: Connections,
    },
    /// List the registered workers: their queues, bindings and timed jobs.
    Workers,
    /// Ask a running `pinflow run` whether it is ready (its `/readyz` at
    /// PINFLOW_METRICS_ADDR): exit status 0 when it is, 1 when not; prints what is not.
    /// For container health checks.
    Ready {
        /// Where it serves its endpoints (an unspecified address means this host).
        #[arg(long, env = "PINFLOW_METRICS_ADDR", default_value = "127.0.0.1:9464")]
        metrics_addr: std::net::SocketAddr,
    },
    /// The outbox keys: list what each still seals, add one, retire an old one.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a new random outbox key (base64) for PINFLOW_OUTBOX_KEY, or write it to a
    /// file that does not exist yet.
    Keygen {
        /// Write the key to this file (mode 0600) unless it already exists.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Each key's id (never the key) and how many outbox rows and dead letters are
    /// still sealed under it.
    List {
        #[command(flatten)]
        connections: Connections,
        #[command(flatten)]
        secrets: Secrets,
    },
    /// Add a new key at the end of the key file; processes seal with it once
    /// restarted, and still open what older keys sealed.
    Rotate {
        #[command(flatten)]
        secrets: Secrets,
    },
    /// Re-seal everything an old key sealed (outbox rows and dead letters) under the
    /// newest key, check that nothing is left, and remove the old key from the file.
    Retire {
        /// The id of the key to retire (`pinflow keys list`).
        key_id: String,
        #[command(flatten)]
        connections: Connections,
        #[command(flatten)]
        secrets: Secrets,
    },
}

#[derive(Subcommand)]
enum CredentialCommand {
    /// State, kind, holder, deadlines, lock, masked contacts and audit history of
    /// every credential of a tax code; never a secret.
    Show {
        /// The tax code.
        tax_code: String,
        #[command(flatten)]
        connections: Connections,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => name_the_variable(e).exit(),
    };
    let telemetry = match telemetry::init(&cli.logging) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {}", pinflow::error::chain(&e));
            return ExitCode::from(2);
        }
    };
    let threads = cli.command.runtime().map_or_else(
        pinflow::config::default_async_threads,
        Runtime::async_threads,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(execute(cli.command));
    telemetry::finished();
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// The runtime settings of the commands that take them.
    fn runtime(&self) -> Option<&Runtime> {
        match self {
            Command::Run { runtime, .. }
            | Command::Topology { runtime, .. }
            | Command::Publish { runtime, .. }
            | Command::Bench { runtime, .. } => Some(runtime),
            _ => None,
        }
    }
}

/// A bad setting may come from the environment; say which variable it was.
fn name_the_variable(mut error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg).cloned() else {
        return error;
    };
    let mut command = Cli::command();
    command.build();
    let flag = arg
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches("--")
        .to_owned();
    let env = command
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments())
        .chain(command.get_arguments())
        .find(|a| a.get_long() == Some(flag.as_str()))
        .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
    if let Some(env) = env {
        error.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![
                format!("the value may come from the environment variable {env}").into(),
            ]),
        );
    }
    error
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            workers,
            connections,
            runtime,
            rules,
            secrets,
        } => {
            let (keys, created) = secrets.key_ring_or_create()?;
            if created {
                tracing::warn!(
                    file = %secrets.key_file().display(),
                    "no outbox key was configured: created one and will reuse it; production sets PINFLOW_OUTBOX_KEY_FILE"
                );
            }
            rules.check_hash_strength().map_err(anyhow::Error::msg)?;
            rules
                .hash_params()
                .validate()
                .context("invalid Argon2 settings")?;
            let setup = Setup {
                connections,
                runtime,
                rules,
                keys,
                clock: Arc::new(SystemClock),
                registry: REGISTRY.to_vec(),
                workers,
                jobs_now: JobTrigger::default(),
            };
            app::run(setup, shutdown_signal()).await
        }
        Command::Migrate { connections } => {
            let pool =
                app::prepare_database(&connections.database_url, 2, &CancellationToken::new())
                    .await?;
            let applied = pinflow::store::MIGRATOR.iter().count();
            pool.close().await;
            println!("database is up to date ({applied} migrations)");
            Ok(())
        }
        Command::Topology {
            connections,
            runtime,
        } => {
            app::declare_topology(&connections, &runtime, &descriptions(REGISTRY)).await?;
            println!("topology declared (namespace: {:?})", connections.namespace);
            Ok(())
        }
        Command::Publish {
            file,
            reply,
            timeout,
            connections,
            runtime,
        } => {
            let mut body = Vec::new();
            if file == "-" {
                std::io::stdin()
                    .read_to_end(&mut body)
                    .context("cannot read standard input")?;
            } else {
                body = std::fs::read(&file).with_context(|| format!("cannot read {file}"))?;
            }
            app::declare_topology(&connections, &runtime, &descriptions(REGISTRY)).await?;
            let request = PublishRequest {
                body,
                wait_reply: reply.then_some(timeout),
                confirm_timeout: runtime.confirm_timeout,
            };
            let outcome = publish::publish(&connections, request).await?;
            eprintln!(
                "published {} ({}) to {}",
                outcome.id, outcome.message_type, outcome.exchange
            );
            if let Some(reply) = outcome.reply {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            }
            Ok(())
        }
        Command::Watch {
            show_secrets,
            allow_show_secrets,
            operator,
            connections,
        } => {
            if show_secrets {
                anyhow::ensure!(
                    allow_show_secrets,
                    "--show-secrets is refused: set PINFLOW_ALLOW_SHOW_SECRETS=true on an installation with test data only"
                );
                let pool = pinflow::store::connect(&connections.database_url, 1)
                    .await
                    .context(
                        "cannot reach the database (PINFLOW_DATABASE_URL) to audit --show-secrets",
                    )?;
                let operator = pinflow::ops::dlq::audit::operator(operator.as_deref());
                pinflow::ops::dlq::audit::record(
                    &pool,
                    &operator,
                    "watch",
                    None,
                    &[],
                    "show-secrets",
                    serde_json::json!({}),
                )
                .await?;
                pool.close().await;
            }
            pinflow::ops::watch::watch(&connections, show_secrets, shutdown_signal()).await
        }
        Command::Dlq { command } => {
            pinflow::ops::dlq::commands::run(command, &descriptions(REGISTRY)).await
        }
        Command::Credential {
            command:
                CredentialCommand::Show {
                    tax_code,
                    connections,
                },
        } => {
            let pool = pinflow::store::connect(&connections.database_url, 1)
                .await
                .context("cannot reach the database (PINFLOW_DATABASE_URL)")?;
            let shown = pinflow::ops::credential::show(&pool, &tax_code).await;
            pool.close().await;
            println!("{}", serde_json::to_string_pretty(&shown?)?);
            Ok(())
        }
        Command::Health {
            workers,
            connections,
        } => {
            let all = descriptions(REGISTRY);
            let chosen = pinflow::manifest::choose(&all, &workers).map_err(anyhow::Error::msg)?;
            pinflow::ops::health::check(&connections, &chosen).await?;
            println!("healthy");
            Ok(())
        }
        Command::Bench {
            messages,
            json,
            sweep: true,
            connections,
            runtime,
            rules,
            ..
        } => {
            let mut reports = Vec::new();
            for credentials in messages {
                let report =
                    app::bench::sweep::run(&connections, &runtime, &rules, REGISTRY, credentials)
                        .await?;
                if !json {
                    println!("{report}");
                }
                reports.push(report);
            }
            if json {
                println!("{}", serde_json::json!({ "sweeps": reports }));
            }
            Ok(())
        }
        Command::Bench {
            messages,
            message_type,
            rate,
            alongside,
            alongside_rate,
            alongside_messages,
            processes,
            json,
            sweep: false,
            connections,
            runtime,
            rules,
        } => {
            rules.check_hash_strength().map_err(anyhow::Error::msg)?;
            let alongside = alongside.as_deref().map(|message_type| AlongsideSetup {
                message_type,
                rate: alongside_rate,
                messages: alongside_messages,
            });
            let bench = BenchSetup {
                runtime: &runtime,
                rules: &rules,
                registry: REGISTRY,
                message_type: &message_type,
                messages: 0,
                rate,
                processes: processes.unwrap_or(0),
                alongside,
            };
            let runs = app::bench::run_sizes(&connections, bench, &messages).await?;
            if json {
                println!("{}", serde_json::to_string(&runs)?);
            } else {
                print!("{runs}");
            }
            Ok(())
        }
        Command::Keys { command } => keys(command).await,
        Command::Ready { metrics_addr } => {
            let (ready, answer) = pinflow::ops::health::probe_ready(metrics_addr).await?;
            print!("{answer}");
            anyhow::ensure!(ready, "not ready");
            Ok(())
        }
        Command::Workers => {
            for description in descriptions(REGISTRY) {
                print_description(&description);
            }
            Ok(())
        }
        Command::Keygen { out } => {
            let key = OutboxKey::generate();
            match out {
                None => println!("{}", key.to_base64()),
                Some(path) => write_key_file(&path, &key)?,
            }
            Ok(())
        }
    }
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use pinflow::ops::keys;
    let workers = descriptions(REGISTRY);
    match command {
        KeysCommand::List {
            connections,
            secrets,
        } => {
            let ring = secrets.key_ring()?;
            let usage = keys::usage(&connections, &workers).await?;
            let current = ring.current().key_id();
            for id in ring.ids() {
                let (rows, letters) = usage.get(&id).copied().unwrap_or_default();
                let newest = if id == current {
                    " (newest: new seals)"
                } else {
                    ""
                };
                println!("{id}{newest}: {rows} outbox rows, {letters} dead letters");
            }
            for (id, (rows, letters)) in usage.iter().filter(|(id, _)| ring.find(id).is_none()) {
                println!("{id} (NOT HELD): {rows} outbox rows, {letters} dead letters");
            }
            Ok(())
        }
        KeysCommand::Rotate { secrets } => {
            let id = keys::rotate(&secrets)?;
            println!(
                "added key {id} to {}; restart the workers to seal with it",
                secrets.key_file().display()
            );
            Ok(())
        }
        KeysCommand::Retire {
            key_id,
            connections,
            secrets,
        } => {
            let (rows, letters) = keys::retire(&connections, &secrets, &key_id, &workers).await?;
            println!(
                "re-sealed {rows} outbox rows and {letters} dead letters; key {key_id} removed"
            );
            Ok(())
        }
    }
}

fn print_description(description: &Description) {
    println!("{}", description.name);
    if description.has_queue() {
        println!("  queue pinflow.{}", description.name);
    }
    for binding in description.bindings {
        let exchange = match binding.source {
            Source::Commands => "pinflow.commands",
            Source::Events => "pinflow.events",
        };
        let rpc = if binding.rpc { " (rpc)" } else { "" };
        let causes = binding.causes.join(", ");
        println!("  {exchange} {}{rpc} -> {causes}", binding.message_type);
    }
    for job in description.jobs {
        println!("  job {} every {}", job.name, job.interval_setting);
    }
}

fn write_key_file(path: &std::path::Path, key: &OutboxKey) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(key.to_base64().as_bytes())?;
            eprintln!("wrote a new outbox key to {}", path.display());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("{} exists; keeping the key it holds", path.display());
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// What `pinflow bench` reports, for `--help`.
const BENCH_FIGURES: &str = "\
The phases, in one run on the same broker and machine (a shared machine moves absolute
rates from run to run, so read the ratios):
  1. the Argon2 ceiling, 2. the broker alone running the command's pattern,
  3. untimed, what the command needs first (see below), 4. pinflow, measured.

Every command carries its own W3C traceparent; pinflow continues the trace id into
everything the command causes, so each output is matched to its command. The benchmark
takes the outputs as the systems around pinflow would: it is the delivery gateway (it
consumes the namespace's own notify.* queues, the only queues that may hold a PIN half),
the caller (RPC replies come to its reply queue and are dropped unread) and an event
subscriber (a sink bound to the events exchange only).

Figures (the --json keys in brackets):
  argon2 ceiling [argon2.hashes_per_second]: PIN hashes a second with the configured
      Argon2 parameters on pinflow's own hashing threads (one per core, or
      PINFLOW_ARGON2_THREADS), alone:
      the mean of 3 s before pinflow's phase and 3 s after it [argon2.*_before,
      argon2.*_after]; far apart, the machine's load moved during the run. Also the
      CPU time of one hash [argon2.cpu_seconds_per_hash] and what that makes on
      free cores [argon2.hashes_per_second_free_cores], which other load on a shared
      machine does not lower.
  broker publish-confirm ceiling [broker_publish_rate]: messages a second the broker
      takes with confirms, alone.
  broker ceiling for the pattern [broker_pattern_rate]: commands a second the broker
      alone runs through the type's pattern: consume one, publish what it causes (from
      the worker's description) with confirms, acknowledge, batched like the consumer,
      while a consumer takes every output (no ack), as the gateway does in pinflow's
      run; from the first command taken until the last output arrived. Each output
      goes to the kind of destination it reaches in pinflow's run: a notification to a
      quorum queue of its channel's, an event through a topic exchange to a classic
      queue, a reply to a classic queue. The mean of a
      run before pinflow's phase and one after it [broker_pattern_rate_before,
      broker_pattern_rate_after]; far apart, the machine's load moved during the run.
  pinflow end to end [pinflow_rate]: commands a second from the start of the measured
      phase (full speed: the workers' start; --rate: the first publication) until the
      last output of the last command (with --rate, the rate asked bounds it).
      Every effect is durable in PostgreSQL.
  published [published_rate, offered_rate]: commands a second the benchmark
      published in the measured phase (--rate: check it kept up with the rate asked).
  ratio to the pattern ceiling [ratio_to_pattern_ceiling]: pinflow ÷ broker pattern.
  ratio to the argon2 ceiling [ratio_to_hash_ceiling]: pinflow ÷ hashes a second; the
      figure that matters for pin.request and pin.verify (one Argon2 each). On a
      loaded machine it can exceed 1: pinflow's many threads win more of the shared
      cores than the ceiling's one per core. The steadier view is argon2's share of
      the CPU per command [argon2_cpu_share]: CPU of one hash ÷ CPU per command.
  latency p50 / p99 / max [latency.*_ms]: per command, from its publication until the
      last message it causes arrived (a type that causes nothing, delivery.receipt:
      until its inbox row's transaction began). Exact order statistics of every
      command. At full speed all commands were queued before the workers started, so
      it includes the queueing (latency.includes_queueing); use --rate for the latency
      at a given load.
  broker alone at the same rate [broker_pattern_latency.*_ms, p99_to_broker_p99]:
      with --rate, after pinflow's phase, the broker alone runs the pattern at the same
      rate (each command published when due, then consumed, its outputs published
      with confirms, acknowledged, batched like the consumer) and its latency is
      measured the same way: the floor the broker and the machine set for this
      pattern at this load; then pinflow's p99 ÷ the broker's. None for a type that
      causes nothing.
  outputs counted [outputs, expected_outputs, unexpected_outputs]: by routing key; a
      clean run counts every expected output and nothing unexpected.
  cpu per 1,000 commands [cpu_seconds_per_1000, cpu_seconds]: user+system CPU of what
      ran the workers during the measured phase (/proc/<pid>/stat). In process it is
      the whole process, the benchmark's own publisher and consumers included
      [usage_includes_bench_client]; with --processes, the children's, start-up
      included.
  cpu / 1,000, broker / db / rest [cpu_split.*]: where the whole machine's CPU went
      from the workers' start until the measured phase's end, read from /proc: the
      broker's processes (beam.smp) [broker_per_1000], PostgreSQL's (postgres, exited
      backends included) [database_per_1000] and everything else busy
      [rest_per_1000]: pinflow, the benchmark's client and the rest of the machine;
      then the cores kept busy [busy_cores, of cores]. With --alongside, TYPE's
      commands alone and during the burst are included, divided by the burst's
      commands. A broker or database this machine cannot see (another machine, a VM)
      shows - (null) and counts nowhere. The same, broker alone
      [broker_alone_cpu_split.*]: its run after pinflow's phase, the broker's own
      cost of the pattern, the client in rest. With every core busy, the rate is the
      cores ÷ the CPU per command, so the two lines say which of the three pinflow's
      phase spends more of. With --rate, broker alone at the same rate
      [broker_pattern_cpu_split.*]: the same for its latency run at the same rate
      (above), the publishing of the commands included as in pinflow's phase at a
      rate, which the full-speed lines leave out; null at full speed and for a type
      that causes nothing.
  bound by broker + db CPU [bound_without_pinflow.rate,
      bound_without_pinflow.ratio_to_pattern_ceiling]: the cores ÷ the broker's and
      PostgreSQL's CPU per command above: the most this machine allows at their cost
      were pinflow's own CPU zero, and that ÷ the pattern ceiling. A ratio asked for
      above it cannot be reached here by making pinflow cheaper alone: the broker
      and the database share the cores. Null with --alongside or when either is out
      of sight.
  db WAL per command [database.wal_bytes_per_command]: bytes of WAL the whole
      PostgreSQL server wrote in the same span as the split above, per command: rows,
      index entries and commits, what the database's disk and replicas carry.
  db statements / 1,000 [database.statements.*]: where the server loads
      pg_stat_statements (shared_preload_libraries; the benchmark adds the extension to
      the run's own database), what the run's database ran in that span, per 1,000
      commands: milliseconds running statements [exec_ms_per_1000] (PostgreSQL's CPU
      above also holds parsing, commits, the protocol and its background processes),
      transactions committed [commits_per_1000], and the benchmark's own reads
      [benchmark_ms_per_1000]; then the costliest statements (the JSON has every one
      that ran [ran[]]): share of that time, milliseconds and calls per 1,000
      commands, WAL bytes per command, the text (a trigger's or foreign key's work
      counts in its statement; [benchmark] marks the benchmark's own). Without the
      library: not measured, and why [database.statements_missing].
  peak RSS [peak_rss_kib, peak_rss_total_kib]: VmHWM of the process that ran the
      workers (in process: reset at the phase's start where the kernel allows; the
      whole process); with --processes, the largest child's and all children's.
  left in non-notify queues [leftover_messages]: messages still in a work, retry,
      dead-letter or benchmark queue at the end; none in a clean run.
  namespace removed [cleaned_up]: queues, exchanges and the database are gone.
  scaling [scaling.*]: with several --messages, last ÷ first of the rate, the ratio,
      p50, p99, CPU per 1,000 and peak RSS; a latency or CPU ratio well above 1 is a
      cost that grows with the backlog.

With --alongside TYPE (the --json keys below are under alongside, null without it):
once the workers consume, TYPE is published at --alongside-rate alone, then as many
again while every --type command, the burst, is published at once (both with
confirms; TYPE on a connection of its own, as another upstream system's would be)
[message_type, offered_rate, messages]. The burst is the measured phase: the figures
above are the burst's, its latency includes queueing, and CPU per 1,000 and argon2's
share count from the burst's start until its last output (TYPE's commands of that time
included; peak RSS is the whole phase's). TYPE's applicants come after the burst's,
others in each sub-phase; what TYPE needs first is done for them, untimed.
  alone p50 / p99 / max [alone.*_ms]: TYPE's latency as --rate measures it (from
      publication until its last output arrived) with nothing else published; how
      many completed and the rate published [completed_alone, published_rate_alone].
  during the burst p50 / p99 / max [during.*_ms]: the same, of the TYPE commands
      published before the burst's last output (during.samples of them: make the
      burst last a few seconds for a p99 of many). Those published after it complete
      too [completed_during, published_rate_during] but are left out.
  p99 during ÷ alone [p99_ratio]: the project's goal is at most 2.0 [p99_ratio_goal,
      meets_p99_goal]: while a burst hashes, other types keep flowing and their p99
      latency at most doubles.
  once the burst was taken in p50 / p99 / max [during_hashing.*_ms]: the part of
      the above published after the broker had confirmed every burst command
      [burst_taken_in_seconds, from the burst's start]: the burst only hashing and
      being handled, no longer arriving. p99 then ÷ alone [p99_ratio_hashing] beside
      the goal's figure says how much of the slowdown came while the broker took the
      burst in.
  burst [burst_rate, burst_seconds]: burst commands fully handled a second, from its
      first publication until its last output (the same as pinflow_rate); and that ÷
      the argon2 ceiling [burst_ratio_to_hash_ceiling] (the same as
      ratio_to_hash_ceiling): how much of the hashing capacity the burst got while
      TYPE flowed beside it. While TYPE's commands are being handled, only
      PINFLOW_ARGON2_THREADS_BESIDE_OTHERS hashing threads hash (by default one
      fewer than the ceiling's); once they stop, all of them again.
  broker alone, alone / beside [broker_alone.*_ms, broker_during.*_ms]: after
      pinflow's phase, the broker alone runs TYPE's pattern at the same rate and count,
      timed as --rate times it (no database, no pinflow): first with nothing else
      published, then while as many --type commands as the burst are published at once
      into a quorum queue that nothing consumes and the benchmark hashes beside it on
      PINFLOW_ARGON2_THREADS_BESIDE_OTHERS threads, as the burst would. p99 beside ÷
      alone [broker_p99_ratio] is how far taking the burst in and hashing it move the
      goal's figure with no pinflow on this machine: what p99_ratio has beyond it is
      pinflow's.
  TYPE's outputs [outputs, unexpected_outputs]: both sub-phases, by routing key; a
      clean run counts nothing unexpected.

What each type needs first (from the worker's description, untimed): conversion.submit,
delivery.receipt and phone_pin.request a PIN issued (pin.request); pin.first_access the
PIN issued, its initial PIN read from the two halves in notify.*; pin.verify also
activated (pin.first_access), its PIN read from the reply; phone_pin.verify a PIN issued
and a phone PIN (phone_pin.request), read from its reply. Those secrets stay in memory
only.
With full speed, pin.verify and phone_pin.verify commands (which carry the secret, as
the portal's and the contact center's do) wait in the worker's queue until the
workers start.";

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
