//! The automatic checks of a `conversion.submit`, as pure rules: the tax code's PIN
//! can be converted, both documents are there, each has an accepted media type, a size
//! within bounds and a well-formed SHA-256, and the identity document has not expired.
//! Every failure is named, and all of them are reported at once, each name once, in
//! the order of the contract's list. No I/O.

use chrono::{DateTime, NaiveDate, Utc};

use crate::contract::commands::{Document, DocumentKind, IdentityDocument};
use crate::domain::credential::Credential;
use crate::domain::device::ConvertRefusal;

/// The media types a document may have.
pub const MEDIA_TYPES: [&str; 4] = ["application/pdf", "image/jpeg", "image/png", "image/tiff"];

/// One failed check, named as it appears in `conversion.rejected.reasons`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The tax code has no PIN at all.
    PinNotFound,
    /// Its PIN is past its deadline.
    PinExpired,
    /// Its PIN was revoked.
    PinRevoked,
    /// Its PIN is a device PIN already.
    PinAlreadyDevice,
    /// No document of kind `request_form`.
    MissingRequestForm,
    /// No document of kind `identity_document`.
    MissingIdentityDocument,
    /// A media type outside `MEDIA_TYPES`.
    UnsupportedMediaType,
    /// A document of zero bytes.
    EmptyDocument,
    /// A document over the size limit.
    DocumentTooLarge,
    /// A `sha256` that is not 64 hexadecimal characters.
    MalformedSha256,
    /// The identity document expired before today.
    IdentityDocumentExpired,
    /// Another conversion of the same PIN waits for an operator.
    AlreadyUnderReview,
}

impl Failure {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::PinNotFound => "pin_not_found",
            Failure::PinExpired => "pin_expired",
            Failure::PinRevoked => "pin_revoked",
            Failure::PinAlreadyDevice => "pin_already_device",
            Failure::MissingRequestForm => "missing_request_form",
            Failure::MissingIdentityDocument => "missing_identity_document",
            Failure::UnsupportedMediaType => "unsupported_media_type",
            Failure::EmptyDocument => "empty_document",
            Failure::DocumentTooLarge => "document_too_large",
            Failure::MalformedSha256 => "malformed_sha256",
            Failure::IdentityDocumentExpired => "identity_document_expired",
            Failure::AlreadyUnderReview => "already_under_review",
        }
    }
}

impl From<ConvertRefusal> for Failure {
    fn from(refusal: ConvertRefusal) -> Failure {
        match refusal {
            ConvertRefusal::Expired => Failure::PinExpired,
            ConvertRefusal::Revoked => Failure::PinRevoked,
            ConvertRefusal::AlreadyDevice => Failure::PinAlreadyDevice,
        }
    }
}

/// Whether the tax code's PIN (its current one, else its latest) can become a device
/// PIN now.
pub fn pin(credential: Option<&Credential>, now: DateTime<Utc>) -> Result<(), Failure> {
    let credential = credential.ok_or(Failure::PinNotFound)?;
    credential.convert(now).map(drop).map_err(Failure::from)
}

/// An accepted media type: one of the four, in any case, parameters ignored
/// (`application/PDF; version=1.7` is a PDF).
fn media_type_accepted(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    MEDIA_TYPES.iter().any(|t| t.eq_ignore_ascii_case(essence))
}

fn sha256_well_formed(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The document checks, for documents at most `max_bytes` long, with `today` the date
/// against which the identity document's expiry is read (it is valid through its
/// `expires_on`).
pub fn documents(
    documents: &[Document],
    identity: &IdentityDocument,
    today: NaiveDate,
    max_bytes: u64,
) -> Vec<Failure> {
    let has = |kind| documents.iter().any(|d| d.kind == kind);
    let any = |failed: fn(&Document) -> bool| documents.iter().any(failed);
    let mut failures = Vec::new();
    if !has(DocumentKind::RequestForm) {
        failures.push(Failure::MissingRequestForm);
    }
    if !has(DocumentKind::IdentityDocument) {
        failures.push(Failure::MissingIdentityDocument);
    }
    if any(|d| !media_type_accepted(&d.media_type)) {
        failures.push(Failure::UnsupportedMediaType);
    }
    if any(|d| d.size_bytes == 0) {
        failures.push(Failure::EmptyDocument);
    }
    if documents.iter().any(|d| d.size_bytes > max_bytes) {
        failures.push(Failure::DocumentTooLarge);
    }
    if any(|d| !sha256_well_formed(&d.sha256)) {
        failures.push(Failure::MalformedSha256);
    }
    if identity.expires_on < today {
        failures.push(Failure::IdentityDocumentExpired);
    }
    failures
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
