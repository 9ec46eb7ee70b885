//! What every dead-letter command shares: the broker session, choosing queues and
//! messages, one-line summaries, and asking before acting.

use std::io::{IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::DeadLetter;
use super::cli::{Common, Filter, Selection};
use super::dead_letter_queues;
use crate::broker::{self, Names};
use crate::manifest::Description;

/// Resolves `--queue` to dead-letter queue names.
pub(super) fn dlqs_for(
    names: &Names,
    workers: &[Description],
    queue: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let all = dead_letter_queues(names, workers);
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

pub(super) fn matches(letter: &DeadLetter, filter: &Filter) -> bool {
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

pub(super) fn line(letter: &DeadLetter) -> String {
    let when = letter.failed_at.map_or("-".to_owned(), |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let reason: String = letter.reason.chars().take(120).collect();
    format!(
        "{when}  {}  {}  {}  attempts={} replays={}  {reason}",
        letter.dlq, letter.message_type, letter.id, letter.attempts, letter.replays
    )
}

pub(super) fn summary(letter: &DeadLetter) -> Value {
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
    let _ = connection.close(200, "done".into()).await;
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
