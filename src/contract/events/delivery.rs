//! The typed data of `pin.delivery_failed`: a notification that carried a PIN half (or
//! a whole initial PIN) did not reach the citizen. It says which notification, which
//! template and channel, and which secret it carried, never the secret. Depends on
//! `domain` and the contract's outgoing shapes only.

use serde::Serialize;
use uuid::Uuid;

use crate::contract::commands::ReceiptStatus;
use crate::contract::outgoing::{Carries, EventData, NotifyChannel, OutgoingData};
use crate::domain::TaxCode;

/// How a delivery failed, as a gateway reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryFailure {
    /// Sending failed (an SMS, an e-mail).
    Failed,
    /// It came back (a letter).
    Returned,
}

/// A receipt's status as a failure; `delivered` is none and comes back as the error.
impl TryFrom<ReceiptStatus> for DeliveryFailure {
    type Error = ReceiptStatus;

    fn try_from(status: ReceiptStatus) -> Result<Self, ReceiptStatus> {
        match status {
            ReceiptStatus::Failed => Ok(DeliveryFailure::Failed),
            ReceiptStatus::Returned => Ok(DeliveryFailure::Returned),
            ReceiptStatus::Delivered => Err(status),
        }
    }
}

/// The part of an initial PIN a notification carried: the only notifications whose
/// failure is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PinPart {
    /// Characters 1-8.
    FirstHalf,
    /// Characters 9-16.
    SecondHalf,
    /// All 16 (office issue).
    WholePin,
}

/// What a notification carried, as a PIN part; a token is none and comes back as the
/// error.
impl TryFrom<Carries> for PinPart {
    type Error = Carries;

    fn try_from(carries: Carries) -> Result<Self, Carries> {
        match carries {
            Carries::FirstHalf => Ok(PinPart::FirstHalf),
            Carries::SecondHalf => Ok(PinPart::SecondHalf),
            Carries::WholePin => Ok(PinPart::WholePin),
            Carries::Token => Err(carries),
        }
    }
}

/// `pin.delivery_failed`: announced once per notification, so the contact center or
/// the citizen can ask again.
#[derive(Debug, Clone, Serialize)]
pub struct PinDeliveryFailed {
    /// Whose notification.
    pub tax_code: TaxCode,
    /// The credential whose PIN it carried, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<Uuid>,
    /// The notification, as in the receipt.
    pub notification_id: Uuid,
    /// Its template, which says which half (`pin_first_half`, `pin_second_half`, ...).
    pub template: String,
    /// The gateway it went through.
    pub channel: NotifyChannel,
    /// Which part of the PIN it carried.
    pub carries: PinPart,
    /// What the gateway reported.
    pub status: DeliveryFailure,
}

impl OutgoingData for PinDeliveryFailed {
    const TYPE: &'static str = "pin.delivery_failed";
}
impl EventData for PinDeliveryFailed {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::outgoing::encode;
    use crate::contract::schemas::Schemas;

    #[test]
    fn every_failed_half_its_schema_accepts() {
        let cases = [
            (
                NotifyChannel::Sms,
                Carries::FirstHalf,
                ReceiptStatus::Failed,
            ),
            (
                NotifyChannel::Post,
                Carries::SecondHalf,
                ReceiptStatus::Returned,
            ),
            (
                NotifyChannel::Email,
                Carries::FirstHalf,
                ReceiptStatus::Failed,
            ),
            (
                NotifyChannel::Pec,
                Carries::SecondHalf,
                ReceiptStatus::Failed,
            ),
            (
                NotifyChannel::Office,
                Carries::WholePin,
                ReceiptStatus::Failed,
            ),
        ];
        for (channel, carries, status) in cases {
            let event = PinDeliveryFailed {
                tax_code: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
                credential_id: Some(Uuid::new_v4()),
                notification_id: Uuid::new_v4(),
                template: "pin_first_half".into(),
                channel,
                carries: PinPart::try_from(carries).unwrap(),
                status: DeliveryFailure::try_from(status).unwrap(),
            };
            let data = encode(&event).unwrap();
            Schemas::embedded()
                .check(PinDeliveryFailed::TYPE, &data)
                .unwrap_or_else(|e| panic!("{e}: {data}"));
            assert_eq!(data["channel"], channel.as_str());
            assert_eq!(data["carries"], carries.as_str());
        }
    }

    #[test]
    fn a_token_is_no_pin_part_and_delivered_is_no_failure() {
        assert_eq!(PinPart::try_from(Carries::Token), Err(Carries::Token));
        assert_eq!(
            DeliveryFailure::try_from(ReceiptStatus::Delivered),
            Err(ReceiptStatus::Delivered)
        );
        assert_eq!(
            DeliveryFailure::try_from(ReceiptStatus::Returned),
            Ok(DeliveryFailure::Returned)
        );
    }
}
