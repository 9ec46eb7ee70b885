//! `pin.revoke`: online, the health card and an e-mail or PEC must be those on
//! record; at the contact center the operator answers for it. A revoked PIN never
//! verifies, resets or converts again: every check refuses it, its hashes are gone and
//! its pending reset tokens end with it. The citizen is told by e-mail or PEC.

use serde_json::json;
use sqlx::PgConnection;

use super::command::{Proof, Revoke};
use super::{actor, store};
use crate::contract::account_events::{PinRevokeRejected, PinRevoked, RevokeRejection};
use crate::contract::outgoing::encode;
use crate::contract::{Notice, Outgoing};
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::profiles::Profile;
use crate::store::{credentials, profiles};

/// Whether the proofs of an online revocation are those on record: both must be.
fn proven(proof: &Proof, profile: &Profile) -> bool {
    match proof {
        Proof::Operator(_) => true,
        Proof::Citizen {
            health_card,
            email_or_pec,
        } => {
            let card = profile.health_card.as_ref() == Some(health_card);
            let contacts = &profile.contacts;
            let address = [&contacts.email, &contacts.pec]
                .into_iter()
                .flatten()
                .any(|a| a.as_str().eq_ignore_ascii_case(email_or_pec.as_str()));
            card && address
        }
    }
}

/// Handles one `pin.revoke`.
pub async fn handle(
    revoke: &Revoke,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = revoke.tax_code.as_str();
    let who = match &revoke.proof {
        Proof::Operator(operator) => Some(operator.as_str()),
        Proof::Citizen { .. } => None,
    };
    let actor = actor(who, message);
    let stored = credentials::latest_for_update(conn, tax_code).await?;
    let Some((stored, revoked)) = stored.and_then(|s| s.credential.revoke().ok().map(|r| (s, r)))
    else {
        return refuse(revoke, message, actor, RevokeRejection::NotFound);
    };
    let id = stored.credential.id;
    let profile = profiles::of(conn, id)
        .await?
        .ok_or_else(|| HandlerError::Permanent("a locked credential vanished".into()))?;
    if !proven(&revoke.proof, &profile) {
        return refuse(revoke, message, actor, RevokeRejection::IdentityMismatch);
    }
    store::revoke(conn, revoked.id, message.now).await?;
    let detail = json!({ "channel": revoke.channel, "reason": revoke.reason, "was": stored.credential.status.as_str() });
    message.audit(actor, "pin.revoked", Some(tax_code), Some(id), detail);
    let event = PinRevoked {
        tax_code: revoke.tax_code.clone(),
        credential_id: id,
        channel: revoke.channel,
    };
    let mut out = vec![Outgoing::typed_event(&event, message.now)?];
    if let Some((channel, to)) = profile.notice_address() {
        let notice = Notice {
            channel,
            template: "pin_revoked",
            to: json!(to.as_str()),
            params: json!({
                "credential_id": id,
                "given_name": profile.given_name,
                "family_name": profile.family_name,
                "channel": revoke.channel,
            }),
            tax_code: tax_code.to_owned(),
            credential_id: Some(id),
            secret: None,
        };
        out.push(Outgoing::notification(notice, message.now));
    }
    Ok(out)
}

fn refuse(
    revoke: &Revoke,
    message: &Message<'_>,
    actor: &str,
    reason: RevokeRejection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let event = PinRevokeRejected {
        tax_code: revoke.tax_code.clone(),
        reason,
        channel: revoke.channel,
    };
    let tax_code = revoke.tax_code.as_str();
    message.audit(
        actor,
        "pin.revoke.rejected",
        Some(tax_code),
        None,
        encode(&event)?,
    );
    Ok(vec![Outgoing::typed_event(&event, message.now)?])
}
