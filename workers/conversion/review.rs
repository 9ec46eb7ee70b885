//! `conversion.review`: an operator approves or rejects a conversion waiting for review.
//! A review of an unknown conversion, of one already decided, or of one whose PIN was
//! since revoked or expired is refused with `conversion.review.rejected` and changes
//! nothing. Two reviews of one conversion take turns on its row: one decides, the
//! other is refused as `already_decided`.

use serde_json::json;
use sqlx::PgConnection;

use super::command::Review;
use super::outcome;
use super::record::{self, Status};
use crate::contract::Outgoing;
use crate::contract::commands::Decision;
use crate::contract::events::{ConversionReviewRejected, ReviewRefusal};
use crate::domain::TaxCode;
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::credentials;

/// Handles one `conversion.review`.
pub async fn handle(
    review: &Review,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let Some(found) = record::find(conn, review.conversion_id).await? else {
        return refuse(review, None, ReviewRefusal::UnknownConversion, message);
    };
    // The credential first, then the conversion: the order a submission takes them in.
    let stored = match found.credential_id {
        Some(id) => credentials::by_id_for_update(conn, id).await?,
        None => None,
    };
    let conversion = record::lock(conn, found.id)
        .await?
        .ok_or_else(|| HandlerError::Permanent("the conversion disappeared".into()))?;
    let tax_code = Some(&conversion.tax_code);
    if conversion.status != Status::UnderReview {
        return refuse(review, tax_code, ReviewRefusal::AlreadyDecided, message);
    }
    let stored = stored.ok_or_else(|| {
        HandlerError::Permanent("a conversion waiting for review has no credential".into())
    })?;
    if let Err(refusal) = stored.credential.convert(message.now) {
        return refuse(review, tax_code, refusal.into(), message);
    }
    let actor = review.operator_id.as_str();
    match review.decision {
        Decision::Approved => {
            outcome::approve(conn, message, &conversion, &stored.credential, actor).await
        }
        Decision::Rejected => {
            outcome::reject(conn, message, &conversion, &review.reasons, actor).await
        }
    }
}

/// Refuses a review: an audit row and `conversion.review.rejected`, nothing else.
fn refuse(
    review: &Review,
    tax_code: Option<&TaxCode>,
    reason: ReviewRefusal,
    message: &Message<'_>,
) -> Result<Vec<Outgoing>, HandlerError> {
    let event = ConversionReviewRejected {
        tax_code: tax_code.cloned(),
        conversion_id: review.conversion_id,
        reason,
        decision: review.decision,
        operator_id: review.operator_id.clone(),
    };
    let detail = json!({
        "conversion_id": review.conversion_id,
        "reason": reason,
        "decision": review.decision,
    });
    let actor = &review.operator_id;
    let tax_code = tax_code.map(TaxCode::as_str);
    message.audit(actor, "conversion.review.rejected", tax_code, None, detail);
    Ok(vec![Outgoing::typed_event(&event, message.now)?])
}
