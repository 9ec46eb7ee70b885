//! `application.submit` and what becomes of a held application. Device-level
//! authentication: accepted at once. An ordinary PIN: held, with the envelope's `time`
//! as its filing time, so time limits stop running then. When the citizen's PIN
//! becomes a device PIN (`pin.converted`), every held application of theirs is
//! released, once each, in filing order, with its original `filed_at`; one that
//! arrives after the conversion is held and released at once. When the PIN is revoked
//! (`pin.revoked`), held applications stay held and say so. An application is its
//! applicant and the portal's id: filed again, it is not filed twice. What is announced
//! carries ids derived from the application, so an announcement repeated for any
//! reason is one to its readers.

use std::collections::HashSet;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;
use sqlx::{PgConnection, Row as _};

use super::command::{Application, Command, CredentialEvent};
use crate::contract::Outgoing;
use crate::contract::events::{
    ApplicationAccepted, ApplicationHeld, ApplicationReleased, HoldReason,
};
use crate::contract::outgoing::derived_id;
use crate::domain::credential::Kind;
use crate::error::HandlerError;
use crate::runtime::{Handling, Message, together};
use crate::store::credentials;

/// An `application.submit` filed with its batch's (see `stage`).
pub struct Staged {
    /// For a held application, the tax code's latest credential, locked.
    current: Option<credentials::Stored>,
    /// Whether it was filed now; if not, the applicant filed this id before.
    filed: bool,
}

/// Files, in one statement, each application of the batch whose tax code nothing
/// else in the batch names, after locking in one statement the credentials of those
/// to be held; says per command what became of it (`None` for the others, which
/// `submit` files itself). A `conversion.review` names its conversion and not a tax
/// code, so a batch with one stages nothing; nor does a batch with fewer than two.
pub async fn stage(
    batch: &[Handling<'_, Command>],
    conn: &mut PgConnection,
) -> Result<Vec<Option<Staged>>, HandlerError> {
    let mut staged: Vec<Option<Staged>> = batch.iter().map(|_| None).collect();
    let mut codes = Vec::with_capacity(batch.len());
    for item in batch {
        codes.push(match item.prepared {
            Command::Review(_) => return Ok(staged),
            Command::Application(app) => app.tax_code.as_str(),
            Command::Converted(event) | Command::Revoked(event) => event.tax_code.as_str(),
        });
    }
    let apps: Vec<(usize, &Application, &Message<'_>)> =
        together(&codes, |i| match batch[i].prepared {
            Command::Application(app) => Some(app),
            _ => None,
        })
        .into_iter()
        .map(|(i, app)| (i, app, batch[i].message))
        .collect();
    if apps.is_empty() {
        return Ok(staged);
    }
    let held: Vec<&str> = apps
        .iter()
        .filter(|(_, app, _)| !app.authenticated_with.is_device_level())
        .map(|(_, app, _)| app.tax_code.as_str())
        .collect();
    let mut current = credentials::latest_for_update_all(conn, &held).await?;
    let filed = file_all(conn, &apps).await?;
    for (i, app, _) in apps {
        let tax_code = app.tax_code.as_str();
        staged[i] = Some(Staged {
            current: current.remove(tax_code),
            filed: filed.contains(tax_code),
        });
    }
    Ok(staged)
}

/// When an application counts as filed: the envelope's time, else its receipt.
fn filed_at(app: &Application, message: &Message<'_>) -> DateTime<Utc> {
    app.filed_at.unwrap_or_else(|| message.now.trunc_subsecs(6))
}

/// Handles one `application.submit`; `staged` when it was filed with its batch's.
pub async fn submit(
    app: &Application,
    staged: Option<Staged>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let filed_at = filed_at(app, message);
    let held = !app.authenticated_with.is_device_level();
    let (current, filed) = match staged {
        Some(staged) => (staged.current, staged.filed),
        None => {
            // A held application locks the credential first, so a conversion of it
            // commits wholly before or after this; an accepted one does not depend on it.
            let current = if held {
                credentials::latest_for_update(conn, app.tax_code.as_str()).await?
            } else {
                None
            };
            let filed = file(conn, app, message).await?;
            (current, filed)
        }
    };
    if !filed {
        tracing::debug!("application already filed; nothing to do");
        return Ok(Vec::new());
    }
    let source = message.envelope.source.as_str();
    let tax_code = &app.tax_code;
    let detail = json!({ "application_id": app.application_id, "benefit": app.benefit,
        "authenticated_with": app.authenticated_with, "filed_at": filed_at });
    if !held {
        message.audit(
            source,
            "application.accepted",
            Some(tax_code.as_str()),
            None,
            detail,
        );
        let accepted = ApplicationAccepted {
            tax_code: tax_code.clone(),
            application_id: app.application_id.clone(),
            benefit: app.benefit.clone(),
        };
        let id = derived_id(&[
            "application.accepted",
            tax_code.as_str(),
            &app.application_id,
        ]);
        return Ok(vec![
            Outgoing::typed_event(&accepted, message.now)?.with_id(id),
        ]);
    }
    let credential = current.map(|stored| stored.credential);
    let credential_id = credential.as_ref().map(|c| c.id);
    message.audit(
        source,
        "application.held",
        Some(tax_code.as_str()),
        credential_id,
        detail,
    );
    let held = ApplicationHeld {
        tax_code: tax_code.clone(),
        application_id: app.application_id.clone(),
        filed_at,
        reason: HoldReason::OrdinaryPin,
        credential_id,
    };
    let id = derived_id(&["application.held", tax_code.as_str(), &app.application_id]);
    let mut out = vec![Outgoing::typed_event(&held, message.now)?.with_id(id)];
    // Filed after the conversion: the PIN is a device PIN already.
    if let Some(device) = credential.filter(|c| c.kind == Kind::Device && c.is_live(message.now)) {
        let converted = CredentialEvent {
            tax_code: tax_code.clone(),
            credential_id: device.id,
        };
        out.extend(release(&converted, message, conn).await?);
    }
    Ok(out)
}

/// Records a new application; `false` if the applicant filed this id before (the
/// first filing stands).
async fn file(
    conn: &mut PgConnection,
    app: &Application,
    message: &Message<'_>,
) -> Result<bool, HandlerError> {
    let filed = file_all(conn, &[(0, app, message)]).await?;
    Ok(!filed.is_empty())
}

/// Records new applications in one statement, held or accepted as their
/// authentication says; the tax codes of those filed now (each tax code is in `apps`
/// once; one filed before stands).
async fn file_all(
    conn: &mut PgConnection,
    apps: &[(usize, &Application, &Message<'_>)],
) -> Result<HashSet<String>, HandlerError> {
    let mut columns = Filings::default();
    for (_, app, message) in apps {
        let held = !app.authenticated_with.is_device_level();
        let (status, hold_reason) = status_of(held);
        columns.application_id.push(&app.application_id);
        columns.tax_code.push(app.tax_code.as_str());
        columns.benefit.push(&app.benefit);
        columns
            .authenticated_with
            .push(super::record::wire(&app.authenticated_with)?);
        columns.status.push(status);
        columns.hold_reason.push(hold_reason);
        columns.filed_at.push(filed_at(app, message));
        columns.message_id.push(&message.envelope.id);
        columns.received_at.push(message.now);
    }
    let filed: Vec<String> = sqlx::query_scalar(
        "insert into applications (application_id, tax_code, benefit, authenticated_with,
             status, hold_reason, filed_at, submit_message_id, received_at)
         select a, t, b, w, s, h, f, m, r
         from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::timestamptz[], $8::text[], $9::timestamptz[])
         with ordinality as n(a, t, b, w, s, h, f, m, r, o)
         order by o
         on conflict (tax_code, application_id) do nothing
         returning tax_code",
    )
    .bind(columns.application_id)
    .bind(columns.tax_code)
    .bind(columns.benefit)
    .bind(columns.authenticated_with)
    .bind(columns.status)
    .bind(columns.hold_reason)
    .bind(columns.filed_at)
    .bind(columns.message_id)
    .bind(columns.received_at)
    .fetch_all(&mut *conn)
    .await?;
    Ok(filed.into_iter().collect())
}

/// The columns of `file_all`'s rows.
#[derive(Default)]
struct Filings<'a> {
    application_id: Vec<&'a str>,
    tax_code: Vec<&'a str>,
    benefit: Vec<&'a str>,
    authenticated_with: Vec<String>,
    status: Vec<&'static str>,
    hold_reason: Vec<Option<&'static str>>,
    filed_at: Vec<DateTime<Utc>>,
    message_id: Vec<&'a str>,
    received_at: Vec<DateTime<Utc>>,
}

/// A new application's status and hold reason.
fn status_of(held: bool) -> (&'static str, Option<&'static str>) {
    if held {
        ("held", Some(HoldReason::OrdinaryPin.as_str()))
    } else {
        ("accepted", None)
    }
}

/// A held application that changed, in filing order.
struct Changed {
    application_id: String,
    filed_at: DateTime<Utc>,
    benefit: String,
}

fn in_filing_order(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Changed>, sqlx::Error> {
    let mut changed = rows
        .into_iter()
        .map(|row| {
            let seq: i64 = row.try_get("seq")?;
            let item = Changed {
                application_id: row.try_get("application_id")?,
                filed_at: row.try_get("filed_at")?,
                benefit: row.try_get("benefit")?,
            };
            Ok((seq, item))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    changed.sort_by(|(a_seq, a), (b_seq, b)| (a.filed_at, a_seq).cmp(&(b.filed_at, b_seq)));
    Ok(changed.into_iter().map(|(_, item)| item).collect())
}

/// `pin.converted`: releases every held application of the citizen, in filing order.
/// An application released before is not held any more, so none is released twice.
pub async fn release(
    converted: &CredentialEvent,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let rows = sqlx::query(
        "update applications a set status = 'released', hold_reason = null,
             released_at = $3, released_with = $2
         from (select application_id from applications
               where tax_code = $1 and status = 'held' for update) held
         where a.tax_code = $1 and a.application_id = held.application_id
         returning a.application_id, a.filed_at, a.seq, a.benefit",
    )
    .bind(converted.tax_code.as_str())
    .bind(converted.credential_id)
    .bind(message.now)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    let (tax_code, credential_id) = (&converted.tax_code, converted.credential_id);
    for app in in_filing_order(rows)? {
        let detail = json!({ "application_id": app.application_id, "filed_at": app.filed_at });
        let actor = crate::contract::SOURCE;
        message.audit(
            actor,
            "application.released",
            Some(tax_code.as_str()),
            Some(credential_id),
            detail,
        );
        let id = derived_id(&[
            "application.released",
            tax_code.as_str(),
            &app.application_id,
        ]);
        let released = ApplicationReleased {
            tax_code: tax_code.clone(),
            application_id: app.application_id,
            filed_at: app.filed_at,
            credential_id,
            benefit: app.benefit,
        };
        out.push(Outgoing::typed_event(&released, message.now)?.with_id(id));
    }
    Ok(out)
}

/// `pin.revoked`: held applications stay held, now for want of a PIN; each says so
/// once per revoked credential.
pub async fn still_held(
    revoked: &CredentialEvent,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let rows = sqlx::query(
        "update applications set hold_reason = $2
         where tax_code = $1 and status = 'held'
         returning application_id, filed_at, seq, benefit",
    )
    .bind(revoked.tax_code.as_str())
    .bind(HoldReason::PinRevoked.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    let (tax_code, credential_id) = (&revoked.tax_code, revoked.credential_id);
    for app in in_filing_order(rows)? {
        let detail =
            json!({ "application_id": app.application_id, "reason": HoldReason::PinRevoked });
        let actor = crate::contract::SOURCE;
        message.audit(
            actor,
            "application.held",
            Some(tax_code.as_str()),
            Some(credential_id),
            detail,
        );
        let id = derived_id(&[
            "application.held",
            tax_code.as_str(),
            &app.application_id,
            HoldReason::PinRevoked.as_str(),
            &credential_id.to_string(),
        ]);
        let held = ApplicationHeld {
            tax_code: tax_code.clone(),
            application_id: app.application_id,
            filed_at: app.filed_at,
            reason: HoldReason::PinRevoked,
            credential_id: Some(credential_id),
        };
        out.push(Outgoing::typed_event(&held, message.now)?.with_id(id));
    }
    Ok(out)
}
