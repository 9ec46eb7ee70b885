//! One `delivery.receipt`. The receipt's `time` (when the gateway saw the outcome; its
//! arrival when absent) orders it against earlier receipts, so duplicates and late
//! arrivals keep the latest real state. A failure (`failed` or `returned`) that becomes
//! the state of a notification carrying a PIN half or a whole initial PIN is announced
//! as `pin.delivery_failed` once per notification, under an id derived from it.

use serde_json::json;
use sqlx::PgConnection;

use super::Receipt;
use super::store::{self, Logged};
use crate::contract::commands::ReceiptStatus;
use crate::contract::events::{DeliveryFailure, PinDeliveryFailed, PinPart};
use crate::contract::outgoing::derived_id;
use crate::contract::{Carries, NotifyChannel, Outgoing};
use crate::domain::TaxCode;
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::notifications::{self, Notification, Received};

/// The ledger's name for a receipt's status.
fn state(status: ReceiptStatus) -> &'static str {
    match status {
        ReceiptStatus::Delivered => "delivered",
        ReceiptStatus::Failed => "failed",
        ReceiptStatus::Returned => "returned",
    }
}

/// Handles one `delivery.receipt`.
pub async fn handle(
    receipt: &Receipt,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let id = receipt.notification_id.to_string();
    let status = state(receipt.status);
    let mut logged = Logged {
        message_id: &message.envelope.id,
        notification_id: &id,
        status,
        detail: receipt.detail.as_deref(),
        observed_at: message.envelope.time.unwrap_or(message.now),
        received_at: message.now,
        source: &message.envelope.source,
        known: false,
        applied: false,
        announced: false,
    };
    let received =
        notifications::receive(conn, &id, status, logged.observed_at, logged.detail).await?;
    let Some(Received {
        notification,
        applied,
    }) = received
    else {
        return unknown(&logged, message, conn).await;
    };
    logged.known = true;
    logged.applied = applied;
    let failure = failure(receipt, &notification)?;
    if logged.applied && failure.is_some() {
        logged.announced = !store::announced_before(conn, &id).await?;
    }
    store::log(conn, &logged).await?;
    let detail = json!({ "notification_id": id, "status": status, "applied": logged.applied,
        "announced": logged.announced });
    let tax_code = Some(notification.tax_code.as_str());
    let credential_id = notification.credential_id;
    let source = &message.envelope.source;
    message.audit(source, "delivery.receipt", tax_code, credential_id, detail);
    match failure {
        Some(event) if logged.announced => {
            let event_id = derived_id(&[&id, "pin.delivery_failed"]);
            Ok(vec![
                Outgoing::typed_event(&event, message.now)?.with_id(event_id),
            ])
        }
        _ => Ok(Vec::new()),
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
async fn unknown(
    logged: &Logged<'_>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    store::log(conn, logged).await?;
    let detail = json!({ "notification_id": logged.notification_id, "status": logged.status });
    let source = &message.envelope.source;
    message.audit(source, "delivery.receipt.unknown", None, None, detail);
    tracing::warn!(
        notification.id = logged.notification_id,
        receipt.status = logged.status,
        "a delivery receipt names a notification pinflow does not know; logged and audited"
    );
    Ok(Vec::new())
}
