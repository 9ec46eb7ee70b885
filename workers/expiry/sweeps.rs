//! The sweeps: each claims a batch of due rows, lets the credential state machine
//! decide, marks them, and announces what happened with ids derived from the
//! credential, the kind of deadline and the deadline, so a pass that dies before its
//! commit and runs again never announces twice. The deadlines themselves are enforced
//! by every check at the instant they pass; a sweep only records and announces.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::store::{self, Audited, Claim, Due};
use crate::contract::account_events::{Deadline, PinExpired, PinExpiring};
use crate::contract::outgoing::derived_id;
use crate::contract::{Notice, Outgoing};
use crate::domain::{Period, TaxCode};
use crate::error::HandlerError;
use crate::runtime::Batch;

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What one claimed credential announces: its event and, where the holder has an
/// e-mail or PEC on record, the notice.
struct Announcement<'a> {
    /// The claimed row.
    due: &'a Due,
    /// `expired` or `expiring`: part of every derived id.
    what: &'static str,
    /// The deadline: part of every derived id.
    deadline: DateTime<Utc>,
}

impl Announcement<'_> {
    fn id(&self, part: &str) -> String {
        let credential = self.due.credential.id.to_string();
        derived_id(&[&credential, self.what, part, &instant(self.deadline)])
    }

    /// The tax code as an event needs it. It was checked at issue; a stored one that
    /// no longer parses is reported and the row is marked without an announcement, so
    /// one bad row never stops a sweep.
    fn tax_code(&self) -> Option<TaxCode> {
        let parsed = TaxCode::parse(&self.due.profile.tax_code);
        if parsed.is_err() {
            tracing::warn!(credential_id = %self.due.credential.id, "stored tax code does not parse; not announced");
        }
        parsed.ok()
    }

    fn notice(
        &self,
        template: &'static str,
        params: Value,
        now: DateTime<Utc>,
    ) -> Option<Outgoing> {
        let profile = &self.due.profile;
        let (channel, to) = profile.notice_address()?;
        let notice = Notice {
            channel,
            template,
            to: json!(to.as_str()),
            params,
            tax_code: profile.tax_code.clone(),
            credential_id: Some(self.due.credential.id),
            secret: None,
        };
        Some(Outgoing::notification(notice, now).with_id(self.id("notice")))
    }

    fn audited(&self, detail: Value) -> Audited {
        Audited {
            tax_code: self.due.profile.tax_code.clone(),
            credential_id: self.due.credential.id,
            detail,
        }
    }
}

/// Validity periods that have ended: expired, `pin.expired`, notice `pin_expired`.
pub async fn expire(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Batch, HandlerError> {
    ended(conn, now, limit, Claim::Expired, Deadline::Validity).await
}

/// Initial PINs whose window passed without a first access: expired, `pin.expired`
/// (`deadline: initial_pin`), no notice.
pub async fn initial_pins(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Batch, HandlerError> {
    ended(conn, now, limit, Claim::InitialPin, Deadline::InitialPin).await
}

async fn ended(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
    claim: Claim,
    kind: Deadline,
) -> Result<Batch, HandlerError> {
    let claimed = store::claim(conn, claim, now, limit).await?;
    let mut ids = Vec::with_capacity(claimed.len());
    let mut audited = Vec::with_capacity(claimed.len());
    let mut outgoing = Vec::with_capacity(claimed.len() * 2);
    for due in &claimed {
        let (Some(expired), Some(deadline)) =
            (due.credential.expire(now), due.credential.deadline())
        else {
            continue;
        };
        ids.push(expired.id);
        let said = Announcement {
            due,
            what: "expired",
            deadline,
        };
        audited.push(said.audited(json!({ "deadline": kind, "expired_at": instant(deadline) })));
        let Some(tax_code) = said.tax_code() else {
            continue;
        };
        let event = PinExpired {
            tax_code,
            credential_id: expired.id,
            expired_at: deadline,
            deadline: kind,
        };
        outgoing.push(Outgoing::typed_event(&event, now)?.with_id(said.id("event")));
        if kind == Deadline::Validity {
            let params = params(due, "expired_at", deadline);
            outgoing.extend(said.notice("pin_expired", params, now));
        }
    }
    store::mark_expired(conn, &ids, now).await?;
    store::audit_all(conn, now, "pin.expired", &audited).await?;
    Ok(Batch {
        handled: claimed.len(),
        outgoing,
    })
}

/// Validity periods ending within `ahead`: `pin.expiring` and notice `pin_expiring`,
/// once per deadline.
pub async fn remind(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
    ahead: &Period,
) -> Result<Batch, HandlerError> {
    let horizon = ahead.add_to(now);
    let claimed = store::claim(conn, Claim::Reminder { horizon }, now, limit).await?;
    let mut ids = Vec::with_capacity(claimed.len());
    let mut audited = Vec::with_capacity(claimed.len());
    let mut outgoing = Vec::with_capacity(claimed.len() * 2);
    for due in &claimed {
        let (true, Some(valid_until)) = (
            due.credential.reminder_due(now, ahead),
            due.credential.valid_until,
        ) else {
            continue;
        };
        ids.push(due.credential.id);
        let said = Announcement {
            due,
            what: "expiring",
            deadline: valid_until,
        };
        audited.push(said.audited(json!({ "valid_until": instant(valid_until) })));
        let Some(tax_code) = said.tax_code() else {
            continue;
        };
        let event = PinExpiring {
            tax_code,
            credential_id: due.credential.id,
            valid_until,
        };
        outgoing.push(Outgoing::typed_event(&event, now)?.with_id(said.id("event")));
        let params = params(due, "valid_until", valid_until);
        outgoing.extend(said.notice("pin_expiring", params, now));
    }
    store::mark_reminded(conn, &ids).await?;
    store::audit_all(conn, now, "pin.expiring", &audited).await?;
    Ok(Batch {
        handled: claimed.len(),
        outgoing,
    })
}

/// Reset tokens past their deadline: marked expired (a confirmation already refuses
/// them from that instant); nothing to announce.
pub async fn reset_tokens(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Batch, HandlerError> {
    let handled = store::expire_reset_tokens(conn, now, limit).await?;
    Ok(Batch {
        handled,
        outgoing: Vec::new(),
    })
}

/// What the expiry templates need: the credential, the holder's name and the instant.
fn params(due: &Due, name: &str, at: DateTime<Utc>) -> Value {
    let mut params = json!({
        "credential_id": due.credential.id,
        "given_name": due.profile.given_name,
        "family_name": due.profile.family_name,
    });
    params[name] = json!(instant(at));
    params
}
