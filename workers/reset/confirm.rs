//! `pin.reset.confirm`: a pending token, in time, whose credential can still be
//! reset, is used once; a new initial PIN of the same kind replaces the PIN at once
//! (a lock goes with it), characters 1–8 by SMS and 9–16 by e-mail or PEC.

use chrono::SecondsFormat;
use serde_json::json;
use sqlx::PgConnection;
use zeroize::Zeroizing;

use super::{Reset, matching, refuse, store};
use crate::contract::account_events::{PinReset, ResetRejection};
use crate::contract::{Carries, Notice, Outgoing};
use crate::domain::{InitialPin, PinHasher, TaxCode};
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::{credentials, profiles};

/// A freshly generated initial PIN and its hash, made before the transaction.
pub struct NewInitialPin {
    pin: InitialPin,
    hash: String,
}

impl NewInitialPin {
    /// Generates an initial PIN from the OS CSPRNG and hashes it off the async threads.
    pub async fn generate(hasher: &PinHasher) -> Result<NewInitialPin, HandlerError> {
        let pin = InitialPin::generate();
        let hash = hasher.hash_off_thread(pin.expose().to_owned()).await?;
        Ok(NewInitialPin { pin, hash })
    }
}

/// Handles one `pin.reset.confirm`.
pub async fn handle(
    worker: &Reset,
    sha256: &[u8; 32],
    new_pin: &NewInitialPin,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let now = message.now;
    let Some(seen) = store::token(conn, sha256, false).await? else {
        // An unknown token names nobody, and every event names a tax code: the
        // refusal is audited, and there is no one to announce it about.
        let detail = json!({ "reason": ResetRejection::TokenInvalid, "token": "unknown" });
        message.audit(
            &message.envelope.source,
            "pin.reset.rejected",
            None,
            None,
            detail,
        );
        tracing::info!("reset confirmation with an unknown token refused");
        return Ok(Vec::new());
    };
    let tax_code = TaxCode::parse(&seen.tax_code)
        .map_err(|_| HandlerError::Permanent("a stored reset token has a bad tax code".into()))?;
    // The credential first, then the token: the order every writer of both keeps.
    let stored = credentials::latest_for_update(conn, tax_code.as_str()).await?;
    let token = store::token(conn, sha256, true).await?;
    let stored = stored.filter(|s| s.credential.id == seen.credential_id);
    let usable = token.filter(|t| t.usable(now));
    let reset = stored
        .as_ref()
        .zip(usable)
        .and_then(|(s, _)| s.credential.reset(now, &worker.rules.initial_pin_ttl).ok());
    let Some(reset) = reset else {
        let id = Some(seen.credential_id);
        return refuse(message, &tax_code, id, ResetRejection::TokenInvalid);
    };
    let profile = profiles::of(conn, reset.id)
        .await?
        .ok_or_else(|| HandlerError::Permanent("a locked credential vanished".into()))?;
    let (first_route, second_route) =
        matching::half_routes(&profile.contacts).ok_or_else(|| {
            HandlerError::Permanent(
                "the contacts on record offer no two channels for the halves".into(),
            )
        })?;
    store::use_token(conn, sha256, now).await?;
    store::save_reset(conn, &reset, &new_pin.hash).await?;
    let initial_pin_expires_at = reset.initial_pin_expires_at.unwrap_or(now);
    let until = initial_pin_expires_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    message.audit(
        &message.envelope.source,
        "pin.reset",
        Some(tax_code.as_str()),
        Some(reset.id),
        json!({ "kind": reset.kind, "initial_pin_expires_at": until }),
    );
    let (first, second) = new_pin.pin.split();
    let params = json!({
        "credential_id": reset.id,
        "given_name": profile.given_name,
        "family_name": profile.family_name,
    });
    let half = |(channel, to): (_, String), carries, text: &str| {
        let notice = Notice {
            channel,
            template: "pin_reset_half",
            to: json!(to),
            params: params.clone(),
            tax_code: tax_code.as_str().to_owned(),
            credential_id: Some(reset.id),
            secret: Some((carries, Zeroizing::new(text.to_owned()))),
        };
        Outgoing::notification(notice, now)
    };
    let event = PinReset {
        tax_code: tax_code.clone(),
        credential_id: reset.id,
        kind: reset.kind,
        initial_pin_expires_at,
    };
    Ok(vec![
        half(first_route, Carries::FirstHalf, first.expose()),
        half(second_route, Carries::SecondHalf, second.expose()),
        Outgoing::typed_event(&event, now)?,
    ])
}
