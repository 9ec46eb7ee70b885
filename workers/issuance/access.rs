//! `pin.first_access` and `pin.verify`: checking a presented PIN against its Argon2id
//! hash, counting consecutive failures and locking at the threshold.

use serde_json::json;
use sqlx::PgConnection;
use zeroize::Zeroizing;

use super::command::{FirstAccess, Verify};
use super::{Issuance, instant, reply};
use crate::contract::events::{PinActivated, PinLocked};
use crate::contract::outgoing::encode;
use crate::contract::replies::{FirstAccessReply, VerifyReply};
use crate::contract::{Outgoing, OutgoingData, SecretField};
use crate::domain::checked::{Checked, matches};
use crate::domain::credential::{self, Credential, Refusal, Status};
use crate::domain::{Pin, PinHasher, TaxCode};
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::credentials::{self, Saved, Stored};

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

/// Which stored secret a presented one is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Against {
    /// The initial PIN (`pin.first_access`).
    InitialPin,
    /// The PIN (`pin.verify`).
    Pin,
}

/// Checks the presented secret against the one stored in the tax code's credential,
/// read without a lock (see `domain::checked`), when the command would get as far as
/// comparing them (a credential that refuses it anyway costs no hash).
pub async fn check_before(
    worker: &Issuance,
    latest: Option<Stored>,
    presented: &str,
    against: Against,
) -> Result<Option<Checked>, HandlerError> {
    let now = worker.clock.now();
    let Some(stored) = latest else {
        return Ok(None);
    };
    let credential = &stored.credential;
    let (open, hash) = match against {
        Against::InitialPin => (
            credential.check_first_access(now).is_ok(),
            stored.initial_pin_hash,
        ),
        Against::Pin => (credential.check_verify(now).is_ok(), stored.pin_hash),
    };
    let Some(hash) = hash.filter(|_| open) else {
        return Ok(None);
    };
    Ok(Some(
        Checked::against(&worker.hasher, presented, hash).await?,
    ))
}

/// The RPC reply to `message` from its typed data.
fn answer<R: OutgoingData>(
    message: &Message<'_>,
    data: &R,
    secret: Option<SecretField>,
) -> Result<Outgoing, HandlerError> {
    Ok(reply(message, encode(data)?, secret))
}

/// A reply for a refusal this command's contract has no status for: an impossible
/// state, never a retry.
fn unanswerable(refusal: Refusal) -> HandlerError {
    HandlerError::Permanent(format!("no reply status for refusal {}", refusal.as_str()))
}

/// What a command's batch did for it (see `Issuance::stage`): its credential, locked,
/// and where its new state goes to be stored with the batch's others.
pub struct Batched<'a> {
    /// The tax code's latest credential, locked.
    pub latest: Option<Stored>,
    /// The new states the batch stores once its handlers ran.
    pub later: &'a mut Vec<Saved>,
}

impl<'a> Batched<'a> {
    fn split(batched: Option<Batched<'a>>) -> (Option<Option<Stored>>, Option<&'a mut Vec<Saved>>) {
        match batched {
            Some(Batched { latest, later }) => (Some(latest), Some(later)),
            None => (None, None),
        }
    }
}

/// Stores a credential's new state now, or keeps it for `later`, when its batch stores
/// the states of the commands it locked for (see `Issuance::stage`) in one statement.
async fn keep(
    conn: &mut PgConnection,
    saved: Saved,
    later: Option<&mut Vec<Saved>>,
) -> Result<(), sqlx::Error> {
    match later {
        Some(later) => {
            later.push(saved);
            Ok(())
        }
        None => credentials::save_all(conn, std::slice::from_ref(&saved)).await,
    }
}

/// Counts a failure; returns the refusal (invalid or locked) and, when this failure
/// locked the credential, the `pin.locked` event.
async fn failed(
    worker: &Issuance,
    stored: &Stored,
    tax_code: &TaxCode,
    message: &Message<'_>,
    conn: &mut PgConnection,
    later: Option<&mut Vec<Saved>>,
) -> Result<(Refusal, Option<Outgoing>), HandlerError> {
    let after = stored.credential.fail(worker.rules.lockout_threshold);
    keep(conn, Saved::new(&after, None, message.now), later).await?;
    if after.status != Status::Locked {
        return Ok((Refusal::Invalid, None));
    }
    let detail = json!({ "failed_attempts": after.failed_attempts });
    message.audit(
        &message.envelope.source,
        "pin.locked",
        Some(tax_code.as_str()),
        Some(after.id),
        detail,
    );
    let locked = PinLocked {
        tax_code: tax_code.clone(),
        credential_id: after.id,
        failed_attempts: after.failed_attempts,
    };
    Ok((
        Refusal::Locked,
        Some(Outgoing::typed_event(&locked, message.now)?),
    ))
}

/// The tax code's latest credential, locked: as its batch locked it (`latest`), or
/// locked now.
async fn locked(
    latest: Option<Option<Stored>>,
    tax_code: &str,
    conn: &mut PgConnection,
) -> Result<Option<Stored>, sqlx::Error> {
    match latest {
        Some(latest) => Ok(latest),
        None => credentials::latest_for_update(conn, tax_code).await,
    }
}

/// Handles one `pin.first_access`; `batched` when its batch locked its credential.
pub async fn first_access(
    worker: &Issuance,
    access: &FirstAccess,
    new_pin: &NewPin,
    checked: Option<&Checked>,
    batched: Option<Batched<'_>>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let (latest, later) = Batched::split(batched);
    let refused = |refusal: Refusal| FirstAccessReply::try_from(refusal).map_err(unanswerable);
    let tax_code = access.tax_code.as_str();
    let Some(stored) = locked(latest, tax_code, conn).await? else {
        return Ok(vec![answer(message, &FirstAccessReply::NotFound, None)?]);
    };
    if let Err(refusal) = stored.credential.check_first_access(message.now) {
        return Ok(vec![answer(message, &refused(refusal)?, None)?]);
    }
    let presented = access.initial_pin.expose();
    let hash = stored.initial_pin_hash.as_ref();
    if !matches(&worker.hasher, presented, hash, checked).await? {
        let (refusal, event) =
            failed(worker, &stored, &access.tax_code, message, conn, later).await?;
        let mut out = vec![answer(message, &refused(refusal)?, None)?];
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
    keep(
        conn,
        Saved::new(&active, Some(&new_pin.hash), message.now),
        later,
    )
    .await?;
    let valid_until = active.valid_until.unwrap_or(message.now);
    message.audit(
        &message.envelope.source,
        "pin.activated",
        Some(tax_code),
        Some(active.id),
        json!({ "valid_until": instant(valid_until) }),
    );
    let secret = SecretField {
        field: FirstAccessReply::SECRET_FIELD,
        value: Zeroizing::new(new_pin.pin.expose().to_owned()),
    };
    let activated = PinActivated {
        tax_code: access.tax_code.clone(),
        credential_id: active.id,
        kind: active.kind,
        valid_until,
    };
    Ok(vec![
        answer(message, &FirstAccessReply::Ok { valid_until }, Some(secret))?,
        Outgoing::typed_event(&activated, message.now)?,
    ])
}

/// Handles one `pin.verify`; `batched` when its batch locked its credential.
pub async fn verify(
    worker: &Issuance,
    verify: &Verify,
    checked: Option<&Checked>,
    batched: Option<Batched<'_>>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let (latest, later) = Batched::split(batched);
    let refused = |refusal: Refusal| VerifyReply::try_from(refusal).map_err(unanswerable);
    let tax_code = verify.tax_code.as_str();
    let Some(stored) = locked(latest, tax_code, conn).await? else {
        return Ok(vec![answer(message, &VerifyReply::NotFound, None)?]);
    };
    if let Err(refusal) = stored.credential.check_verify(message.now) {
        return Ok(vec![answer(message, &refused(refusal)?, None)?]);
    }
    let presented = verify.pin.expose();
    if !matches(&worker.hasher, presented, stored.pin_hash.as_ref(), checked).await? {
        let (refusal, event) =
            failed(worker, &stored, &verify.tax_code, message, conn, later).await?;
        let mut out = vec![answer(message, &refused(refusal)?, None)?];
        out.extend(event);
        return Ok(out);
    }
    let valid_until = stored.credential.valid_until.ok_or_else(|| {
        HandlerError::Permanent("an activated credential has no validity period".into())
    })?;
    // A PIN hashed with other (older, weaker) Argon2 costs is re-hashed now, while the
    // PIN is at hand.
    let rehashed = match stored.pin_hash.as_deref() {
        Some(hash) if !worker.hasher.is_current(hash) => Some(
            worker
                .hasher
                .hash_off_thread(verify.pin.expose().to_owned())
                .await?,
        ),
        _ => None,
    };
    if stored.credential.failed_attempts > 0 || rehashed.is_some() {
        let after = stored.credential.succeed();
        keep(
            conn,
            Saved::new(&after, rehashed.as_deref(), message.now),
            later,
        )
        .await?;
    }
    let ok = VerifyReply::Ok {
        kind: stored.credential.kind,
        valid_until,
    };
    Ok(vec![answer(message, &ok, None)?])
}
