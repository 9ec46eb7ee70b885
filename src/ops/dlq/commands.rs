//! Running the dead-letter commands: list, groups, show, purge and export here; replay
//! and edit in their own modules.

use std::io::Write as _;

use anyhow::Context as _;
use serde_json::json;

use super::cli::DlqCommand;
use super::session::{ask, close_connection, dlqs_for, line, matches, open_session, pick, summary};
use super::{DeadLetter, audit, dead_letter_queues, groups, read_all};
use crate::manifest::Description;

/// Runs one `dlq` command.
/// `workers` are the registered workers, whose dead-letter queues are read.
pub async fn run(command: DlqCommand, workers: &[Description]) -> anyhow::Result<()> {
    match command {
        DlqCommand::List {
            filter,
            limit,
            json,
            common,
        } => {
            let (connection, channel, names) = open_session(&common).await?;
            let queues = dlqs_for(&names, workers, filter.queue.as_deref())?;
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
            let letters = read_all(&channel, &names, &dead_letter_queues(&names, workers)).await?;
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
            let letters = read_all(&channel, &names, &dead_letter_queues(&names, workers)).await?;
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
        } => {
            super::replay::run_replay(common, selection, dry_run, force, max_replays, workers).await
        }
        DlqCommand::Edit {
            id,
            data,
            yes,
            common,
        } => super::edit::run_edit(common, id, data, yes, workers).await,
        DlqCommand::Purge { selection, common } => {
            let (connection, channel, names) = open_session(&common).await?;
            let queues = dlqs_for(&names, workers, selection.queue.as_deref())?;
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
            let letters = read_all(&channel, &names, &dead_letter_queues(&names, workers)).await?;
            // Personal data: owner-only.
            let mut file = {
                use std::os::unix::fs::OpenOptionsExt as _;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&out)
            }
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
