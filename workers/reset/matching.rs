//! Which contacts a reset request proves, where its link goes, and where the halves
//! of the new initial PIN go. Pure: the contacts given and those on record in, the
//! answers out.

use crate::contract::NotifyChannel;
use crate::contract::commands::Contacts;
use crate::domain::{Email, Mobile};

/// Two addresses are one when they differ only in letter case (mail systems treat the
/// domain so, and nearly all treat the local part so too).
fn same(a: &Email, b: &Email) -> bool {
    a.as_str().eq_ignore_ascii_case(b.as_str())
}

fn same_mobile(a: &Mobile, b: &Mobile) -> bool {
    a == b
}

fn matched<T>(given: Option<&T>, record: Option<&T>, eq: fn(&T, &T) -> bool) -> bool {
    matches!((given, record), (Some(g), Some(r)) if eq(g, r))
}

/// Which of the given contacts are those on record: (mobile, e-mail, PEC).
fn proven(given: &Contacts, record: &Contacts) -> (bool, bool, bool) {
    (
        matched(given.mobile.as_ref(), record.mobile.as_ref(), same_mobile),
        matched(given.email.as_ref(), record.email.as_ref(), same),
        matched(given.pec.as_ref(), record.pec.as_ref(), same),
    )
}

/// How many of the given contacts are those on record. A reset needs two; which one
/// failed is never said.
pub fn matches(given: &Contacts, record: &Contacts) -> usize {
    let (mobile, email, pec) = proven(given, record);
    [mobile, email, pec].into_iter().filter(|m| *m).count()
}

/// Where the reset link goes: the e-mail on record if the request proved it, else the
/// PEC on record if it proved that.
pub fn link_address(given: &Contacts, record: &Contacts) -> Option<(NotifyChannel, Email)> {
    let (_, email, pec) = proven(given, record);
    match (&record.email, &record.pec) {
        (Some(address), _) if email => Some((NotifyChannel::Email, address.clone())),
        (_, Some(address)) if pec => Some((NotifyChannel::Pec, address.clone())),
        _ => None,
    }
}

/// Where a half goes: the channel and the recipient as the notification's `to`.
pub type Route = (NotifyChannel, String);

/// Where the two halves of a reset's new initial PIN go: characters 1–8 by SMS to the
/// mobile on record and 9–16 by e-mail (else PEC); without a mobile on record, 1–8 by
/// e-mail and 9–16 by PEC. The halves never share a channel; `None` when the record
/// does not have two channels.
pub fn half_routes(record: &Contacts) -> Option<(Route, Route)> {
    let email = record
        .email
        .as_ref()
        .map(|e| (NotifyChannel::Email, e.as_str().to_owned()));
    let pec = record
        .pec
        .as_ref()
        .map(|e| (NotifyChannel::Pec, e.as_str().to_owned()));
    match &record.mobile {
        Some(mobile) => {
            let second = email.or(pec)?;
            Some(((NotifyChannel::Sms, mobile.as_str().to_owned()), second))
        }
        None => Some((email?, pec?)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contacts(value: serde_json::Value) -> Contacts {
        serde_json::from_value(value).unwrap()
    }

    fn record() -> Contacts {
        contacts(json!({
            "mobile": "+4915112345678",
            "email": "mario.rossi@example.org",
            "pec": "mario.rossi@pec.example.it"
        }))
    }

    #[test]
    fn two_one_and_zero_matching_contacts_are_counted() {
        let two =
            contacts(json!({ "mobile": "+4915112345678", "email": "Mario.Rossi@Example.org" }));
        assert_eq!(matches(&two, &record()), 2);
        let one = contacts(json!({ "mobile": "+4915112345678", "email": "someone@example.org" }));
        assert_eq!(matches(&one, &record()), 1);
        let zero = contacts(json!({ "mobile": "+393330000000", "pec": "other@pec.example.it" }));
        assert_eq!(matches(&zero, &record()), 0);
        let all = record();
        assert_eq!(matches(&all, &record()), 3);
    }

    #[test]
    fn a_contact_missing_from_the_record_never_matches() {
        let record = contacts(json!({ "mobile": "+4915112345678" }));
        let given = contacts(json!({ "mobile": "+4915112345678", "email": "m@example.org" }));
        assert_eq!(matches(&given, &record), 1);
        assert_eq!(link_address(&given, &record), None);
    }

    #[test]
    fn the_link_goes_to_a_proven_address_on_record() {
        let given =
            contacts(json!({ "mobile": "+4915112345678", "pec": "MARIO.ROSSI@pec.example.it" }));
        let (channel, to) = link_address(&given, &record()).unwrap();
        assert_eq!(channel, NotifyChannel::Pec);
        assert_eq!(
            to.as_str(),
            "mario.rossi@pec.example.it",
            "the address on record"
        );
        let given = contacts(
            json!({ "email": "mario.rossi@example.org", "pec": "mario.rossi@pec.example.it" }),
        );
        assert_eq!(
            link_address(&given, &record()).unwrap().0,
            NotifyChannel::Email
        );
    }

    #[test]
    fn the_halves_never_share_a_channel() {
        let (first, second) = half_routes(&record()).unwrap();
        assert_eq!(first, (NotifyChannel::Sms, "+4915112345678".to_owned()));
        assert_eq!(second.0, NotifyChannel::Email);
        let no_mobile = contacts(json!({ "email": "m@example.org", "pec": "m@pec.example.it" }));
        let (first, second) = half_routes(&no_mobile).unwrap();
        assert_eq!(
            (first.0, second.0),
            (NotifyChannel::Email, NotifyChannel::Pec)
        );
        let pec_only = contacts(json!({ "mobile": "+4915112345678", "pec": "m@pec.example.it" }));
        assert_eq!(half_routes(&pec_only).unwrap().1.0, NotifyChannel::Pec);
        assert!(half_routes(&contacts(json!({ "email": "m@example.org" }))).is_none());
        assert!(half_routes(&contacts(json!({ "mobile": "+4915112345678" }))).is_none());
    }
}
