//! `phone_pin.request`: a phone PIN only for a tax code whose credential is live (the
//! reply says `not_found`, `revoked` or `expired` otherwise, and nothing is issued). The
//! new phone PIN replaces the last one, is kept as a hash, and leaves pinflow once:
//! sealed in the reply to the caller's own queue.

use chrono::SubsecRound as _;
use serde_json::json;
use sqlx::PgConnection;
use zeroize::Zeroizing;

use super::command::{Request, period};
use super::{NewPhonePin, answer, store};
use crate::contract::events::PhonePinIssued;
use crate::contract::replies::PhonePinRequestReply;
use crate::contract::{Outgoing, SecretField};
use crate::domain::credential::Status;
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::credentials;

/// What a request's batch did for it (see `PhonePins::stage`): its tax code's latest
/// credential, locked, and where its new phone PIN goes to be stored with the batch's
/// others.
pub struct Batched<'b, 'a> {
    /// The tax code's latest credential, locked.
    pub latest: Option<credentials::Stored>,
    /// The phone PINs the batch stores once its handlers ran.
    pub later: &'b mut Vec<store::Replacement<'a>>,
}

/// Handles one `phone_pin.request`, under its credential's row lock (taken here unless
/// the batch took it).
pub async fn handle<'a>(
    request: &'a Request,
    new: &'a NewPhonePin,
    batched: Option<Batched<'_, 'a>>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = request.tax_code.as_str();
    let (latest, later) = match batched {
        Some(Batched { latest, later }) => (latest, Some(later)),
        None => (credentials::latest_for_update(conn, tax_code).await?, None),
    };
    let Some(stored) = latest else {
        return Ok(vec![answer(
            message,
            &PhonePinRequestReply::NotFound,
            None,
        )?]);
    };
    let credential = &stored.credential;
    if credential.status == Status::Revoked {
        return Ok(vec![answer(message, &PhonePinRequestReply::Revoked, None)?]);
    }
    if !credential.is_live(message.now) {
        return Ok(vec![answer(message, &PhonePinRequestReply::Expired, None)?]);
    }
    // To the millisecond, as the reply and the event write it: the instant the caller
    // is told is the instant it stops working.
    let valid_until = period(request.validity)
        .add_to(message.now)
        .trunc_subsecs(3);
    // Their wire names, as the table and the audit trail keep them.
    let validity = request.validity.as_str();
    let authenticated_with = request.authenticated_with.as_str();
    let replacement = store::Replacement {
        tax_code,
        credential_id: credential.id,
        pin_hash: &new.hash,
        validity,
        authenticated_with,
        issued_at: message.now,
        valid_until,
    };
    match later {
        Some(later) => later.push(replacement),
        None => store::replace_all(conn, &[replacement]).await?,
    }
    let issued = PhonePinIssued {
        tax_code: request.tax_code.clone(),
        credential_id: credential.id,
        valid_until,
        validity: request.validity,
        authenticated_with: request.authenticated_with,
    };
    let detail = json!({ "validity": validity, "authenticated_with": authenticated_with,
        "valid_until": issued.valid_until });
    message.audit(
        &message.envelope.source,
        "phone_pin.issued",
        Some(tax_code),
        Some(credential.id),
        detail,
    );
    let secret = SecretField {
        field: PhonePinRequestReply::SECRET_FIELD,
        value: Zeroizing::new(new.pin.expose().to_owned()),
    };
    Ok(vec![
        answer(
            message,
            &PhonePinRequestReply::Ok { valid_until },
            Some(secret),
        )?,
        Outgoing::typed_event(&issued, message.now)?,
    ])
}
