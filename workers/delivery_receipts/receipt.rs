//! One `delivery.receipt`. The receipt's `time` (when the gateway saw the outcome; its
//! arrival when absent) orders it against earlier receipts, so duplicates and late
//! arrivals keep the latest real state. A failure (`failed` or `returned`) that becomes
//! the state of a notification carrying a PIN half or a whole initial PIN is announced
//! as `pin.delivery_failed` once per notification, under an id derived from it.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Receipt;
use super::store::{self, Logged};
use crate::contract::commands::ReceiptStatus;
use crate::contract::events::{DeliveryFailure, PinDeliveryFailed, PinPart};
use crate::contract::outgoing::derived_id;
use crate::contract::{Carries, NotifyChannel, Outgoing};
use crate::domain::TaxCode;
use crate::error::HandlerError;
use crate::runtime::{Handling, Message, together};
use crate::store::notifications::{self, Notification, Received};

/// The ledger's name for a receipt's status.
fn state(status: ReceiptStatus) -> &'static str {
    match status {
        ReceiptStatus::Delivered => "delivered",
        ReceiptStatus::Failed => "failed",
        ReceiptStatus::Returned => "returned",
    }
}

/// A receipt applied with its batch's (see `stage`): the notification it named as it
/// was before, and whether the receipt became its state; `None` when the ledger has no
/// such notification.
pub type Staged = Option<Received>;

/// Applies, in one statement, each receipt of the batch whose notification no other
/// receipt of the batch names, and says per receipt what it found (`None` for the
/// others, which `handle` applies itself). Fewer than two: nothing done.
pub async fn stage(
    batch: &[Handling<'_, Receipt>],
    conn: &mut PgConnection,
) -> Result<Vec<Option<Staged>>, HandlerError> {
    let mut staged: Vec<Option<Staged>> = batch.iter().map(|_| None).collect();
    let ids: Vec<Uuid> = batch.iter().map(|i| i.prepared.notification_id).collect();
    let picked = together(&ids, |i| Some(batch[i].prepared));
    if picked.is_empty() {
        return Ok(staged);
    }
    let words: Vec<notifications::Word<'_>> = picked
        .iter()
        .map(|&(i, receipt)| {
            let message = batch[i].message;
            notifications::Word {
                notification_id: receipt.notification_id.to_string(),
                state: state(receipt.status),
                observed_at: observed_at(message),
                detail: receipt.detail.as_deref(),
            }
        })
        .collect();
    let mut found = notifications::receive_all(conn, &words).await?;
    for ((i, _), word) in picked.into_iter().zip(words) {
        staged[i] = Some(found.remove(&word.notification_id));
    }
    Ok(staged)
}

/// When the gateway saw the outcome: the receipt's `time`, else its arrival.
fn observed_at(message: &Message<'_>) -> DateTime<Utc> {
    message.envelope.time.unwrap_or(message.now)
}

/// Handles one `delivery.receipt`; `staged` when it was applied with its batch's.
/// Its row of the receipts log is written now, or added to `later` when given.
pub async fn handle<'a>(
    receipt: &'a Receipt,
    staged: Option<Staged>,
    message: &'a Message<'a>,
    conn: &mut PgConnection,
    later: Option<&mut Vec<Logged<'a>>>,
) -> Result<Vec<Outgoing>, HandlerError> {
    let id = receipt.notification_id.to_string();
    let status = state(receipt.status);
    let mut logged = Logged {
        message_id: &message.envelope.id,
        notification_id: id.clone(),
        status,
        detail: receipt.detail.as_deref(),
        observed_at: observed_at(message),
        received_at: message.now,
        source: &message.envelope.source,
        known: false,
        applied: false,
        announced: false,
    };
    let received = match staged {
        Some(staged) => staged,
        None => {
            notifications::receive(conn, &id, status, logged.observed_at, logged.detail).await?
        }
    };
    let Some(Received {
        notification,
        applied,
    }) = received
    else {
        return unknown(logged, message, conn, later).await;
    };
    logged.known = true;
    logged.applied = applied;
    let failure = failure(receipt, &notification)?;
    if logged.applied && failure.is_some() {
        logged.announced = !store::announced_before(conn, &id).await?;
    }
    let detail = json!({ "notification_id": id, "status": status, "applied": logged.applied,
        "announced": logged.announced });
    let announced = logged.announced;
    keep(conn, logged, later).await?;
    let tax_code = Some(notification.tax_code.as_str());
    let credential_id = notification.credential_id;
    let source = &message.envelope.source;
    message.audit(source, "delivery.receipt", tax_code, credential_id, detail);
    match failure {
        Some(event) if announced => {
            let event_id = derived_id(&[&id, "pin.delivery_failed"]);
            Ok(vec![
                Outgoing::typed_event(&event, message.now)?.with_id(event_id),
            ])
        }
        _ => Ok(Vec::new()),
    }
}

/// Writes a receipt's log row now, or keeps it for `later`.
async fn keep<'a>(
    conn: &mut PgConnection,
    logged: Logged<'a>,
    later: Option<&mut Vec<Logged<'a>>>,
) -> Result<(), sqlx::Error> {
    match later {
        Some(later) => {
            later.push(logged);
            Ok(())
        }
        None => store::log_all(conn, std::slice::from_ref(&logged)).await,
    }
}

/// The announcement this receipt would make: only a failure of a notification that
/// carried part of a PIN has one.
fn failure(
    receipt: &Receipt,
    notification: &Notification,
) -> Result<Option<PinDeliveryFailed>, HandlerError> {
    let Ok(status) = DeliveryFailure::try_from(receipt.status) else {
        return Ok(None);
    };
    let carried = notification.carries.as_deref().and_then(Carries::parse);
    let Some(part) = carried.and_then(|c| PinPart::try_from(c).ok()) else {
        return Ok(None);
    };
    let corrupt =
        |what: &str| HandlerError::Permanent(format!("the ledger holds an unknown {what}"));
    Ok(Some(PinDeliveryFailed {
        tax_code: TaxCode::parse(&notification.tax_code).map_err(|_| corrupt("tax code"))?,
        credential_id: notification.credential_id,
        notification_id: receipt.notification_id,
        template: notification.template.clone(),
        channel: NotifyChannel::parse(&notification.channel).ok_or_else(|| corrupt("channel"))?,
        carries: part,
        status,
    }))
}

/// A receipt for a notification the ledger does not have (another installation's, a
/// gateway's mistake): logged, audited without a tax code and warned about; nothing
/// else happens, and it is not a dead letter.
async fn unknown<'a>(
    logged: Logged<'a>,
    message: &'a Message<'a>,
    conn: &mut PgConnection,
    later: Option<&mut Vec<Logged<'a>>>,
) -> Result<Vec<Outgoing>, HandlerError> {
    let detail = json!({ "notification_id": logged.notification_id, "status": logged.status });
    tracing::warn!(
        notification.id = logged.notification_id,
        receipt.status = logged.status,
        "a delivery receipt names a notification pinflow does not know; logged and audited"
    );
    keep(conn, logged, later).await?;
    let source = &message.envelope.source;
    message.audit(source, "delivery.receipt.unknown", None, None, detail);
    Ok(Vec::new())
}
