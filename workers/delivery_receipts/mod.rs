//! The delivery-receipt worker: `delivery.receipt` from the gateways moves a
//! notification's delivery state in the ledger (the latest real word wins; see
//! `store::notifications`), and a notification that carried part of a PIN and failed
//! or came back is announced once as `pin.delivery_failed`. A receipt for a
//! notification the ledger does not know is logged and audited, never a dead letter.

mod receipt;
mod store;

use sqlx::PgConnection;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::contract::commands::{self as wire, CommandData, CommandType, ReceiptStatus};
use crate::contract::{Envelope, Outgoing, ParseError};
use crate::error::HandlerError;
use crate::manifest::{Binding, Description};
use crate::runtime::{Handling, Message, Registration, Worker};

/// The delivery-receipt worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "delivery_receipts",
        bindings: &[Binding::command("delivery.receipt", &[]).after(&["pin.request"])],
        jobs: &[],
    },
    start: |starter| starter.consume(Receipts),
    parse: |envelope| Receipt::parse(envelope).map(drop),
};

/// A checked `delivery.receipt`.
pub struct Receipt {
    /// The notification it reports on.
    pub notification_id: Uuid,
    /// What became of it.
    pub status: ReceiptStatus,
    /// The gateway's own words, if any.
    pub detail: Option<String>,
}

impl Receipt {
    /// Parses a `delivery.receipt`.
    pub fn parse(envelope: &Envelope) -> Result<Receipt, ParseError> {
        if CommandType::parse(&envelope.message_type) != Some(CommandType::DeliveryReceipt) {
            return Err(ParseError::UnknownType(envelope.message_type.clone()));
        }
        let data = wire::DeliveryReceipt::from_envelope(envelope)?;
        Ok(Receipt {
            notification_id: data.notification_id,
            status: data.status,
            detail: data.detail,
        })
    }
}

/// The delivery-receipt worker: no settings of its own.
pub struct Receipts;

impl Worker for Receipts {
    type Command = Receipt;
    type Prepared = Receipt;

    fn parse(&self, envelope: &Envelope) -> Result<Receipt, ParseError> {
        Receipt::parse(envelope)
    }

    async fn prepare(&self, receipt: Receipt) -> Result<Receipt, HandlerError> {
        Ok(receipt)
    }

    async fn handle<'a>(
        &'a self,
        receipt: &'a Receipt,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        receipt::handle(receipt, None, message, conn, None).await
    }

    /// A batch's receipts are applied in one statement (see `receipt::stage`), then
    /// handled in order; the log rows of those applied together are written in one
    /// statement at the end.
    async fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handling<'a, Receipt>],
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Vec<Outgoing>>, HandlerError> {
        let staged = receipt::stage(batch, conn).await?;
        let mut later = Vec::new();
        let mut all = Vec::with_capacity(batch.len());
        for (item, staged) in batch.iter().zip(staged) {
            let defer = staged.is_some().then_some(&mut later);
            let handled = receipt::handle(item.prepared, staged, item.message, conn, defer);
            all.push(handled.instrument(item.span.clone()).await?);
        }
        store::log_all(conn, &later).await?;
        Ok(all)
    }
}
