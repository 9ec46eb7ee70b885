//! `phone_pin.verify`: an operator checks the phone PIN a caller says. The same
//! protection as `pin.verify`: consecutive failures up to the threshold lock it
//! (`phone_pin.locked`), the attempt that locks answers `locked`, and past its validity
//! it answers `expired` from that instant, locked or not. Every check is audited with
//! the operator.

use serde_json::json;
use sqlx::PgConnection;

use super::command::Verify;
use super::state::{PhonePinState, Refusal};
use super::{PhonePins, answer, store};
use crate::contract::Outgoing;
use crate::contract::events::PhonePinLocked;
use crate::contract::outgoing::encode;
use crate::contract::replies::PhonePinVerifyReply;
use crate::domain::checked::{Checked, matches};
use crate::error::HandlerError;
use crate::runtime::Message;

fn refused(refusal: Refusal) -> PhonePinVerifyReply {
    match refusal {
        Refusal::Revoked => PhonePinVerifyReply::Revoked,
        Refusal::Expired => PhonePinVerifyReply::Expired,
        Refusal::Locked => PhonePinVerifyReply::Locked,
    }
}

/// Checks the presented phone PIN against `stored`, the tax code's phone PIN read
/// without a lock (see `domain::checked`), when the phone PIN would be compared at all
/// (a revoked, expired or locked one costs no hash).
pub async fn check_before(
    worker: &PhonePins,
    verify: &Verify,
    stored: Option<store::Stored>,
) -> Result<Option<Checked>, HandlerError> {
    let now = worker.clock.now();
    let Some(stored) = stored else {
        return Ok(None);
    };
    let Some(hash) = stored.pin_hash.filter(|_| stored.state.check(now).is_ok()) else {
        return Ok(None);
    };
    let presented = verify.phone_pin.expose();
    Ok(Some(
        Checked::against(&worker.hasher, presented, hash).await?,
    ))
}

/// A tax code's phone PIN as its batch locked it (see `PhonePins::handle_batch`):
/// `None` inside when it has none.
pub struct Locked(pub Option<store::Stored>);

/// Handles one `phone_pin.verify`, under the phone PIN's row lock (taken here unless
/// the batch took it): Argon2 runs here only when the hash changed since
/// `check_before`.
pub async fn handle(
    worker: &PhonePins,
    verify: &Verify,
    checked: Option<&Checked>,
    staged: Option<Locked>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = verify.tax_code.as_str();
    let stored = match staged {
        Some(Locked(stored)) => stored,
        None => store::for_update(conn, tax_code).await?,
    };
    let Some(stored) = stored else {
        // No phone PIN was ever issued: nothing to count a failure against.
        return Ok(vec![answer(message, &PhonePinVerifyReply::Invalid, None)?]);
    };
    let mut out = Vec::new();
    let reply = match (stored.state.check(message.now), &stored.pin_hash) {
        (Err(refusal), _) => refused(refusal),
        (Ok(()), None) => PhonePinVerifyReply::Expired,
        (Ok(()), Some(hash)) => {
            let presented = verify.phone_pin.expose();
            if matches(&worker.hasher, presented, Some(hash), checked).await? {
                if stored.state.failed_attempts > 0 {
                    let after = stored.state.succeed();
                    store::save_attempts(conn, tax_code, &after, message.now).await?;
                }
                PhonePinVerifyReply::Ok {
                    valid_until: stored.state.valid_until,
                }
            } else {
                let after = stored.state.fail(worker.rules.lockout_threshold);
                store::save_attempts(conn, tax_code, &after, message.now).await?;
                locked(verify, &stored, &after, message, &mut out)?
            }
        }
    };
    let detail = json!({ "status": encode(&reply)?["status"] });
    message.audit(
        &verify.operator_id,
        "phone_pin.verify",
        Some(tax_code),
        Some(stored.credential_id),
        detail,
    );
    out.insert(0, answer(message, &reply, None)?);
    Ok(out)
}

/// The reply to a wrong phone PIN; when this failure locked it, `phone_pin.locked` too.
fn locked(
    verify: &Verify,
    stored: &store::Stored,
    after: &PhonePinState,
    message: &Message<'_>,
    out: &mut Vec<Outgoing>,
) -> Result<PhonePinVerifyReply, HandlerError> {
    if !after.locked {
        return Ok(PhonePinVerifyReply::Invalid);
    }
    let event = PhonePinLocked {
        tax_code: verify.tax_code.clone(),
        credential_id: stored.credential_id,
        failed_attempts: after.failed_attempts,
    };
    out.push(Outgoing::typed_event(&event, message.now)?);
    Ok(PhonePinVerifyReply::Locked)
}
