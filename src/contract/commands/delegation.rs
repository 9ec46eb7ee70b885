//! The data of `delegation.grant`, `delegation.revoke` and the gateways'
//! `delivery.receipt`, as in their files under `schemas/`.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CommandData, CommandType};

/// `delegation.grant`: delegation of digital identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationGrant {
    /// Who delegates, as text.
    pub delegator_tax_code: String,
    /// Who is delegated (must hold a live credential), as text.
    pub delegate_tax_code: String,
    /// The last day of the delegation, if it has one.
    pub valid_until: Option<NaiveDate>,
    /// The operator who registers it.
    pub operator_id: String,
}

impl CommandData for DelegationGrant {
    const TYPE: CommandType = CommandType::DelegationGrant;
}

/// `delegation.revoke`: end a delegation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationRevoke {
    /// The delegation from `delegation.granted`.
    pub delegation_id: Uuid,
    /// The operator who revokes it.
    pub operator_id: String,
}

impl CommandData for DelegationRevoke {
    const TYPE: CommandType = CommandType::DelegationRevoke;
}

/// What a gateway says became of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// It arrived.
    Delivered,
    /// Sending failed (an SMS or e-mail).
    Failed,
    /// It came back (a letter).
    Returned,
}

/// `delivery.receipt`: a gateway reports on a notification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryReceipt {
    /// The notification's stable id.
    pub notification_id: Uuid,
    /// What became of it.
    pub status: ReceiptStatus,
    /// The gateway's own words, if any.
    pub detail: Option<String>,
}

impl CommandData for DeliveryReceipt {
    const TYPE: CommandType = CommandType::DeliveryReceipt;
}
