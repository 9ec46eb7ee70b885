//! The outbox relay: publishes committed outbox rows in order with publisher confirms
//! (events and notifications `mandatory`), deletes each row (and with it any sealed
//! secret) once confirmed, marks a notification sent in the ledger, and puts a row
//! back for later when the broker refuses or returns it. One relay per database
//! publishes at a time (see `Leadership`), so messages of one transaction go out in
//! their order even with several pinflow processes. A round's confirms are awaited
//! while the next round is read and published (see `drain`). With publishing at commit
//! (see `at_commit`), the workers publish what they commit themselves, and the relay
//! gets what they could not publish, the timed jobs' rows, and what a stopped process
//! left.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapin::options::ConfirmSelectOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};
use sqlx::postgres::PgListener;
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use super::deps::Deps;
use super::supervise::Sessions;
use crate::broker::Names;
use crate::broker::publish::{self, BatchConfirms, Outbound, PublishError, set_str};
use crate::contract::outgoing::with_secret;
use crate::contract::trace::TraceParent;
use crate::contract::{CONTENT_TYPE, Destination};
use crate::error::chain;
use crate::store::notifications;
use crate::store::outbox::{self, Pending};
use crate::telemetry::metrics;

/// The advisory-lock key that makes one relay at a time publish for a database.
pub const RELAY_LOCK: i64 = 0x7069_6e66_6c6f_7701;

/// The relay's right to publish for its database: a session-level advisory lock, held
/// on a connection of its own (outside the pool) for as long as the relay lives, so
/// that its rounds may overlap. When the process stops or the connection is lost,
/// PostgreSQL releases the lock and another process's relay takes it at its next
/// round. A relay that does not lead pokes the leader (`NOTIFY`) instead, so rows its
/// own workers committed do not wait for the leader's next poll.
#[derive(Default)]
pub struct Leadership {
    /// The connection the lock is held (or tried) on.
    conn: Option<PgConnection>,
    /// Whether the lock is held on it.
    held: bool,
}

impl Leadership {
    /// Whether this relay leads now: the connection that holds the lock still answers,
    /// or the lock was free and is now taken. A relay that does not lead pokes the one
    /// that does.
    async fn hold(&mut self, pool: &PgPool, wake: &str) -> Result<bool, sqlx::Error> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                self.held = false;
                self.conn.insert(pool.acquire().await?.detach())
            }
        };
        let answer = if self.held {
            conn.ping().await.map(|()| true)
        } else {
            match sqlx::query_scalar("select pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .fetch_one(&mut *conn)
                .await
            {
                Ok(false) => sqlx::query("select pg_notify($1, $2)")
                    .bind(wake)
                    .bind(this_process())
                    .execute(&mut *conn)
                    .await
                    .map(|_| false),
                other => other,
            }
        };
        match answer {
            Ok(held) => {
                self.held = held;
                Ok(held)
            }
            Err(e) => {
                // Whatever the lock's state, this connection is done with: dropping it
                // closes it, which releases the lock if it was held.
                self.conn = None;
                self.held = false;
                Err(e)
            }
        }
    }
}

/// Why a relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("publish failed")]
    Publish(#[from] PublishError),
    #[error("the broker connection is gone")]
    Disconnected,
}

/// Runs the relay until `cancel` fires, then publishes what is left (bounded by the
/// shutdown timeout) and returns.
pub async fn run(deps: Arc<Deps>, cancel: CancellationToken) {
    let part = deps.health.register("relay");
    let mut sessions = Sessions::new(&deps, "relay", &part, &cancel);
    while let Some(connection) = sessions.connect().await {
        let reconnected = sessions.reconnected();
        let result = session(&deps, &connection, &cancel, &part, reconnected).await;
        if !sessions.ended(&connection, result).await {
            break;
        }
    }
    tracing::info!("outbox relay stopped");
}

async fn session(
    deps: &Deps,
    connection: &Connection,
    cancel: &CancellationToken,
    part: &super::health::Part,
    reconnected: bool,
) -> Result<(), RelayError> {
    let channel = connection.create_channel().await?;
    deps.declare_topology(&channel, reconnected).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut leadership = Leadership::default();
    let mut pokes = listen(deps).await;
    part.set(true);
    loop {
        // A quiet relay touches the channel only when it has rows: notice a lost
        // connection anyway, so readiness and the reconnect follow the broker.
        if !channel.status().connected() {
            return Err(RelayError::Disconnected);
        }
        drain_leading(deps, &channel, &mut leadership).await?;
        tokio::select! {
            () = cancel.cancelled() => break,
            () = deps.relay_wake.notified() => {}
            () = poked(&mut pokes) => {}
            () = tokio::time::sleep(deps.runtime.relay_interval) => {}
        }
    }
    // Flush what the workers committed before they stopped.
    let flush = drain_leading(deps, &channel, &mut leadership);
    match tokio::time::timeout(deps.runtime.shutdown_timeout, flush).await {
        Ok(result) => {
            result?;
        }
        Err(_) => tracing::warn!(
            "outbox relay did not finish flushing before the shutdown timeout; the rest goes out at the next start"
        ),
    }
    channel.close(200, "pinflow stopping".into()).await?;
    Ok(())
}

/// The `NOTIFY` channel on which relays that do not lead poke the one that does.
fn wake_channel(deps: &Deps) -> String {
    deps.names.connection_name("outbox")
}

/// Listens for pokes from relays that do not lead; `None` (polling only, every
/// `relay_interval`) when the database refuses.
async fn listen(deps: &Deps) -> Option<PgListener> {
    let listening = async {
        let mut listener = PgListener::connect_with(&deps.pool).await?;
        listener.listen(&wake_channel(deps)).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match listening.await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!(error = %chain(&e), "outbox relay cannot listen for other processes' rows; polling only");
            None
        }
    }
}

/// Returns when another process's relay pokes this one; never when not listening.
/// A relay's own pokes (it listens too, and may not lead) wake nothing, so a relay
/// that does not lead never wakes itself into a loop.
async fn poked(listener: &mut Option<PgListener>) {
    let Some(listening) = listener else {
        return std::future::pending().await;
    };
    loop {
        match listening.recv().await {
            Ok(poke) if poke.payload() == this_process() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "outbox relay stopped listening for other processes' rows; polling only");
                *listener = None;
                return;
            }
        }
    }
}

/// This process's name on the poke channel.
fn this_process() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// Publishes everything due, if no other relay leads for this database (then nothing
/// is published and 0 returned). Returns the number of rows handled.
pub async fn drain(deps: &Deps, channel: &Channel) -> Result<usize, RelayError> {
    drain_leading(deps, channel, &mut Leadership::default()).await
}

/// Publishes rounds until one finds nothing due, while `leadership` holds. Each round
/// is published while the one before it waits for its confirms (and deletes its
/// rows), so the broker's confirm latency overlaps the next round's reading and
/// publishing; the next round skips the rows the one confirming still holds locked.
/// At most two rounds are in flight.
async fn drain_leading(
    deps: &Deps,
    channel: &Channel,
    leadership: &mut Leadership,
) -> Result<usize, RelayError> {
    if !leadership.hold(&deps.pool, &wake_channel(deps)).await? {
        return Ok(0);
    }
    let mut total = 0;
    let mut confirming: Option<Round> = None;
    loop {
        let finishing = async {
            match confirming.take() {
                Some(round) => round.finish(deps.runtime.confirm_timeout).await,
                None => Ok(0),
            }
        };
        let (next, finished) = tokio::join!(Round::publish(deps, channel), finishing);
        total += finished?;
        let next = next?;
        if next.rows.is_empty() {
            return Ok(total);
        }
        confirming = Some(next);
    }
}

/// A round of rows read (locked in its transaction) and published, its confirms
/// still to come.
struct Round {
    tx: Transaction<'static, Postgres>,
    rows: Vec<Pending>,
    /// Per row, whether it was published, or why it could not be.
    built: Vec<Result<(), String>>,
    /// The confirms of the rows published, in order.
    confirms: Vec<PublisherConfirm>,
    started: std::time::Instant,
}

impl Round {
    /// Reads the due rows in order and publishes them all.
    async fn publish(deps: &Deps, channel: &Channel) -> Result<Round, RelayError> {
        let mut tx = deps.pool.begin().await?;
        let mut rows = outbox::due(&mut tx, Utc::now(), deps.runtime.relay_batch).await?;
        let started = std::time::Instant::now();
        let mut outbound = Vec::with_capacity(rows.len());
        let mut built = Vec::with_capacity(rows.len());
        for row in &mut rows {
            // What is left of the row after this is what `finish` needs; the body
            // is serialized once, not copied first.
            let body = std::mem::take(&mut row.body);
            built.push(build(deps, row, body).map(|(exchange, body, properties)| {
                outbound.push(Outbound {
                    exchange,
                    routing_key: row.routing_key.clone(),
                    body,
                    properties,
                    mandatory: mandatory(&row.destination),
                });
            }));
        }
        let mut confirms = Vec::with_capacity(outbound.len());
        for publication in publish::start_all(channel, outbound).await {
            confirms.push(publication?);
        }
        Ok(Round {
            tx,
            rows,
            built,
            confirms,
            started,
        })
    }

    /// Awaits every confirm, deletes the confirmed rows, defers the others and
    /// commits. Returns the number of rows handled.
    async fn finish(self, confirm_timeout: Duration) -> Result<usize, RelayError> {
        let Round {
            mut tx,
            rows,
            built,
            confirms,
            started,
        } = self;
        let BatchConfirms { each, returned } =
            publish::confirmed_all(confirms, confirm_timeout).await;
        let mut acks = each.into_iter();
        let mut outcomes = Vec::with_capacity(rows.len());
        for built in built {
            // Only the rows published have a confirm.
            outcomes.push(match built {
                Err(reason) => Err(reason),
                Ok(()) => match acks.next() {
                    Some(Ok(())) => Ok(()),
                    Some(Err(PublishError::Nacked)) => Err("nacked by the broker".to_owned()),
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(RelayError::Disconnected),
                },
            });
        }
        let took = started.elapsed();
        let mut sent = Vec::with_capacity(rows.len());
        let mut sent_ids = Vec::new();
        let mut published = Vec::with_capacity(rows.len());
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                Ok(())
                    if returned.contains(&row.message_id)
                        && row.destination == Destination::Reply =>
                {
                    // The caller's queue is gone: the effect is committed and cannot be
                    // undone, so the reply (and any secret in it) is dropped and the
                    // loss recorded against the request for operators.
                    reply_returned(&mut tx, row).await?;
                    sent.push(row.id);
                }
                Ok(()) if returned.contains(&row.message_id) => {
                    let reason = format!("returned: no queue is bound for {}", row.routing_key);
                    defer(&mut tx, row, &reason).await?;
                }
                Ok(()) => {
                    sent.push(row.id);
                    sent_ids.push(row.message_id.clone());
                    published.push(row.destination.as_str());
                }
                Err(reason) => defer(&mut tx, row, &reason).await?,
            }
        }
        if !sent.is_empty() {
            crate::failpoint::hit("relay-after-publish");
        }
        outbox::delete(&mut tx, &sent).await?;
        notifications::mark_sent(&mut tx, &sent_ids, Utc::now()).await?;
        tx.commit().await?;
        if !rows.is_empty() {
            let deferred = (rows.len() - sent.len()) as u64;
            metrics::relay_round(published, deferred, took);
        }
        Ok(rows.len())
    }
}

/// Everything is published `mandatory`: an event or notification that no queue takes
/// means a subscriber or gateway queue is missing, and it is kept for later rather than
/// lost; a reply that comes back is recorded (see `reply_returned`).
fn mandatory(_destination: &Destination) -> bool {
    true
}

/// Records in the audit trail, against the request's tax code and credential (carried
/// by the reply's row, see `outbox::insert_held`), that its reply could not be
/// delivered (the citizen must ask again, for example by a reset).
async fn reply_returned(conn: &mut sqlx::PgConnection, row: &Pending) -> Result<(), sqlx::Error> {
    tracing::warn!(message_id = %row.message_id, message_type = %row.message_type, caused_by = ?row.caused_by, "reply returned: the caller's queue is gone");
    sqlx::query(
        "insert into audit_log (at, actor, action, tax_code, credential_id, message_id, detail)
         values (now(), 'pinflow', 'reply.returned', $4, $5, $1,
                 jsonb_build_object('reply_type', $2::text, 'reply_id', $3::text))",
    )
    .bind(row.caused_by.as_deref())
    .bind(&row.message_type)
    .bind(&row.message_id)
    .bind(row.request_tax_code.as_deref())
    .bind(row.request_credential_id)
    .execute(conn)
    .await?;
    Ok(())
}

async fn defer(
    conn: &mut sqlx::PgConnection,
    row: &Pending,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let backoff = Duration::from_secs(1u64 << row.attempts.clamp(0, 8));
    // Once at first, then every tenth attempt: a row waiting for a subscriber that
    // never comes must not flood the log.
    if row.attempts % 10 == 0 {
        tracing::error!(message_id = %row.message_id, message_type = %row.message_type, attempts = row.attempts + 1, reason, "outbox row not published; will try again");
    }
    let until = Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
    outbox::defer(conn, row.id, until, reason).await
}

/// The exchange, body and properties for a row whose body (the CloudEvent without its
/// secret) is `body`, with its secret unsealed.
fn build(
    deps: &Deps,
    row: &Pending,
    body: serde_json::Value,
) -> Result<(String, Vec<u8>, BasicProperties), String> {
    let exchange = exchange(&deps.names, &row.destination);
    let body = match &row.sealed {
        None => serde_json::to_vec(&body),
        Some(sealed) => {
            let key = deps.keys.find(&sealed.key_id).ok_or_else(|| {
                format!(
                    "sealed with key {}, which this process does not hold (it has {})",
                    sealed.key_id,
                    deps.keys.ids().join(", ")
                )
            })?;
            let aad = outbox::aad(&row.message_id, &sealed.field, &row.routing_key);
            let clear = key
                .open(&sealed.ciphertext, &aad)
                // Rows sealed before seals named their field and destination.
                .or_else(|_| key.open(&sealed.ciphertext, row.message_id.as_bytes()))
                .map_err(|_| "sealed secret does not open: altered or moved".to_owned())?;
            let clear =
                std::str::from_utf8(&clear).map_err(|_| "sealed secret is not text".to_owned())?;
            serde_json::to_vec(&with_secret(body, &sealed.field, clear))
        }
    }
    .map_err(|e| format!("body does not serialize: {e}"))?;
    let trace = row
        .traceparent
        .as_deref()
        .and_then(TraceParent::parse)
        .unwrap_or_else(TraceParent::start);
    let properties = properties(
        &row.message_id,
        &row.message_type,
        row.correlation_id.as_deref(),
        &trace,
        row.tracestate.as_deref(),
    );
    Ok((exchange, body, properties))
}

/// The exchange a message of `destination` goes to.
pub(super) fn exchange(names: &Names, destination: &Destination) -> String {
    match destination {
        Destination::Event => names.events(),
        Destination::Notification => names.notifications(),
        Destination::Reply => String::new(),
    }
}

/// The properties a message is published with: persistent, its ids and type, and the
/// trace it continues.
pub(super) fn properties(
    message_id: &str,
    message_type: &str,
    correlation_id: Option<&str>,
    trace: &TraceParent,
    tracestate: Option<&str>,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    set_str(&mut headers, "traceparent", &trace.to_string());
    if let Some(state) = tracestate {
        set_str(&mut headers, "tracestate", state);
    }
    let properties = BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_message_id(ShortString::from(message_id.to_owned()))
        .with_type(ShortString::from(message_type.to_owned()))
        .with_delivery_mode(2)
        .with_timestamp(Utc::now().timestamp().max(0) as u64)
        .with_headers(headers);
    match correlation_id {
        Some(id) => properties.with_correlation_id(ShortString::from(id.to_owned())),
        None => properties,
    }
}
