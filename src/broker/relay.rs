//! The outbox relay: publishes committed outbox rows in order with publisher confirms
//! and `mandatory`, deletes each row (and with it any sealed secret) once confirmed,
//! and puts a row back for later when the broker refuses or returns it. One relay per
//! database publishes at a time (a transaction-level advisory lock), so messages of
//! one transaction go out in their order even with several pinflow processes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapin::options::ConfirmSelectOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use tokio_util::sync::CancellationToken;

use super::publish::{self, Confirmed, PublishError, set_str};
use crate::app::worker::Deps;
use crate::contract::outgoing::with_secret;
use crate::contract::trace::TraceParent;
use crate::contract::{CONTENT_TYPE, Destination};
use crate::error::chain;
use crate::store::outbox::{self, Pending};

/// The advisory-lock key that makes one relay at a time publish for a database.
const RELAY_LOCK: i64 = 0x7069_6e66_6c6f_7701;

/// Why a relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("publish failed")]
    Publish(#[from] PublishError),
}

/// Runs the relay until `cancel` fires, then publishes what is left (bounded by the
/// shutdown timeout) and returns.
pub async fn run(deps: Arc<Deps>, cancel: CancellationToken) {
    let mut delays = super::reconnect_delays();
    loop {
        let Some(connection) = super::connect_with_backoff(
            &deps.amqp_url,
            &deps.names.connection_name("relay"),
            &cancel,
        )
        .await
        else {
            break;
        };
        let result = session(&deps, &connection, &cancel).await;
        super::close(&connection, "pinflow stopping").await;
        match result {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "outbox relay lost its session; reconnecting");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(delays.next().unwrap_or_default()) => {}
                }
            }
        }
    }
    tracing::info!("outbox relay stopped");
}

async fn session(
    deps: &Deps,
    connection: &Connection,
    cancel: &CancellationToken,
) -> Result<(), RelayError> {
    let channel = connection.create_channel().await?;
    super::topology::declare_shared(&channel, &deps.names).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    loop {
        drain(deps, &channel).await?;
        tokio::select! {
            () = cancel.cancelled() => break,
            () = deps.relay_wake.notified() => {}
            () = tokio::time::sleep(deps.runtime.relay_interval) => {}
        }
    }
    // Flush what the workers committed before they stopped.
    match tokio::time::timeout(deps.runtime.shutdown_timeout, drain(deps, &channel)).await {
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

/// Publishes rounds until fewer rows than a full round are due.
pub async fn drain(deps: &Deps, channel: &Channel) -> Result<usize, RelayError> {
    let mut total = 0;
    loop {
        let published = round(deps, channel).await?;
        total += published;
        if published < deps.runtime.relay_batch as usize {
            return Ok(total);
        }
    }
}

/// One round: lock, read due rows in order, publish them all, await every confirm,
/// delete the confirmed rows, defer the others. Returns the number of rows handled.
async fn round(deps: &Deps, channel: &Channel) -> Result<usize, RelayError> {
    let mut tx = deps.pool.begin().await?;
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    let rows = outbox::due(&mut tx, Utc::now(), deps.runtime.relay_batch).await?;
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let outcome = match build(deps, row) {
            Ok((exchange, body, properties)) => Ok(publish::start(
                channel,
                &exchange,
                &row.routing_key,
                &body,
                properties,
                mandatory(&row.destination),
            )
            .await?),
            Err(reason) => Err(reason),
        };
        confirms.push(outcome);
    }
    let mut sent = Vec::with_capacity(rows.len());
    for (row, confirm) in rows.iter().zip(confirms) {
        let result = match confirm {
            Ok(confirm) => publish::confirmed(confirm, deps.runtime.confirm_timeout).await,
            Err(reason) => {
                defer(&mut tx, row, &reason).await?;
                continue;
            }
        };
        match result {
            Ok(Confirmed::Routed) => sent.push(row.id),
            Ok(Confirmed::Returned(_)) => {
                defer(
                    &mut tx,
                    row,
                    "returned: no queue bound for this notification",
                )
                .await?;
            }
            Err(PublishError::Nacked) => defer(&mut tx, row, "nacked by the broker").await?,
            Err(e) => return Err(e.into()),
        }
    }
    if !sent.is_empty() {
        crate::failpoint::hit("relay-after-publish");
    }
    outbox::delete(&mut tx, &sent).await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// Only notifications are published `mandatory`: a notification that no queue takes
/// means the topology is broken and must be kept for later, while an event without
/// subscribers and a reply whose caller stopped waiting are normal and dropped by the
/// broker. Returns then always belong to notifications, whatever lapin pairs them
/// with among pipelined confirms.
fn mandatory(destination: &Destination) -> bool {
    *destination == Destination::Notification
}

async fn defer(
    conn: &mut sqlx::PgConnection,
    row: &Pending,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let backoff = Duration::from_secs(1u64 << row.attempts.clamp(0, 8));
    tracing::error!(message_id = %row.message_id, message_type = %row.message_type, attempts = row.attempts + 1, reason, "outbox row not published; will try again");
    let until = Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
    outbox::defer(conn, row.id, until, reason).await
}

/// The exchange, body and properties for a row, with its secret unsealed.
fn build(deps: &Deps, row: &Pending) -> Result<(String, Vec<u8>, BasicProperties), String> {
    let exchange = match row.destination {
        Destination::Event => deps.names.events(),
        Destination::Notification => deps.names.notifications(),
        Destination::Reply => String::new(),
    };
    let body = match &row.sealed {
        None => serde_json::to_vec(&row.body),
        Some(sealed) => {
            if sealed.key_id != deps.key.key_id() {
                return Err(format!(
                    "sealed with key {}, this process has key {}",
                    sealed.key_id,
                    deps.key.key_id()
                ));
            }
            let clear = deps
                .key
                .open(&sealed.ciphertext, row.message_id.as_bytes())
                .map_err(|_| "sealed secret does not open with this key".to_owned())?;
            let clear =
                std::str::from_utf8(&clear).map_err(|_| "sealed secret is not text".to_owned())?;
            serde_json::to_vec(&with_secret(row.body.clone(), &sealed.field, clear))
        }
    }
    .map_err(|e| format!("body does not serialize: {e}"))?;
    let trace = row
        .traceparent
        .as_deref()
        .and_then(TraceParent::parse)
        .unwrap_or_else(TraceParent::start);
    let mut headers = FieldTable::default();
    set_str(&mut headers, "traceparent", &trace.to_string());
    let mut properties = BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_message_id(ShortString::from(row.message_id.clone()))
        .with_type(ShortString::from(row.message_type.clone()))
        .with_delivery_mode(2)
        .with_timestamp(Utc::now().timestamp().max(0) as u64)
        .with_headers(headers);
    if let Some(correlation_id) = &row.correlation_id {
        properties = properties.with_correlation_id(ShortString::from(correlation_id.clone()));
    }
    Ok((exchange, body, properties))
}
