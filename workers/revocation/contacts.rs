//! `contacts.update`: change or add the mobile, e-mail or PEC of a live credential.
//! The change is audited (masked values), `contacts.updated` says which changed, and
//! a security notice (`contacts_changed`) goes to the e-mail and PEC on record before
//! the change as well as to each new one.

use serde_json::json;
use sqlx::PgConnection;

use super::actor;
use super::command::ContactsChange;
use crate::contract::account_events::{
    ContactField, ContactsRejection, ContactsUpdateRejected, ContactsUpdated,
};
use crate::contract::commands::Contacts;
use crate::contract::outgoing::encode;
use crate::contract::{Notice, NotifyChannel, Outgoing};
use crate::domain::Email;
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::{credentials, profiles};

fn same(a: &Email, b: &Email) -> bool {
    a.as_str().eq_ignore_ascii_case(b.as_str())
}

/// The contacts after the change, and which ones changed.
pub fn apply(before: &Contacts, change: &ContactsChange) -> (Contacts, Vec<ContactField>) {
    let mut after = before.clone();
    let mut changed = Vec::new();
    if let Some(mobile) = change
        .mobile
        .as_ref()
        .filter(|m| before.mobile.as_ref() != Some(*m))
    {
        after.mobile = Some(mobile.clone());
        changed.push(ContactField::Mobile);
    }
    let differs = |new: &Email, old: &Option<Email>| !old.as_ref().is_some_and(|o| same(o, new));
    if let Some(email) = change.email.as_ref().filter(|e| differs(e, &before.email)) {
        after.email = Some(email.clone());
        changed.push(ContactField::Email);
    }
    if let Some(pec) = change.pec.as_ref().filter(|e| differs(e, &before.pec)) {
        after.pec = Some(pec.clone());
        changed.push(ContactField::Pec);
    }
    (after, changed)
}

/// Who hears of a change: every e-mail and PEC on record before it, and each new
/// one, once each; nobody when nothing changed.
pub fn recipients(
    before: &Contacts,
    after: &Contacts,
    changed: &[ContactField],
) -> Vec<(NotifyChannel, Email)> {
    if changed.is_empty() {
        return Vec::new();
    }
    let candidates = [
        (NotifyChannel::Email, &before.email),
        (NotifyChannel::Pec, &before.pec),
        (NotifyChannel::Email, &after.email),
        (NotifyChannel::Pec, &after.pec),
    ];
    let mut out: Vec<(NotifyChannel, Email)> = Vec::new();
    for (channel, address) in candidates {
        if let Some(address) = address
            && !out.iter().any(|(c, a)| *c == channel && same(a, address))
        {
            out.push((channel, address.clone()));
        }
    }
    out
}

fn masked(contacts: &Contacts) -> serde_json::Value {
    json!({
        "mobile": contacts.mobile.as_ref().map(|m| m.mask()),
        "email": contacts.email.as_ref().map(|e| e.mask()),
        "pec": contacts.pec.as_ref().map(|e| e.mask()),
    })
}

/// Handles one `contacts.update`.
pub async fn handle(
    change: &ContactsChange,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = change.tax_code.as_str();
    let actor = actor(change.operator_id.as_deref(), message);
    let stored = credentials::latest_for_update(conn, tax_code).await?;
    let Some(stored) = stored.filter(|s| s.credential.is_live(message.now)) else {
        let event = ContactsUpdateRejected {
            tax_code: change.tax_code.clone(),
            reason: ContactsRejection::NotFound,
        };
        message.audit(
            actor,
            "contacts.update.rejected",
            Some(tax_code),
            None,
            encode(&event)?,
        );
        return Ok(vec![Outgoing::typed_event(&event, message.now)?]);
    };
    let id = stored.credential.id;
    let profile = profiles::of(conn, id)
        .await?
        .ok_or_else(|| HandlerError::Permanent("a locked credential vanished".into()))?;
    let before = profile.contacts.clone();
    let (after, changed) = apply(&before, change);
    if !changed.is_empty() {
        profiles::set_contacts(conn, id, &after).await?;
    }
    let detail = json!({
        "channel": change.channel,
        "changed": changed,
        "before": masked(&before),
        "after": masked(&after),
    });
    message.audit(actor, "contacts.updated", Some(tax_code), Some(id), detail);
    let mut out = Vec::new();
    for (channel, to) in recipients(&before, &after, &changed) {
        let notice = Notice {
            channel,
            template: "contacts_changed",
            to: json!(to.as_str()),
            params: json!({
                "credential_id": id,
                "given_name": profile.given_name,
                "family_name": profile.family_name,
                "changed": changed,
            }),
            tax_code: tax_code.to_owned(),
            credential_id: Some(id),
            secret: None,
        };
        out.push(Outgoing::notification(notice, message.now));
    }
    let event = ContactsUpdated {
        tax_code: change.tax_code.clone(),
        credential_id: id,
        changed,
    };
    out.push(Outgoing::typed_event(&event, message.now)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::contract::commands::RemoteChannel;
    use crate::domain::{Mobile, TaxCode};

    fn contacts(value: serde_json::Value) -> Contacts {
        serde_json::from_value(value).unwrap()
    }

    fn change(mobile: Option<&str>, email: Option<&str>, pec: Option<&str>) -> ContactsChange {
        ContactsChange {
            tax_code: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
            channel: RemoteChannel::Online,
            operator_id: None,
            mobile: mobile.map(|m| Mobile::parse(m).unwrap()),
            email: email.map(|e| Email::parse(e).unwrap()),
            pec: pec.map(|e| Email::parse(e).unwrap()),
        }
    }

    #[test]
    fn a_new_email_is_told_to_the_previous_address_and_the_new_one() {
        let before = contacts(json!({ "mobile": "+4915112345678", "email": "old@example.org" }));
        let (after, changed) = apply(&before, &change(None, Some("new@example.org"), None));
        assert_eq!(changed, vec![ContactField::Email]);
        assert_eq!(after.mobile, before.mobile, "the rest stays");
        let to: Vec<_> = recipients(&before, &after, &changed)
            .into_iter()
            .map(|(c, a)| (c, a.as_str().to_owned()))
            .collect();
        assert_eq!(
            to,
            vec![
                (NotifyChannel::Email, "old@example.org".to_owned()),
                (NotifyChannel::Email, "new@example.org".to_owned())
            ]
        );
    }

    #[test]
    fn an_added_pec_and_a_changed_mobile_are_told_to_the_email_on_record_and_the_pec() {
        let before = contacts(json!({ "mobile": "+4915112345678", "email": "m@example.org" }));
        let (after, changed) = apply(
            &before,
            &change(Some("+4915199999999"), None, Some("m@pec.example.it")),
        );
        assert_eq!(changed, vec![ContactField::Mobile, ContactField::Pec]);
        let channels: Vec<_> = recipients(&before, &after, &changed)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(channels, vec![NotifyChannel::Email, NotifyChannel::Pec]);
    }

    #[test]
    fn the_same_values_again_change_nothing_and_tell_nobody() {
        let before = contacts(json!({ "mobile": "+4915112345678", "email": "m@example.org" }));
        let (after, changed) = apply(
            &before,
            &change(Some("+4915112345678"), Some("M@Example.org"), None),
        );
        assert!(changed.is_empty());
        assert_eq!(after, before);
        assert!(recipients(&before, &after, &changed).is_empty());
    }
}
