//! `delegation.grant` and `delegation.revoke`. A grant is refused (`delegation.rejected`)
//! when the delegator names themself, when its `valid_until` has already ended, when
//! the delegate holds no live credential, or when the pair already has a live
//! delegation (which it leaves as it is). A revocation names a delegation by id: one
//! that has already ended is refused; an id pinflow never minted is a dead letter.

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::command::{Grant, Revoke};
use super::expiry::expire;
use super::store::{self, Delegation, Status};
use super::tax_code;
use crate::contract::Outgoing;
use crate::contract::events::{
    DelegationGranted, DelegationRefusal, DelegationRejected, DelegationRevoked,
};
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::credentials;

/// Handles one `delegation.grant`.
pub async fn grant(
    grant: &Grant,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let refuse = |reason, existing| refusal(grant, reason, existing);
    if grant.delegator == grant.delegate {
        return refuse(DelegationRefusal::SelfDelegation, None).emit(message);
    }
    let ends_at = match grant.valid_until {
        Some(day) => Some(store::end_of(conn, day).await?),
        None => None,
    };
    if ends_at.is_some_and(|end| end <= message.now) {
        return refuse(DelegationRefusal::ValidUntilPast, None).emit(message);
    }
    let delegate = credentials::latest_for_update(conn, grant.delegate.as_str()).await?;
    if !delegate.is_some_and(|d| d.credential.is_live(message.now)) {
        return refuse(DelegationRefusal::DelegateNotLive, None).emit(message);
    }
    let (delegator, delegate) = (grant.delegator.as_str(), grant.delegate.as_str());
    let mut out = Vec::new();
    if let Some(existing) = store::live_pair_for_update(conn, delegator, delegate).await? {
        if existing.is_live(message.now) {
            let refused = refuse(DelegationRefusal::AlreadyDelegated, Some(existing.id));
            return refused.emit(message);
        }
        out.push(expire(conn, &existing, message.now, Some(&message.envelope.id)).await?);
    }
    let delegation = Delegation {
        id: Uuid::new_v4(),
        delegator: delegator.to_owned(),
        delegate: delegate.to_owned(),
        valid_until: grant.valid_until,
        ends_at,
        status: Status::Live,
    };
    if !store::insert(conn, &delegation, message.now, &grant.operator_id).await? {
        // A concurrent grant for the pair committed first: this one changes nothing.
        let live = store::live_pair_for_update(conn, delegator, delegate).await?;
        let refused = refuse(DelegationRefusal::AlreadyDelegated, live.map(|d| d.id));
        return refused.emit(message);
    }
    let granted = DelegationGranted {
        tax_code: grant.delegator.clone(),
        delegation_id: delegation.id,
        delegate_tax_code: grant.delegate.clone(),
        valid_until: grant.valid_until,
        ends_at,
    };
    let detail = json!({ "delegation_id": delegation.id, "delegate_tax_code": delegate,
        "valid_until": grant.valid_until, "ends_at": ends_at });
    let actor = &grant.operator_id;
    message.audit(actor, "delegation.granted", Some(delegator), None, detail);
    out.push(Outgoing::typed_event(&granted, message.now)?);
    Ok(out)
}

/// Handles one `delegation.revoke`.
pub async fn revoke(
    revoke: &Revoke,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let Some(delegation) = store::for_update(conn, revoke.delegation_id).await? else {
        return Err(HandlerError::Permanent(
            "no delegation has this delegation_id".into(),
        ));
    };
    let message_id = Some(message.envelope.id.as_str());
    let mut out = Vec::new();
    if !delegation.is_live(message.now) {
        if delegation.is_due(message.now) {
            out.push(expire(conn, &delegation, message.now, message_id).await?);
        }
        let refused = Refusal {
            event: DelegationRejected {
                tax_code: tax_code(&delegation.delegator)?,
                reason: DelegationRefusal::NotLive,
                delegate_tax_code: tax_code(&delegation.delegate)?,
                delegation_id: Some(delegation.id),
            },
            actor: &revoke.operator_id,
        };
        out.extend(refused.emit(message)?);
        return Ok(out);
    }
    let (delegator, delegate) = (delegation.delegator.as_str(), delegation.delegate.as_str());
    store::end(
        conn,
        delegation.id,
        Status::Revoked,
        message.now,
        &revoke.operator_id,
    )
    .await?;
    let detail = json!({ "delegation_id": delegation.id, "delegate_tax_code": delegate });
    let actor = &revoke.operator_id;
    message.audit(actor, "delegation.revoked", Some(delegator), None, detail);
    let revoked = DelegationRevoked {
        tax_code: tax_code(delegator)?,
        delegation_id: delegation.id,
        delegate_tax_code: tax_code(delegate)?,
    };
    out.push(Outgoing::typed_event(&revoked, message.now)?);
    Ok(out)
}

/// A refusal about to be audited and announced.
struct Refusal<'a> {
    /// What `delegation.rejected` says.
    event: DelegationRejected,
    /// The operator whose command it refuses.
    actor: &'a str,
}

fn refusal(grant: &Grant, reason: DelegationRefusal, existing: Option<Uuid>) -> Refusal<'_> {
    Refusal {
        event: DelegationRejected {
            tax_code: grant.delegator.clone(),
            reason,
            delegate_tax_code: grant.delegate.clone(),
            delegation_id: existing,
        },
        actor: &grant.operator_id,
    }
}

impl Refusal<'_> {
    /// Audits the refusal and returns `delegation.rejected`; nothing else changes.
    fn emit(self, message: &Message<'_>) -> Result<Vec<Outgoing>, HandlerError> {
        let detail = serde_json::to_value(&self.event)
            .map_err(|e| HandlerError::Permanent(format!("cannot encode a refusal: {e}")))?;
        let tax_code = self.event.tax_code.as_str();
        let action = "delegation.rejected";
        message.audit(self.actor, action, Some(tax_code), None, detail);
        Ok(vec![Outgoing::typed_event(&self.event, message.now)?])
    }
}
