//! Publishing at commit: a consumer publishes what its batch caused as soon as the
//! batch commits, in order, on its own channel, instead of waking the relay to read
//! the rows back. The rows are written held from the relay (for at most twice the
//! confirm timeout; see `AtCommit::hold`), and the settler deletes each once the broker confirms
//! it, or hands it to the relay at once when the broker refuses or returns it or the
//! channel goes, so returns and retries keep the relay's rules. The rows name the
//! process, by an advisory lock it holds while it lives (see `Holder`): one that stops
//! between the commit and the settling leaves its rows to the relay, which takes them
//! as soon as that lock is gone (and in any case when the hold ends), and publishes
//! them again: at least once, with the same ids, as after a relay crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable as _};
use chrono::Utc;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::{Channel, PublisherConfirm};
use rand::Rng as _;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::deps::Deps;
use super::relay::{exchange, properties};
use crate::broker::publish::{self, BatchConfirms, Outbound};
use crate::config::Runtime;
use crate::contract::Outgoing;
use crate::contract::outgoing::with_secret;
use crate::contract::trace::TraceContext;
use crate::error::chain;
use crate::store::outbox::{self, Hold};
use crate::telemetry::metrics;

/// Batches whose confirms the settler may await at once before a consumer waits to
/// hand it another.
const IN_FLIGHT: usize = 256;

/// A consumer's way to the settler; off (everything left to the relay) by default.
#[derive(Clone, Default)]
pub struct AtCommit(Option<On>);

#[derive(Clone)]
struct On {
    settler: mpsc::Sender<InFlight>,
    holder: i32,
}

impl AtCommit {
    /// On for the process that holds `holder`'s lock, with the settler that is to
    /// take what the consumers publish (see `settle`).
    pub fn on(holder: &Holder) -> (AtCommit, mpsc::Receiver<InFlight>) {
        let (settler, receiver) = mpsc::channel(IN_FLIGHT);
        let on = On {
            settler,
            holder: holder.key,
        };
        (AtCommit(Some(on)), receiver)
    }

    /// How a batch's rows are held from the relay: by this process, for at most twice
    /// the confirm timeout; `None` when off.
    pub fn hold(&self, runtime: &Runtime) -> Option<Hold> {
        let on = self.0.as_ref()?;
        let until = Utc::now() + chrono::Duration::from_std(runtime.confirm_timeout * 2).ok()?;
        Some(Hold {
            by: on.holder,
            until,
        })
    }
}

/// The advisory lock (`outbox::HOLDERS`, key) this process holds while it lives, on a
/// connection of its own, so the relays know its held rows are in hand.
pub struct Holder {
    key: i32,
    conn: Option<PgConnection>,
}

impl Holder {
    /// Takes a lock no other process holds.
    pub async fn take(pool: &PgPool) -> Result<Holder, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        loop {
            let key = rand::thread_rng().gen_range(1..i32::MAX);
            if lock(&mut conn, key).await? {
                return Ok(Holder {
                    key,
                    conn: Some(conn),
                });
            }
        }
    }

    /// Keeps the lock until `cancel` fires: checks its connection every second, and
    /// takes the lock again on a new one when it is lost (the relays may meanwhile
    /// have taken this process's held rows: they go out twice, with the same ids).
    pub async fn keep(mut self, pool: PgPool, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let held = match self.conn.as_mut() {
                Some(conn) => conn.ping().await.is_ok(),
                None => false,
            };
            if held {
                continue;
            }
            self.conn = None;
            let again = async {
                let mut conn = pool.acquire().await?.detach();
                let locked = lock(&mut conn, self.key).await?;
                Ok::<_, sqlx::Error>(locked.then_some(conn))
            };
            match again.await {
                Ok(Some(conn)) => {
                    tracing::info!("publishing at commit: this process's lock taken again");
                    self.conn = Some(conn);
                }
                Ok(None) => {
                    tracing::warn!("publishing at commit: this process's lock is held elsewhere")
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "publishing at commit: this process's lock is lost; trying again")
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

async fn lock(conn: &mut PgConnection, key: i32) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select pg_try_advisory_lock($1, $2)")
        .bind(outbox::HOLDERS)
        .bind(key)
        .fetch_one(conn)
        .await
}

/// What a batch committed for publishing at once: its outbox rows, in order, and
/// whether it left any row to the relay.
pub struct Committed {
    rows: Vec<Row>,
    for_relay: bool,
}

struct Row {
    id: i64,
    message: Outgoing,
    trace: TraceContext,
}

impl Committed {
    /// Whatever the batch wrote is the relay's.
    pub fn for_relay() -> Committed {
        Committed {
            rows: Vec::new(),
            for_relay: true,
        }
    }

    /// The batch's rows are held for its process to publish (added with `extend`).
    pub fn held() -> Committed {
        Committed {
            rows: Vec::new(),
            for_relay: false,
        }
    }

    /// Whether the relay is to look for what the batch wrote.
    pub fn for_the_relay(&self) -> bool {
        self.for_relay
    }

    /// Adds the rows `ids` (in order) written for `messages`, with their trace.
    pub fn extend(
        &mut self,
        ids: &mut impl Iterator<Item = i64>,
        messages: Vec<Outgoing>,
        trace: &TraceContext,
    ) {
        for message in messages {
            let Some(id) = ids.next() else { return };
            self.rows.push(Row {
                id,
                message,
                trace: trace.clone(),
            });
        }
    }

    /// Whether there is nothing to publish.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// A published batch: per row, its id, its message id, where it went and whether it
/// was published; the confirms of those published, in order.
pub struct InFlight {
    rows: Vec<(i64, String, &'static str, bool)>,
    confirms: Vec<PublisherConfirm>,
    started: Instant,
}

/// Publishes a committed batch's rows in order on `channel` and hands their confirms
/// to the settler. A row that cannot be published is handed to the relay by the
/// settler; a broken channel then ends the consumer's session as usual.
pub async fn publish(deps: &Deps, channel: &Channel, committed: Committed) {
    let Some(On { settler, .. }) = &deps.at_commit.0 else {
        return;
    };
    let started = Instant::now();
    let mut rows = Vec::with_capacity(committed.rows.len());
    let mut outbound = Vec::with_capacity(committed.rows.len());
    for Row {
        id,
        mut message,
        trace,
    } in committed.rows
    {
        let kind = message.message_type().to_owned();
        let properties = properties(
            &message.message_id,
            &kind,
            message.correlation_id.as_deref(),
            &trace.parent,
            trace.state.as_deref(),
        );
        let body = match &message.secret {
            None => serde_json::to_vec(&message.body),
            Some(secret) => serde_json::to_vec(&with_secret(
                std::mem::take(&mut message.body),
                secret.field,
                secret.value.as_str(),
            )),
        };
        // A body that does not serialize (none does) is the relay's to report.
        let ready = body.is_ok();
        if let Ok(body) = body {
            outbound.push(Outbound {
                exchange: exchange(&deps.names, &message.destination),
                routing_key: message.routing_key,
                body,
                properties,
                mandatory: true,
            });
        }
        rows.push((id, message.message_id, message.destination.as_str(), ready));
    }
    let mut publications = publish::start_all(channel, outbound).await.into_iter();
    let mut confirms = Vec::with_capacity(rows.len());
    for (_, _, _, ready) in &mut rows {
        // Only the rows ready were started, in order.
        if *ready {
            match publications.next() {
                Some(Ok(confirm)) => confirms.push(confirm),
                _ => *ready = false,
            }
        }
    }
    // The settler only stops after the consumers, so it is there to take this.
    let in_flight = InFlight {
        rows,
        confirms,
        started,
    };
    let _ = settler.send(in_flight).await;
}

/// What became of a published batch.
struct Outcome {
    sent: Vec<i64>,
    sent_ids: Vec<String>,
    released: Vec<i64>,
}

/// Awaits a batch's confirms (all within `limit`): a row is sent when the broker
/// acknowledged it and did not return it.
async fn confirmed(batch: InFlight, limit: Duration) -> Outcome {
    let BatchConfirms { each, returned } = publish::confirmed_all(batch.confirms, limit).await;
    let took = batch.started.elapsed();
    let mut acks = each.into_iter();
    let mut outcome = Outcome {
        sent: Vec::with_capacity(batch.rows.len()),
        sent_ids: Vec::with_capacity(batch.rows.len()),
        released: Vec::new(),
    };
    let mut published = Vec::with_capacity(batch.rows.len());
    for (id, message_id, destination, ready) in batch.rows {
        let acked = ready && matches!(acks.next(), Some(Ok(())));
        if acked && !returned.contains(&message_id) {
            outcome.sent.push(id);
            outcome.sent_ids.push(message_id);
            published.push(destination);
        } else {
            outcome.released.push(id);
        }
    }
    metrics::relay_round(published, 0, took);
    outcome
}

/// How often at most the settler writes. Under a steady flow of small batches, those
/// confirmed within `GATHER` of its last write wait for the rest of that time and go
/// in its next write together, instead of one statement each. Their messages are out
/// already: the write only deletes their rows and marks their notifications sent, so
/// the wait costs nothing a caller sees. A batch confirmed after a quiet spell is
/// written at once.
const GATHER: Duration = Duration::from_millis(10);

/// Runs the settler until `cancel` fires and what was handed to it before is settled:
/// awaits each batch's confirms, then deletes the confirmed rows and hands the others
/// to the relay, for the batches confirmed by then in one statement, at most once each
/// `GATHER`. A batch with a row for the relay is written at once.
pub async fn settle(
    deps: Arc<Deps>,
    mut batches: mpsc::Receiver<InFlight>,
    cancel: CancellationToken,
) {
    let limit = deps.runtime.confirm_timeout;
    let mut confirming = FuturesUnordered::new();
    let mut closing = false;
    let mut open = true;
    let mut done: Vec<Outcome> = Vec::new();
    let mut next_write = tokio::time::Instant::now();
    while open || !confirming.is_empty() || !done.is_empty() {
        let due = tokio::select! {
            () = cancel.cancelled(), if !closing => {
                // What was sent before still comes out of `recv`, then `None`.
                closing = true;
                batches.close();
                false
            }
            batch = batches.recv(), if open => {
                match batch {
                    Some(batch) => confirming.push(confirmed(batch, limit)),
                    None => open = false,
                }
                false
            }
            Some(first) = confirming.next() => {
                done.push(first);
                while let Some(Some(more)) = confirming.next().now_or_never() {
                    done.push(more);
                }
                let for_relay = done.iter().any(|outcome| !outcome.released.is_empty());
                for_relay || tokio::time::Instant::now() >= next_write
            }
            () = tokio::time::sleep_until(next_write), if !done.is_empty() => true,
        };
        if due {
            write(&deps, std::mem::take(&mut done)).await;
            next_write = tokio::time::Instant::now() + GATHER;
        }
    }
}

/// Writes what became of the batches in one statement, trying again for as long as
/// their rows are held; the relay is woken for any it is to take.
async fn write(deps: &Deps, done: Vec<Outcome>) {
    let mut all = Outcome {
        sent: Vec::new(),
        sent_ids: Vec::new(),
        released: Vec::new(),
    };
    for mut outcome in done {
        all.sent.append(&mut outcome.sent);
        all.sent_ids.append(&mut outcome.sent_ids);
        all.released.append(&mut outcome.released);
    }
    if !all.sent.is_empty() {
        crate::failpoint::hit("at-commit-after-publish");
    }
    let statement = || async {
        let mut conn = deps.pool.acquire().await?;
        outbox::settle(
            &mut conn,
            &all.sent,
            &all.sent_ids,
            &all.released,
            Utc::now(),
        )
        .await
    };
    let written = statement
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(1))
                .without_max_times()
                .with_total_delay(Some(deps.runtime.confirm_timeout)),
        )
        .sleep(tokio::time::sleep)
        .await;
    if let Err(e) = written {
        tracing::warn!(error = %chain(&e), rows = all.sent.len() + all.released.len(), "published rows not settled; the relay takes them when their hold ends");
    }
    if !all.released.is_empty() {
        deps.relay_wake.notify_one();
    }
}
