//! `pin.request`: eligibility, one live PIN per tax code, and delivery of the initial
//! PIN: split 8 + 8 over SMS-or-e-mail and post for an ordinary PIN, whole to the
//! office counter for a device PIN issued on the spot.

use std::collections::HashSet;

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::command::PinRequest;
use super::{Issuance, Prepared};
use crate::contract::commands::{Channel, FirstHalfVia};
use crate::contract::events::{Alternative, PinIssued, PinRequestRejected};
use crate::contract::outgoing::encode;
use crate::contract::{Carries, Notice, NotifyChannel, Outgoing};
use crate::domain::credential::Kind;
use crate::domain::{InitialPin, PinHasher};
use crate::error::HandlerError;
use crate::runtime::{Handling, Message, together};
use crate::store::credentials::{self, InsertError, NewCredential};

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

/// A `pin.request`'s credential, inserted with the rest of its batch's before the
/// handlers run (see `stage`).
pub struct Staged<'a> {
    /// The credential, as `handle` would have inserted it.
    new: NewCredential<'a>,
    /// Whether it went in; if not, the tax code had a current credential.
    inserted: bool,
}

/// Inserts, in one statement, the credential of each eligible `pin.request` of the
/// batch whose tax code (of `codes`, one per command) no other command of the batch
/// names, and says per command what became of it (`None` for the others, which
/// `handle` inserts itself). Those are the requests whose outcome cannot depend on the
/// batch's order. Fewer than two: nothing to gain, nothing done (see `together`).
pub async fn stage<'a>(
    worker: &Issuance,
    batch: &'a [Handling<'a, Prepared>],
    codes: &[&str],
    conn: &mut PgConnection,
) -> Result<Vec<Option<Staged<'a>>>, HandlerError> {
    let mut staged: Vec<Option<Staged<'a>>> = batch.iter().map(|_| None).collect();
    let eligible = |i: usize| match batch[i].prepared {
        Prepared::Request(request, Some(pin)) if request.is_eligible() => Some((request, pin)),
        _ => None,
    };
    let (places, news): (Vec<usize>, Vec<NewCredential<'a>>) = together(codes, eligible)
        .into_iter()
        .map(|(i, (request, pin))| {
            let new = new_credential(worker, request, pin, batch[i].message, Uuid::new_v4());
            (i, new)
        })
        .unzip();
    if news.is_empty() {
        return Ok(staged);
    }
    let inserted: HashSet<Uuid> = credentials::insert_all(conn, &news)
        .await?
        .into_iter()
        .collect();
    for (i, new) in places.into_iter().zip(news) {
        let inserted = inserted.contains(&new.id);
        staged[i] = Some(Staged { new, inserted });
    }
    Ok(staged)
}

/// The credential a `pin.request` issues, before it is inserted.
fn new_credential<'a>(
    worker: &Issuance,
    request: &'a PinRequest,
    pin: &'a NewInitialPin,
    message: &Message<'_>,
    id: Uuid,
) -> NewCredential<'a> {
    let kind = match request.channel {
        Channel::Office => Kind::Device,
        Channel::Online | Channel::ContactCenter => Kind::Ordinary,
    };
    NewCredential {
        id,
        tax_code: request.tax_code.as_str(),
        kind,
        holder: request.holder,
        channel: request.channel.as_str(),
        given_name: &request.given_name,
        family_name: &request.family_name,
        birth_date: request.birth_date,
        residence_country: request.residence_country.as_str(),
        contacts: json!(request.contacts),
        postal_address: json!(request.postal_address),
        health_card: request.health_card.as_ref().map(|card| json!(card)),
        initial_pin_hash: &pin.hash,
        initial_pin_expires_at: worker.rules.initial_pin_ttl.add_to(message.now),
        issued_at: message.now,
    }
}

/// Handles one `pin.request`; `staged` when its credential was inserted (or not)
/// with its batch's.
pub async fn handle(
    worker: &Issuance,
    request: &PinRequest,
    pin: Option<&NewInitialPin>,
    staged: Option<Staged<'_>>,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = request.tax_code.as_str();
    let actor = request.actor(&message.envelope.source);
    let Some(pin) = pin.filter(|_| request.is_eligible()) else {
        return not_eligible(request, message);
    };
    let (new, inserted) = match staged {
        Some(staged) if staged.inserted => (staged.new, Ok(())),
        Some(staged) => (staged.new, Err(InsertError::AlreadyCurrent)),
        None => {
            let new = new_credential(worker, request, pin, message, Uuid::new_v4());
            let inserted = credentials::insert(conn, &new).await;
            (new, inserted)
        }
    };
    let (id, kind, holder) = (new.id, new.kind, new.holder);
    // Most tax codes have no current credential: then the insert is all it takes.
    // Otherwise the current one is retired first when it is no longer live.
    let inserted = match inserted {
        Err(InsertError::AlreadyCurrent) if retire_current(conn, tax_code, message).await? => {
            credentials::insert(conn, &new).await
        }
        inserted => inserted,
    };
    match inserted {
        Ok(()) => {}
        Err(InsertError::AlreadyCurrent) => return already_active(request, message),
        Err(InsertError::Database(e)) => return Err(e.into()),
    }
    let detail = json!({ "kind": kind, "holder": holder, "channel": request.channel });
    message.audit(actor, "pin.issued", Some(tax_code), Some(id), detail);

    let issued = PinIssued {
        tax_code: request.tax_code.clone(),
        credential_id: id,
        kind,
        holder,
        channel: request.channel,
        initial_pin_expires_at: new.initial_pin_expires_at,
    };
    let mut out = deliveries(request, id, &pin.pin, message)?;
    out.push(Outgoing::typed_event(&issued, message.now)?);
    Ok(out)
}

/// Retires the tax code's current credential, locked for update, when it is no longer
/// live (its initial PIN's window passed before activation, or its validity after);
/// `false` when it is still live, so the request is refused.
async fn retire_current(
    conn: &mut PgConnection,
    tax_code: &str,
    message: &Message<'_>,
) -> Result<bool, HandlerError> {
    let Some(existing) = credentials::latest_for_update(conn, tax_code).await? else {
        return Ok(true);
    };
    match existing.credential.retire(message.now) {
        Err(_) => Ok(false),
        Ok(retired) => {
            if retired != existing.credential {
                credentials::save(conn, &retired, None, message.now).await?;
            }
            Ok(true)
        }
    }
}

/// The notifications that carry the initial PIN. The two halves of an ordinary PIN
/// never travel on the same channel: the first by SMS or e-mail, the second by post.
fn deliveries(
    request: &PinRequest,
    credential_id: Uuid,
    pin: &InitialPin,
    message: &Message<'_>,
) -> Result<Vec<Outgoing>, HandlerError> {
    let params = json!({ "credential_id": credential_id, "given_name": request.given_name, "family_name": request.family_name });
    let notify = |channel, template, to, carries, text: &str| {
        let notice = Notice {
            channel,
            template,
            to,
            params: params.clone(),
            tax_code: request.tax_code.as_str().to_owned(),
            credential_id: Some(credential_id),
            secret: Some((carries, Zeroizing::new(text.to_owned()))),
        };
        Outgoing::notification(notice, message.now)
    };
    if request.channel == Channel::Office {
        let to = json!({ "office_id": request.office_id, "operator_id": request.operator_id });
        return Ok(vec![notify(
            NotifyChannel::Office,
            "pin_office_issue",
            to,
            Carries::WholePin,
            pin.expose(),
        )]);
    }
    let (first, second) = pin.split();
    let missing = |what: &str| {
        HandlerError::Permanent(format!(
            "first_half_via names {what}, which is not among the contacts"
        ))
    };
    let first_half = match request.first_half_via {
        Some(FirstHalfVia::Sms) => {
            let mobile = request
                .contacts
                .mobile
                .as_ref()
                .ok_or_else(|| missing("sms"))?;
            notify(
                NotifyChannel::Sms,
                "pin_first_half",
                json!(mobile.as_str()),
                Carries::FirstHalf,
                first.expose(),
            )
        }
        Some(FirstHalfVia::Email) => {
            let email = request
                .contacts
                .email
                .as_ref()
                .ok_or_else(|| missing("email"))?;
            notify(
                NotifyChannel::Email,
                "pin_first_half",
                json!(email.as_str()),
                Carries::FirstHalf,
                first.expose(),
            )
        }
        None => {
            return Err(HandlerError::Permanent(
                "first_half_via is required unless channel is office".into(),
            ));
        }
    };
    let to = json!({
        "name": format!("{} {}", request.given_name, request.family_name),
        "postal_address": request.postal_address,
    });
    let second_half = notify(
        NotifyChannel::Post,
        "pin_second_half",
        to,
        Carries::SecondHalf,
        second.expose(),
    );
    Ok(vec![first_half, second_half])
}

fn refuse(
    request: &PinRequest,
    message: &Message<'_>,
    event: PinRequestRejected,
) -> Result<Vec<Outgoing>, HandlerError> {
    let actor = request.actor(&message.envelope.source);
    let tax_code = request.tax_code.as_str();
    let data = encode(&event)?;
    message.audit(actor, "pin.request.rejected", Some(tax_code), None, data);
    Ok(vec![Outgoing::typed_event(&event, message.now)?])
}

fn not_eligible(
    request: &PinRequest,
    message: &Message<'_>,
) -> Result<Vec<Outgoing>, HandlerError> {
    let event = PinRequestRejected::not_eligible(request.tax_code.clone());
    let mut out = refuse(request, message, event)?;
    if let Some(email) = &request.contacts.email {
        let params = json!({ "given_name": request.given_name, "alternatives": Alternative::ALL });
        let notice = Notice {
            channel: NotifyChannel::Email,
            template: "not_eligible",
            to: json!(email.as_str()),
            params,
            tax_code: request.tax_code.as_str().to_owned(),
            credential_id: None,
            secret: None,
        };
        out.push(Outgoing::notification(notice, message.now));
    }
    Ok(out)
}

fn already_active(
    request: &PinRequest,
    message: &Message<'_>,
) -> Result<Vec<Outgoing>, HandlerError> {
    let event = PinRequestRejected::already_active(request.tax_code.clone());
    refuse(request, message, event)
}
