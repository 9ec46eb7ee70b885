//! The typed data of the events of the device-PIN flow, each shaped as its schema in
//! `schemas/`: documents waiting for an operator, a refused or approved conversion, a
//! refused review, and applications accepted, held and released. Built from typed
//! values, so an enum on the wire holds only what its schema lists; no field can hold
//! a secret. Depends on `domain` and the commands' typed data only.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::instant;
use crate::contract::commands::{ConversionChannel, Decision, Document, Fax, IdentityDocument};
use crate::contract::outgoing::{EventData, OutgoingData};
use crate::domain::TaxCode;
use crate::domain::device::ConvertRefusal;

/// Writes a filing time with every digit it was stored with, so `application.released`
/// repeats the `filed_at` of `application.held` exactly.
fn filing_time<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// `pin.converted`: an ordinary PIN became a device PIN (the same PIN).
#[derive(Debug, Clone, Serialize)]
pub struct PinConverted {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The credential, now of kind `device`.
    pub credential_id: Uuid,
    /// The conversion that did it.
    pub conversion_id: Uuid,
}

impl OutgoingData for PinConverted {
    const TYPE: &'static str = "pin.converted";
}
impl EventData for PinConverted {}

/// The channels whose documents wait for an operator (an office conversion never
/// does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewChannel {
    /// Uploaded on the portal.
    Upload,
    /// Received by fax.
    Fax,
}

impl ReviewChannel {
    /// The review channel of a submission's channel; `None` for `office`.
    pub fn of(channel: ConversionChannel) -> Option<ReviewChannel> {
        match channel {
            ConversionChannel::Upload => Some(ReviewChannel::Upload),
            ConversionChannel::Fax => Some(ReviewChannel::Fax),
            ConversionChannel::Office => None,
        }
    }
}

/// `conversion.review_requested`: documents passed the automatic checks and wait for
/// an operator, who finds here everything to look at.
#[derive(Debug, Clone, Serialize)]
pub struct ConversionReviewRequested {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// What the operator's `conversion.review` names.
    pub conversion_id: Uuid,
    /// The ordinary PIN to convert.
    pub credential_id: Uuid,
    /// How the documents arrived.
    pub channel: ReviewChannel,
    /// References to the documents (where they are stored, their hash), not the
    /// documents.
    pub documents: Vec<Document>,
    /// The identity document's data as submitted.
    pub identity_document: IdentityDocument,
    /// How the fax arrived, for a fax.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fax: Option<Fax>,
    /// When pinflow received the submission.
    #[serde(serialize_with = "instant")]
    pub submitted_at: DateTime<Utc>,
}

impl OutgoingData for ConversionReviewRequested {
    const TYPE: &'static str = "conversion.review_requested";
}
impl EventData for ConversionReviewRequested {}

/// `conversion.rejected`: a submission failed its automatic checks, or an operator
/// rejected it.
#[derive(Debug, Clone, Serialize)]
pub struct ConversionRejected {
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The refused conversion.
    pub conversion_id: Uuid,
    /// Every failed check by name, or the operator's reasons: one to twenty.
    pub reasons: Vec<String>,
}

impl OutgoingData for ConversionRejected {
    const TYPE: &'static str = "conversion.rejected";
}
impl EventData for ConversionRejected {}

/// Why a `conversion.review` was refused (it changed nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewRefusal {
    /// No conversion has this id.
    UnknownConversion,
    /// The conversion was approved or rejected already.
    AlreadyDecided,
    /// The PIN to convert is past its deadline.
    PinExpired,
    /// The PIN to convert was revoked.
    PinRevoked,
    /// The PIN is a device PIN already.
    PinAlreadyDevice,
}

impl From<ConvertRefusal> for ReviewRefusal {
    fn from(refusal: ConvertRefusal) -> ReviewRefusal {
        match refusal {
            ConvertRefusal::Expired => ReviewRefusal::PinExpired,
            ConvertRefusal::Revoked => ReviewRefusal::PinRevoked,
            ConvertRefusal::AlreadyDevice => ReviewRefusal::PinAlreadyDevice,
        }
    }
}

/// `conversion.review.rejected`: an operator's review was refused and changed nothing.
/// For the back office, not the citizen.
#[derive(Debug, Clone, Serialize)]
pub struct ConversionReviewRejected {
    /// Whose PIN, when the conversion is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_code: Option<TaxCode>,
    /// The conversion the review named.
    pub conversion_id: Uuid,
    /// Why.
    pub reason: ReviewRefusal,
    /// The decision that was not applied.
    pub decision: Decision,
    /// The operator who sent it.
    pub operator_id: String,
}

impl OutgoingData for ConversionReviewRejected {
    const TYPE: &'static str = "conversion.review.rejected";
}
impl EventData for ConversionReviewRejected {}

/// `application.accepted`: device-level authentication, processed at once.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationAccepted {
    /// The applicant.
    pub tax_code: TaxCode,
    /// The portal's id.
    pub application_id: String,
    /// What is applied for.
    pub benefit: String,
}

impl OutgoingData for ApplicationAccepted {
    const TYPE: &'static str = "application.accepted";
}
impl EventData for ApplicationAccepted {}

/// Why an application is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// Submitted with an ordinary PIN: waits for it to become a device PIN.
    OrdinaryPin,
    /// The applicant's PIN was revoked: still held, until a new PIN is converted.
    PinRevoked,
}

impl HoldReason {
    /// The name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::OrdinaryPin => "ordinary_pin",
            HoldReason::PinRevoked => "pin_revoked",
        }
    }
}

/// `application.held`: time limits stop running at `filed_at`.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationHeld {
    /// The applicant.
    pub tax_code: TaxCode,
    /// The portal's id.
    pub application_id: String,
    /// The legal filing time (the submission's envelope `time`).
    #[serde(serialize_with = "filing_time")]
    pub filed_at: DateTime<Utc>,
    /// Why it is held.
    pub reason: HoldReason,
    /// The applicant's PIN, where pinflow knows one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<Uuid>,
}

impl OutgoingData for ApplicationHeld {
    const TYPE: &'static str = "application.held";
}
impl EventData for ApplicationHeld {}

/// `application.released`: the PIN became a device PIN; the application goes ahead
/// as of its original filing time.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationReleased {
    /// The applicant.
    pub tax_code: TaxCode,
    /// The portal's id.
    pub application_id: String,
    /// The original filing time, as `application.held` gave it.
    #[serde(serialize_with = "filing_time")]
    pub filed_at: DateTime<Utc>,
    /// The device PIN.
    pub credential_id: Uuid,
    /// What is applied for.
    pub benefit: String,
}

impl OutgoingData for ApplicationReleased {
    const TYPE: &'static str = "application.released";
}
impl EventData for ApplicationReleased {}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
