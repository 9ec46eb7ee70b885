//! Putting a dead letter back: republished with confirms to the queue it failed on
//! (commands no worker bound go back to `pinflow.commands`), keeping its `id` so a
//! replay of something that had in fact succeeded has no second effect, with a replay
//! counter; removed from the dead-letter queue only after the broker confirmed the
//! copy.

use std::time::Duration;

use lapin::Channel;
use lapin::options::BasicAckOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use super::{DeadLetter, REPLAYS};
use crate::broker::Names;
use crate::broker::dead_letter::{ATTEMPTS, ERROR, FAILED_AT};
use crate::broker::publish::{Confirmed, PublishError, publish_confirmed};
use crate::seal::KeyRing;
use crate::sealing::{self, Place};

/// What a replay may do.
pub struct ReplayPolicy<'a> {
    /// Replays allowed before `--force` is needed (stops replay loops).
    pub max_replays: u32,
    /// Replay even past `max_replays`.
    pub force: bool,
    /// Opens secrets sealed in dead-letter copies.
    pub keys: Option<&'a KeyRing>,
    /// Longest wait for the broker's confirm.
    pub confirm_timeout: Duration,
}

/// What became of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Republished, confirmed, and removed from the dead-letter queue.
    Replayed,
    /// Left where it was, for this reason.
    Refused(String),
}

/// Why the replay could not go on at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("publish failed")]
    Publish(#[from] PublishError),
}

/// Replays one dead letter, with `body` in place of its own when given (an edit).
pub async fn replay(
    channel: &Channel,
    names: &Names,
    letter: &DeadLetter,
    body: Option<Vec<u8>>,
    policy: &ReplayPolicy<'_>,
) -> Result<Outcome, ReplayError> {
    if letter.replays >= policy.max_replays && !policy.force {
        return Ok(Outcome::Refused(format!(
            "replayed {} times already; use --force to replay it again",
            letter.replays
        )));
    }
    let body = match body {
        Some(body) => body,
        None => match unseal(letter, policy.keys) {
            Ok(body) => body,
            Err(reason) => return Ok(Outcome::Refused(reason)),
        },
    };
    let properties = letter.message.delivery.properties.clone();
    let mut headers = properties.headers().clone().unwrap_or_default();
    let kept: FieldTable = {
        let mut table = FieldTable::default();
        for (key, value) in headers.inner() {
            if ![
                ERROR,
                FAILED_AT,
                ATTEMPTS,
                "x-death",
                "x-first-death-exchange",
                "x-first-death-queue",
                "x-first-death-reason",
            ]
            .contains(&key.as_str())
            {
                table.insert(key.clone(), value.clone());
            }
        }
        table
    };
    headers = kept;
    headers.insert(
        ShortString::from(REPLAYS),
        AMQPValue::LongLongInt(i64::from(letter.replays) + 1),
    );
    let properties = without_expiration(properties.with_headers(headers));
    let (exchange, routing_key) = match &letter.work_queue {
        Some(queue) => (String::new(), queue.clone()),
        None => (names.commands(), letter.routing_key.clone()),
    };
    match publish_confirmed(
        channel,
        &exchange,
        &routing_key,
        &body,
        properties,
        policy.confirm_timeout,
    )
    .await?
    {
        Confirmed::Routed => {
            channel
                .basic_ack(letter.tag, BasicAckOptions { multiple: false })
                .await?;
            Ok(Outcome::Replayed)
        }
        Confirmed::Returned(_) => Ok(Outcome::Refused(format!(
            "target queue {routing_key} no longer exists"
        ))),
    }
}

/// A retried message carried a per-message TTL from its delay queue; a replay must
/// not expire on the way.
fn without_expiration(properties: lapin::BasicProperties) -> lapin::BasicProperties {
    let mut fresh = lapin::BasicProperties::default();
    if let Some(v) = properties.content_type() {
        fresh = fresh.with_content_type(v.clone());
    }
    if let Some(v) = properties.message_id() {
        fresh = fresh.with_message_id(v.clone());
    }
    if let Some(v) = properties.kind() {
        fresh = fresh.with_type(v.clone());
    }
    if let Some(v) = properties.correlation_id() {
        fresh = fresh.with_correlation_id(v.clone());
    }
    if let Some(v) = properties.reply_to() {
        fresh = fresh.with_reply_to(v.clone());
    }
    if let Some(v) = properties.headers() {
        fresh = fresh.with_headers(v.clone());
    }
    if let Some(v) = properties.timestamp() {
        fresh = fresh.with_timestamp(*v);
    }
    fresh.with_delivery_mode(2)
}

/// The letter's body with every sealed secret opened again, in memory only.
pub(super) fn unseal(letter: &DeadLetter, keys: Option<&KeyRing>) -> Result<Vec<u8>, String> {
    let body = &letter.message.delivery.data;
    if sealing::sealed_key_ids(body).is_empty() {
        return Ok(body.to_vec());
    }
    let keys = keys.ok_or("it holds a sealed secret: set the outbox keys to replay it")?;
    let message_id = letter
        .message
        .delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let place = Place {
        message_id: &message_id,
        queue: &letter.dlq,
    };
    sealing::unseal_body(body, keys, &place).map_err(|e| e.to_string())
}

/// `pinflow dlq replay`.
pub async fn run_replay(
    common: super::cli::Common,
    selection: super::cli::Selection,
    dry_run: bool,
    force: bool,
    max_replays: u32,
    workers: &[crate::manifest::Description],
) -> anyhow::Result<()> {
    use super::session::{ask, close_connection, dlqs_for, open_session, pick};
    let keys = common.secrets.key_ring().ok();
    let (connection, channel, names) = open_session(&common).await?;
    let queues = dlqs_for(&names, workers, selection.queue.as_deref())?;
    let letters = super::read_all(&channel, &names, &queues).await?;
    let picked = pick(&letters, &selection)?;
    if picked.is_empty() {
        eprintln!("no dead letters to replay");
        close_connection(connection).await;
        return Ok(());
    }
    if dry_run {
        for letter in &picked {
            let target = letter
                .work_queue
                .clone()
                .unwrap_or_else(|| names.commands());
            println!(
                "would replay {} ({}) to {target}",
                letter.id, letter.message_type
            );
        }
        close_connection(connection).await;
        return Ok(());
    }
    if !ask(
        &format!("replay {} dead letters?", picked.len()),
        selection.yes,
    )? {
        eprintln!("nothing replayed");
        close_connection(connection).await;
        return Ok(());
    }
    let pool = crate::store::connect(&common.connections.database_url, 1).await?;
    let policy = ReplayPolicy {
        max_replays,
        force,
        keys: keys.as_ref(),
        confirm_timeout: Duration::from_secs(10),
    };
    let result = replay_letters(&channel, &names, &picked, &policy).await;
    let operator = super::audit::operator(common.operator.as_deref());
    let (replayed, refused) = match &result {
        Ok((replayed, refused)) => (replayed.clone(), refused.clone()),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let outcome = match &result {
        Ok(_) if refused.is_empty() => "replayed".to_owned(),
        Ok(_) => format!("replayed {}, refused {}", replayed.len(), refused.len()),
        Err(e) => format!("failed: {e}"),
    };
    let refused_json: Vec<serde_json::Value> = refused
        .iter()
        .map(|(id, why)| serde_json::json!({ "id": id, "reason": why }))
        .collect();
    super::audit::record(
        &pool,
        &operator,
        "replay",
        selection.queue.as_deref(),
        &replayed,
        &outcome,
        serde_json::json!({ "refused": refused_json }),
    )
    .await?;
    eprintln!(
        "replayed {} of {} dead letters",
        replayed.len(),
        picked.len()
    );
    close_connection(connection).await;
    pool.close().await;
    result.map(|_| ())
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

/// Prints a replay outcome line.
pub(super) fn report(letter: &DeadLetter, outcome: &Outcome) {
    match outcome {
        Outcome::Replayed => eprintln!("replayed {} ({})", letter.id, letter.message_type),
        Outcome::Refused(reason) => eprintln!("not replayed {}: {reason}", letter.id),
    }
}
