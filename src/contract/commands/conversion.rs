//! The data of `application.submit`, `conversion.submit` and `conversion.review`, as
//! in their files under `schemas/`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CommandData, CommandType};
use crate::domain::Country;

/// How the applicant logged in to submit an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticatedWith {
    /// An ordinary PIN: the application is held until the PIN becomes a device PIN.
    PinOrdinary,
    /// A device PIN.
    PinDevice,
    /// SPID.
    Spid,
    /// CIE.
    Cie,
    /// CNS.
    Cns,
}

impl AuthenticatedWith {
    /// Device-level authentication: enough to accept an application at once.
    pub fn is_device_level(self) -> bool {
        !matches!(self, AuthenticatedWith::PinOrdinary)
    }
}

/// `application.submit`: an application for a benefit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSubmit {
    /// The upstream system's id of the application.
    pub application_id: String,
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// The benefit applied for.
    pub benefit: String,
    /// How the applicant logged in.
    pub authenticated_with: AuthenticatedWith,
}

impl CommandData for ApplicationSubmit {
    const TYPE: CommandType = CommandType::ApplicationSubmit;
}

/// How conversion documents arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversionChannel {
    /// Uploaded on the portal: an operator reviews them.
    Upload,
    /// Sent by fax: an operator reviews them.
    Fax,
    /// Shown at a counter: converted at once.
    Office,
}

/// What a conversion document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// The signed request form.
    RequestForm,
    /// A copy of the identity document.
    IdentityDocument,
}

/// One document of a conversion.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// What it is.
    pub kind: DocumentKind,
    /// Its media type; the automatic checks say which are accepted.
    pub media_type: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its SHA-256, as text (checked to be 64 hex characters by the worker).
    pub sha256: String,
    /// Where the document store keeps it.
    pub uri: String,
}

/// The kinds of identity document accepted for a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityDocumentType {
    /// Passport.
    Passport,
    /// Identity card.
    IdentityCard,
    /// Driving licence.
    DrivingLicence,
    /// Residence permit.
    ResidencePermit,
}

/// The identity document shown for a conversion.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityDocument {
    /// Its kind (`type` on the wire).
    #[serde(rename = "type")]
    pub document_type: IdentityDocumentType,
    /// Its number.
    pub number: String,
    /// The country that issued it.
    pub issuing_country: Country,
    /// Its expiry date; an expired document fails the checks.
    pub expires_on: NaiveDate,
}

/// How a fax arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fax {
    /// The sender's number as the fax server saw it.
    pub sender_number: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// How many pages it had.
    pub pages: u16,
}

/// `conversion.submit`: documents to turn an ordinary PIN into a device PIN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionSubmit {
    /// Codice fiscale, as text.
    pub tax_code: String,
    /// How the documents arrived.
    pub channel: ConversionChannel,
    /// One to ten documents.
    pub documents: Vec<Document>,
    /// The identity document shown.
    pub identity_document: IdentityDocument,
    /// Required for `fax`.
    pub fax: Option<Fax>,
    /// Required for `office`.
    pub operator_id: Option<String>,
}

impl CommandData for ConversionSubmit {
    const TYPE: CommandType = CommandType::ConversionSubmit;
}

/// An operator's decision on a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The PIN becomes a device PIN.
    Approved,
    /// The conversion is refused.
    Rejected,
}

/// `conversion.review`: an operator's decision.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionReview {
    /// The conversion from `conversion.review_requested`.
    pub conversion_id: Uuid,
    /// Approved or rejected.
    pub decision: Decision,
    /// Why, if rejected (may be empty).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The operator who decided.
    pub operator_id: String,
}

impl CommandData for ConversionReview {
    const TYPE: CommandType = CommandType::ConversionReview;
}
