//! `pin.first_access` and `pin.verify`: checking a presented PIN against its Argon2id
//! hash, counting consecutive failures and locking at the threshold.

use serde_json::json;
use sqlx::PgConnection;
use zeroize::Zeroizing;

use super::command::{FirstAccess, Verify};
use super::{Issuance, audit, instant, reply, status};
use crate::runtime::Message;
use crate::contract::{Outgoing, SecretField};
use crate::domain::credential::{self, Credential, Status};
use crate::domain::{Pin, PinHasher};
use crate::error::HandlerError;
use crate::store::credentials::{self, Stored};

/// The 8-character PIN that first access hands out, generated and hashed before the
/// transaction.
pub struct NewPin {
    pin: Pin,
    hash: String,
}

impl NewPin {
    /// Generates a PIN from the OS CSPRNG and hashes it off the async threads.
    pub async fn generate(hasher: &PinHasher) -> Result<NewPin, HandlerError> {
        let pin = Pin::generate();
        let hash = hasher.hash_off_thread(pin.expose().to_owned()).await?;
        Ok(NewPin { pin, hash })
    }
}

/// Compares a presented secret with a stored hash (a missing hash never matches).
async fn matches(
    worker: &Issuance,
    presented: &Zeroizing<String>,
    hash: Option<&String>,
) -> Result<bool, HandlerError> {
    match hash {
        None => Ok(false),
        Some(hash) => Ok(worker
            .hasher
            .verify_off_thread(presented.to_string(), hash.clone())
            .await?),
    }
}

/// Counts a failure; returns the reply status and, when this failure locked the
/// credential, the `pin.locked` event.
async fn failed(
    worker: &Issuance,
    stored: &Stored,
    tax_code: &str,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<(&'static str, Option<Outgoing>), HandlerError> {
    let after = stored.credential.fail(worker.rules.lockout_threshold);
    credentials::save(conn, &after, None, message.now).await?;
    if after.status != Status::Locked {
        return Ok(("invalid", None));
    }
    let detail = json!({ "failed_attempts": after.failed_attempts });
    audit(
        conn,
        message,
        &message.envelope.source,
        "pin.locked",
        tax_code,
        Some(after.id),
        detail,
    )
    .await?;
    let event = Outgoing::event(
        "pin.locked",
        json!({ "tax_code": tax_code, "credential_id": after.id, "failed_attempts": after.failed_attempts }),
        message.now,
    );
    Ok(("locked", Some(event)))
}

/// Handles one `pin.first_access`.
pub async fn first_access(
    worker: &Issuance,
    access: &FirstAccess,
    new_pin: &NewPin,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = access.tax_code.as_str();
    let Some(stored) = credentials::latest_for_update(conn, tax_code).await? else {
        return Ok(vec![reply(message, status("not_found"), None)]);
    };
    if let Err(refusal) = stored.credential.check_first_access(message.now) {
        return Ok(vec![reply(message, status(refusal.as_str()), None)]);
    }
    if !matches(
        worker,
        &access.initial_pin,
        stored.initial_pin_hash.as_ref(),
    )
    .await?
    {
        let (answer, event) = failed(worker, &stored, tax_code, message, conn).await?;
        let mut out = vec![reply(message, status(answer), None)];
        out.extend(event);
        return Ok(out);
    }
    let validity = credential::validity(
        stored.credential.holder,
        &worker.rules.validity_citizen,
        &worker.rules.validity_intermediary,
    );
    let active: Credential = stored
        .credential
        .activate(message.now, validity)
        .map_err(|r| HandlerError::Permanent(format!("activation refused: {}", r.as_str())))?;
    credentials::save(conn, &active, Some(&new_pin.hash), message.now).await?;
    let valid_until = instant(active.valid_until.unwrap_or(message.now));
    audit(
        conn,
        message,
        &message.envelope.source,
        "pin.activated",
        tax_code,
        Some(active.id),
        json!({ "valid_until": valid_until }),
    )
    .await?;
    let secret = SecretField {
        field: "pin",
        value: Zeroizing::new(new_pin.pin.expose().to_owned()),
    };
    Ok(vec![
        reply(
            message,
            json!({ "status": "ok", "valid_until": valid_until }),
            Some(secret),
        ),
        Outgoing::event(
            "pin.activated",
            json!({ "tax_code": tax_code, "credential_id": active.id, "kind": active.kind.as_str(), "valid_until": valid_until }),
            message.now,
        ),
    ])
}

/// Handles one `pin.verify`.
pub async fn verify(
    worker: &Issuance,
    verify: &Verify,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = verify.tax_code.as_str();
    let Some(stored) = credentials::latest_for_update(conn, tax_code).await? else {
        return Ok(vec![reply(message, status("not_found"), None)]);
    };
    if let Err(refusal) = stored.credential.check_verify(message.now) {
        return Ok(vec![reply(message, status(refusal.as_str()), None)]);
    }
    if !matches(worker, &verify.pin, stored.pin_hash.as_ref()).await? {
        let (answer, event) = failed(worker, &stored, tax_code, message, conn).await?;
        let mut out = vec![reply(message, status(answer), None)];
        out.extend(event);
        return Ok(out);
    }
    if stored.credential.failed_attempts > 0 {
        credentials::save(conn, &stored.credential.succeed(), None, message.now).await?;
    }
    let valid_until = stored.credential.valid_until.map(instant);
    Ok(vec![reply(
        message,
        json!({ "status": "ok", "kind": stored.credential.kind.as_str(), "valid_until": valid_until }),
        None,
    )])
}
