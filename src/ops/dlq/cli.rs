//! `pinflow dlq …`: the operator's commands for dead letters.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::replay::{Outcome, ReplayPolicy, replay};
use super::{DeadLetter, audit, dead_letter_queues, groups, read_all};
use crate::broker::{self, Names};
use crate::config::{Connections, Secrets, parse_duration};

/// Connections and identity shared by every `dlq` command.
#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    pub connections: Connections,
    #[command(flatten)]
    pub secrets: Secrets,
    /// Who is acting, for the audit (default: the OS user).
    #[arg(long)]
    pub operator: Option<String>,
}

/// Which dead letters a listing shows.
#[derive(Args, Default)]
pub struct Filter {
    /// Only this work queue (`issuance`, `pinflow.issuance`) or dead-letter queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this message type.
    #[arg(long = "type")]
    pub message_type: Option<String>,
    /// Only reasons containing this text (case-insensitive).
    #[arg(long)]
    pub error: Option<String>,
    /// Only failures since this instant (RFC 3339) or this long ago (ISO 8601, `PT1H`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
}

/// Which dead letters an operation takes.
#[derive(Args)]
pub struct Selection {
    /// Message ids (as `dlq list` shows them).
    pub ids: Vec<String>,
    /// Every dead letter of a group (as `dlq groups` shows it).
    #[arg(long)]
    pub group: Option<String>,
    /// Every dead letter of a queue (with --type: of that type only).
    #[arg(long)]
    pub queue: Option<String>,
    /// With --queue: only this type.
    #[arg(long = "type", requires = "queue")]
    pub message_type: Option<String>,
    /// Every dead letter of the namespace.
    #[arg(long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// The `dlq` subcommands.
#[derive(Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: when it failed, queue, type, id, attempts, reason.
    List {
        #[command(flatten)]
        filter: Filter,
        /// At most this many lines.
        #[arg(long)]
        limit: Option<usize>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Dead letters grouped by queue, type and reason, with counts and first/last
    /// failure, so one cause is fixed and replayed as one.
    Groups {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// The whole message: envelope, headers (x-death and pinflow's own), and the data
    /// with every secret redacted.
    Show {
        /// The message id.
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Republish dead letters to the queue they failed on (confirmed, then removed from
    /// the dead-letter queue), keeping their ids.
    Replay {
        #[command(flatten)]
        selection: Selection,
        /// Show what would be replayed and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay messages already replayed --max-replays times.
        #[arg(long)]
        force: bool,
        /// Replays allowed per message before --force is needed.
        #[arg(long, env = "PINFLOW_MAX_REPLAYS", default_value_t = 3)]
        max_replays: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Fix a message that failed because of its content: edit its data (in $EDITOR, or
    /// from --data FILE), check it against the schema, replay only the edited copy.
    Edit {
        /// The message id.
        id: String,
        /// Take the new data from this JSON file instead of opening an editor.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Remove dead letters for good.
    Purge {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        common: Common,
    },
    /// Copy every dead letter to a JSON-lines file (removes nothing).
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 instant nor an ISO 8601 duration"))?;
    Ok(Utc::now() - chrono::Duration::from_std(ago).map_err(|e| e.to_string())?)
}

/// Resolves `--queue` to dead-letter queue names.
pub(super) fn dlqs_for(names: &Names, queue: Option<&str>) -> anyhow::Result<Vec<String>> {
    let all = dead_letter_queues(names);
    let Some(wanted) = queue else { return Ok(all) };
    let candidates = [
        wanted.to_owned(),
        Names::dlq(wanted),
        Names::dlq(&names.work_queue(wanted)),
        names
            .work_queue(wanted.trim_start_matches("pinflow."))
            .to_owned()
            + ".dlq",
    ];
    let found: Vec<String> = all
        .iter()
        .filter(|q| candidates.contains(q))
        .cloned()
        .collect();
    if found.is_empty() {
        bail!(
            "no dead-letter queue for `{wanted}`; there are: {}",
            all.join(", ")
        );
    }
    Ok(found)
}

fn matches(letter: &DeadLetter, filter: &Filter) -> bool {
    filter
        .message_type
        .as_ref()
        .is_none_or(|t| &letter.message_type == t)
        && filter
            .error
            .as_ref()
            .is_none_or(|e| letter.reason.to_lowercase().contains(&e.to_lowercase()))
        && filter
            .since
            .is_none_or(|since| letter.failed_at.is_some_and(|t| t >= since))
}

fn line(letter: &DeadLetter) -> String {
    let when = letter.failed_at.map_or("-".to_owned(), |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let reason: String = letter.reason.chars().take(120).collect();
    format!(
        "{when}  {}  {}  {}  attempts={} replays={}  {reason}",
        letter.dlq, letter.message_type, letter.id, letter.attempts, letter.replays
    )
}

fn summary(letter: &DeadLetter) -> Value {
    json!({
        "id": letter.id, "queue": letter.dlq, "work_queue": letter.work_queue, "type": letter.message_type,
        "failed_at": letter.failed_at, "attempts": letter.attempts, "replays": letter.replays,
        "reason": letter.reason, "group": letter.group(),
    })
}

pub(super) async fn open_session(
    common: &Common,
) -> anyhow::Result<(lapin::Connection, lapin::Channel, Names)> {
    let names = Names::new(&common.connections.namespace);
    let connection = broker::connect_named(
        &common.connections.amqp_url,
        &names.connection_name("operator"),
    )
    .await
    .context("cannot reach the broker (PINFLOW_AMQP_URL)")?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    Ok((connection, channel, names))
}

pub(super) async fn close_connection(connection: lapin::Connection) {
    // Closing hands every unacknowledged dead letter back, in its place.
    let _ = connection.close(200, "done").await;
}

pub(super) fn ask(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question}: refusing without --yes when not at a terminal");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Picks the dead letters an operation names; an unknown id or group is an error.
pub(super) fn pick<'a>(
    letters: &'a [DeadLetter],
    selection: &Selection,
) -> anyhow::Result<Vec<&'a DeadLetter>> {
    let chosen = [
        !selection.ids.is_empty(),
        selection.group.is_some(),
        selection.queue.is_some(),
        selection.all,
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        bail!("name the dead letters one way: ids, --group G, --queue Q [--type T], or --all");
    }
    if !selection.ids.is_empty() {
        let picked: Vec<&DeadLetter> = letters
            .iter()
            .filter(|l| selection.ids.contains(&l.id))
            .collect();
        for id in &selection.ids {
            if !picked.iter().any(|l| &l.id == id) {
                bail!("no dead letter with id {id}");
            }
        }
        return Ok(picked);
    }
    if let Some(group) = &selection.group {
        let picked: Vec<&DeadLetter> = letters.iter().filter(|l| &l.group() == group).collect();
        if picked.is_empty() {
            bail!("no group {group} (see `pinflow dlq groups`)");
        }
        return Ok(picked);
    }
    Ok(letters
        .iter()
        .filter(|l| {
            selection
                .message_type
                .as_ref()
                .is_none_or(|t| &l.message_type == t)
        })
        .collect())
}

/// Runs one `dlq` command.
pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List {
            filter,
            limit,
            json,
            common,
        } => {
            let (connection, channel, names) = open_session(&common).await?;
            let queues = dlqs_for(&names, filter.queue.as_deref())?;
            let letters = read_all(&channel, &names, &queues).await?;
            let shown: Vec<&DeadLetter> = letters
                .iter()
                .filter(|l| matches(l, &filter))
                .take(limit.unwrap_or(usize::MAX))
                .collect();
            for letter in &shown {
                println!(
                    "{}",
                    if json {
                        summary(letter).to_string()
                    } else {
                        line(letter)
                    }
                );
            }
            if shown.is_empty() && !json {
                eprintln!(
                    "no dead letters{}",
                    if letters.is_empty() { "" } else { " match" }
                );
            }
            close_connection(connection).await;
            Ok(())
        }
        DlqCommand::Groups { json, common } => {
            let (connection, channel, names) = open_session(&common).await?;
            let letters = read_all(&channel, &names, &dead_letter_queues(&names)).await?;
            for group in groups(&letters) {
                let (first, last) = (
                    group.first.map(|t| t.to_rfc3339()),
                    group.last.map(|t| t.to_rfc3339()),
                );
                if json {
                    println!(
                        "{}",
                        json!({ "group": group.id, "queue": group.dlq, "type": group.message_type, "reason": group.reason, "count": group.count, "first": first, "last": last })
                    );
                } else {
                    println!(
                        "{}  {:>6}  {}  {}  first={} last={}  {}",
                        group.id,
                        group.count,
                        group.dlq,
                        group.message_type,
                        first.unwrap_or_default(),
                        last.unwrap_or_default(),
                        group.reason
                    );
                }
            }
            if letters.is_empty() {
                eprintln!("no dead letters");
            }
            close_connection(connection).await;
            Ok(())
        }
        DlqCommand::Show { id, common } => {
            let (connection, channel, names) = open_session(&common).await?;
            let letters = read_all(&channel, &names, &dead_letter_queues(&names)).await?;
            let letter = letters
                .iter()
                .find(|l| l.id == id)
                .with_context(|| format!("no dead letter with id {id}"))?;
            let properties = &letter.message.delivery.properties;
            let shown = json!({
                "summary": summary(letter),
                "properties": {
                    "content_type": properties.content_type().as_ref().map(|v| v.as_str()),
                    "message_id": properties.message_id().as_ref().map(|v| v.as_str()),
                    "type": properties.kind().as_ref().map(|v| v.as_str()),
                    "correlation_id": properties.correlation_id().as_ref().map(|v| v.as_str()),
                    "reply_to": properties.reply_to().as_ref().map(|v| v.as_str()),
                },
                "headers": letter.headers_json(),
                "body": letter.redacted_body(),
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
            close_connection(connection).await;
            Ok(())
        }
        DlqCommand::Replay {
            selection,
            dry_run,
            force,
            max_replays,
            common,
        } => super::replay::run_replay(common, selection, dry_run, force, max_replays).await,
        DlqCommand::Edit {
            id,
            data,
            yes,
            common,
        } => super::replay::run_edit(common, id, data, yes).await,
        DlqCommand::Purge { selection, common } => {
            let (connection, channel, names) = open_session(&common).await?;
            let queues = dlqs_for(&names, selection.queue.as_deref())?;
            let letters = read_all(&channel, &names, &queues).await?;
            let picked = pick(&letters, &selection)?;
            if picked.is_empty()
                || !ask(
                    &format!("purge {} dead letters for good?", picked.len()),
                    selection.yes,
                )?
            {
                eprintln!("nothing purged");
                close_connection(connection).await;
                return Ok(());
            }
            let pool = crate::store::connect(&common.connections.database_url, 1).await?;
            let ids: Vec<String> = picked.iter().map(|l| l.id.clone()).collect();
            for letter in &picked {
                channel
                    .basic_ack(
                        letter.tag,
                        lapin::options::BasicAckOptions { multiple: false },
                    )
                    .await?;
            }
            let operator = audit::operator(common.operator.as_deref());
            audit::record(
                &pool,
                &operator,
                "purge",
                selection.queue.as_deref(),
                &ids,
                "purged",
                json!({ "count": ids.len() }),
            )
            .await?;
            eprintln!("purged {} dead letters", ids.len());
            close_connection(connection).await;
            pool.close().await;
            Ok(())
        }
        DlqCommand::Export { out, common } => {
            let (connection, channel, names) = open_session(&common).await?;
            let letters = read_all(&channel, &names, &dead_letter_queues(&names)).await?;
            let mut file = std::fs::File::create(&out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            for letter in &letters {
                let mut row = summary(letter);
                row["headers"] = letter.headers_json();
                row["body"] = letter.redacted_body();
                writeln!(file, "{row}")?;
            }
            eprintln!(
                "exported {} dead letters to {}",
                letters.len(),
                out.display()
            );
            close_connection(connection).await;
            Ok(())
        }
    }
}

/// Prints a replay outcome line.
pub(super) fn report(letter: &DeadLetter, outcome: &Outcome) {
    match outcome {
        Outcome::Replayed => eprintln!("replayed {} ({})", letter.id, letter.message_type),
        Outcome::Refused(reason) => eprintln!("not replayed {}: {reason}", letter.id),
    }
}

pub(super) async fn replay_letters(
    channel: &lapin::Channel,
    names: &Names,
    letters: &[&DeadLetter],
    policy: &ReplayPolicy<'_>,
) -> anyhow::Result<(Vec<String>, Vec<(String, String)>)> {
    let mut replayed = Vec::new();
    let mut refused = Vec::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    for (n, letter) in letters.iter().enumerate() {
        if futures_util::FutureExt::now_or_never(&mut interrupted).is_some() {
            eprintln!(
                "interrupted: {} of {} replayed; the rest stay in the dead-letter queue",
                replayed.len(),
                letters.len()
            );
            break;
        }
        let outcome = replay(channel, names, letter, None, policy).await?;
        match &outcome {
            Outcome::Replayed => replayed.push(letter.id.clone()),
            Outcome::Refused(reason) => {
                report(letter, &outcome);
                refused.push((letter.id.clone(), reason.clone()));
            }
        }
        if (n + 1) % 100 == 0 {
            eprintln!("replayed {}/{}", n + 1, letters.len());
        }
    }
    Ok((replayed, refused))
}
