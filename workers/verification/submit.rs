//! `conversion.submit`: every automatic check at once; then a refusal
//! (`conversion.rejected` with every failed check, the citizen told), a conversion at
//! once (office), or documents waiting for an operator (`conversion.review_requested`
//! with everything the operator looks at). A new submission is refused as
//! `already_under_review` while another one of the same PIN waits; a rejected one
//! blocks nothing. Each submission is recorded as a conversion with its own id.

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::checks::{self, Failure};
use super::{Submission, Verification};
use crate::contract::Outgoing;
use crate::contract::events::{ConversionReviewRequested, ReviewChannel};
use crate::domain::credential::Credential;
use crate::error::HandlerError;
use crate::runtime::{Handling, Message, together};
use crate::store::credentials::{self, Stored};
use crate::workers::conversion::outcome;
use crate::workers::conversion::record::{self, Conversion, NewConversion, Status};

/// What a submission's batch did for it (see `stage`).
pub struct Staged {
    /// Its tax code's latest credential, locked.
    latest: Option<Stored>,
    /// When it passed every check: its conversion's id, and whether the batch filed
    /// it (`false`: another conversion of the PIN was already waiting).
    filed: Option<(Uuid, bool)>,
}

/// Locks, in one statement and in the order of their tax codes, the latest credential
/// of each submission of the batch whose tax code no other submission of the batch
/// names, and files in one statement the conversions of those that pass every check;
/// gives that per submission (`None` for the others, which `handle` does alone). Fewer
/// than two: nothing done.
pub async fn stage(
    worker: &Verification,
    batch: &[Handling<'_, Submission>],
    conn: &mut PgConnection,
) -> Result<Vec<Option<Staged>>, HandlerError> {
    let codes: Vec<&str> = batch.iter().map(|i| i.prepared.tax_code.as_str()).collect();
    let mut staged: Vec<Option<Staged>> = batch.iter().map(|_| None).collect();
    let picked = together(&codes, |i| Some(codes[i]));
    if picked.is_empty() {
        return Ok(staged);
    }
    let locking: Vec<&str> = picked.iter().map(|&(_, code)| code).collect();
    let mut latest = credentials::latest_for_update_all(conn, &locking).await?;
    let mut waiting_ones: Vec<(usize, Conversion)> = Vec::new();
    for (i, code) in picked {
        let item = &batch[i];
        let latest = latest.remove(code);
        let credential = latest.as_ref().map(|stored| &stored.credential);
        let (_, failures) = assess(worker, item.prepared, credential, item.message);
        if let Some(credential) = credential.filter(|_| failures.is_empty()) {
            waiting_ones.push((i, waiting(Uuid::new_v4(), item.prepared, credential.id)));
        }
        staged[i] = Some(Staged {
            latest,
            filed: None,
        });
    }
    let filing: Vec<NewConversion<'_>> = waiting_ones
        .iter()
        .map(|(i, conversion)| {
            let (submission, message) = (batch[*i].prepared, batch[*i].message);
            let actor = submission.actor(&message.envelope.source);
            new_conversion(submission, conversion, &[], actor, message)
        })
        .collect();
    let filed = record::insert_all(conn, &filing).await?;
    for (i, conversion) in &waiting_ones {
        if let Some(staged) = &mut staged[*i] {
            staged.filed = Some((conversion.id, filed.contains(&conversion.id)));
        }
    }
    Ok(staged)
}

/// The automatic checks of a submission against its tax code's latest credential:
/// whether the PIN passed, and every failure.
fn assess(
    worker: &Verification,
    submission: &Submission,
    credential: Option<&Credential>,
    message: &Message<'_>,
) -> (bool, Vec<Failure>) {
    let pin = checks::pin(credential, message.now);
    let mut failures: Vec<Failure> = pin.err().into_iter().collect();
    let max_bytes = worker.rules.conversion_max_document_bytes;
    let today = message.now.date_naive();
    failures.extend(checks::documents(
        &submission.documents,
        &submission.identity_document,
        today,
        max_bytes,
    ));
    (pin.is_ok(), failures)
}

/// A conversion that passed its checks, to wait for review.
fn waiting(id: Uuid, submission: &Submission, credential_id: Uuid) -> Conversion {
    Conversion {
        id,
        tax_code: submission.tax_code.clone(),
        credential_id: Some(credential_id),
        channel: submission.channel,
        status: Status::UnderReview,
    }
}

/// Handles one `conversion.submit`; `staged` when its batch locked its credential.
pub async fn handle(
    worker: &Verification,
    submission: &Submission,
    staged: Option<Staged>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = &submission.tax_code;
    // Locks the PIN: submissions and reviews of it take turns.
    let (latest, filed) = match staged {
        Some(Staged { latest, filed }) => (latest, filed),
        None => (
            credentials::latest_for_update(conn, tax_code.as_str()).await?,
            None,
        ),
    };
    let credential = latest.map(|stored| stored.credential);
    let (pin, mut failures) = assess(worker, submission, credential.as_ref(), message);
    let credential_id = credential.as_ref().map(|c| c.id);
    // A refusal lists every failed check, a conversion already waiting among them. A
    // submission that passed the others learns that from its insert (see `store`).
    if !failures.is_empty()
        && let (true, Some(id)) = (pin, credential_id)
        && record::pending_for(conn, id).await?.is_some()
    {
        failures.push(Failure::AlreadyUnderReview);
    }
    let mut conversion = Conversion {
        id: filed.map_or_else(Uuid::new_v4, |(id, _)| id),
        tax_code: tax_code.clone(),
        credential_id,
        channel: submission.channel,
        status: if failures.is_empty() {
            Status::UnderReview
        } else {
            Status::Rejected
        },
    };
    let actor = submission.actor(&message.envelope.source);
    let mut reasons: Vec<String> = failures.iter().map(|f| f.as_str().to_owned()).collect();
    let stored = match filed {
        // Its batch filed it: the same checks passed, so it waits for review.
        Some((_, inserted)) => inserted,
        None => store(conn, submission, &conversion, &reasons, actor, message).await?,
    };
    if !stored {
        // Another submission of the same PIN waits for review.
        reasons = vec![Failure::AlreadyUnderReview.as_str().to_owned()];
        conversion.status = Status::Rejected;
        store(conn, submission, &conversion, &reasons, actor, message).await?;
    }
    let detail = json!({ "conversion_id": conversion.id, "channel": submission.channel });
    if conversion.status == Status::Rejected {
        let detail = json!({ "conversion_id": conversion.id, "reasons": reasons });
        message.audit(
            actor,
            "conversion.rejected",
            Some(tax_code.as_str()),
            credential_id,
            detail,
        );
        return outcome::rejected(conn, message, &conversion, reasons).await;
    }
    let credential = credential.ok_or_else(|| {
        HandlerError::Permanent("a conversion that passed its checks has no credential".into())
    })?;
    let Some(channel) = ReviewChannel::of(submission.channel) else {
        // Office: the operator saw the citizen and the document.
        return outcome::approve(conn, message, &conversion, &credential, actor).await;
    };
    let action = "conversion.review_requested";
    message.audit(
        actor,
        action,
        Some(tax_code.as_str()),
        credential_id,
        detail,
    );
    let requested = ConversionReviewRequested {
        tax_code: tax_code.clone(),
        conversion_id: conversion.id,
        credential_id: credential.id,
        channel,
        documents: submission.documents.clone(),
        identity_document: submission.identity_document.clone(),
        fax: submission.fax.clone(),
        submitted_at: message.now,
    };
    Ok(vec![Outgoing::typed_event(&requested, message.now)?])
}

/// Records the submission as a conversion in its status; `false` if it was to wait for
/// review and another conversion of the PIN already does.
async fn store(
    conn: &mut PgConnection,
    submission: &Submission,
    conversion: &Conversion,
    reasons: &[String],
    actor: &str,
    message: &Message<'_>,
) -> Result<bool, sqlx::Error> {
    let new = new_conversion(submission, conversion, reasons, actor, message);
    record::insert(conn, &new).await
}

/// The row that records `conversion`.
fn new_conversion<'a>(
    submission: &'a Submission,
    conversion: &'a Conversion,
    reasons: &'a [String],
    actor: &'a str,
    message: &'a Message<'_>,
) -> NewConversion<'a> {
    NewConversion {
        id: conversion.id,
        tax_code: &conversion.tax_code,
        credential_id: conversion.credential_id,
        channel: submission.channel,
        status: conversion.status,
        documents: &submission.documents,
        identity_document: &submission.identity_document,
        fax: submission.fax.as_ref(),
        reasons,
        submitted_by: actor,
        message_id: &message.envelope.id,
        at: message.now,
    }
}
