//! The transitions that end or renew a credential after issue: revocation, reset and
//! expiry. They extend the state machine of `credential`: each is one function that
//! returns the new state or the refusal, so the workers and the sweeps never decide
//! with scattered `if`s. No I/O.

use chrono::{DateTime, Utc};

use super::Period;
use super::credential::{Credential, Refusal, Status};

impl Credential {
    /// Revoked on request: it never works again. Refused when already revoked.
    pub fn revoke(&self) -> Result<Credential, Refusal> {
        if self.status == Status::Revoked {
            return Err(Refusal::Revoked);
        }
        Ok(Credential {
            status: Status::Revoked,
            ..self.clone()
        })
    }

    /// A confirmed reset: a new initial PIN (of the same kind) replaces the PIN at
    /// `now`, and a lock goes with the old PIN. The credential waits for first access
    /// again, and its validity period starts anew there. A revoked or dead (expired)
    /// credential is never reset: its holder requests a new PIN.
    pub fn reset(
        &self,
        now: DateTime<Utc>,
        initial_pin_ttl: &Period,
    ) -> Result<Credential, Refusal> {
        if self.status == Status::Revoked {
            return Err(Refusal::Revoked);
        }
        if !self.is_live(now) {
            return Err(Refusal::Expired);
        }
        Ok(Credential {
            status: Status::Issued,
            initial_pin_expires_at: Some(initial_pin_ttl.add_to(now)),
            activated_at: None,
            valid_until: None,
            failed_attempts: 0,
            ..self.clone()
        })
    }

    /// Reached its deadline (the validity period, or the initial PIN's window before
    /// first access): marked expired. `None` while the deadline is ahead, and for a
    /// credential already expired or revoked: nothing to do.
    pub fn expire(&self, now: DateTime<Utc>) -> Option<Credential> {
        let open = matches!(
            self.status,
            Status::Issued | Status::Active | Status::Locked
        );
        (open && self.is_past_deadline(now)).then(|| Credential {
            status: Status::Expired,
            ..self.clone()
        })
    }

    /// The deadline that ends this credential: the validity period after first
    /// access, the initial PIN's window before.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        if self.activated_at.is_some() {
            self.valid_until
        } else {
            self.initial_pin_expires_at
        }
    }

    /// Whether the reminder for the deadline is due at `now`: the credential is active
    /// or locked, its validity period ends within `ahead`, and has not ended yet.
    pub fn reminder_due(&self, now: DateTime<Utc>, ahead: &Period) -> bool {
        let live = matches!(self.status, Status::Active | Status::Locked);
        match self.valid_until {
            Some(until) if live && self.activated_at.is_some() => {
                now < until && until <= ahead.add_to(now)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;
    use crate::domain::credential::{Holder, Kind};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn period(text: &str) -> Period {
        Period::parse(text).unwrap()
    }

    fn active(activated: DateTime<Utc>, holder: Holder) -> Credential {
        let validity = match holder {
            Holder::Citizen => period("P6M"),
            Holder::Intermediary => period("P3M"),
        };
        Credential {
            id: Uuid::nil(),
            kind: Kind::Ordinary,
            holder,
            status: Status::Active,
            initial_pin_expires_at: Some(activated + Duration::days(60)),
            activated_at: Some(activated),
            valid_until: Some(validity.add_to(activated)),
            failed_attempts: 0,
        }
    }

    #[test]
    fn a_pin_expires_at_the_exact_instant_of_its_deadline_for_both_holders() {
        for (holder, deadline) in [
            (Holder::Citizen, at("2027-05-22T10:00:00Z")),
            (Holder::Intermediary, at("2027-02-22T10:00:00Z")),
        ] {
            let credential = active(at("2026-11-22T10:00:00Z"), holder);
            assert_eq!(credential.deadline(), Some(deadline));
            let just_before = deadline - Duration::milliseconds(1);
            assert_eq!(credential.expire(just_before), None);
            assert_eq!(credential.check_verify(just_before), Ok(()));
            let expired = credential.expire(deadline).unwrap();
            assert_eq!(expired.status, Status::Expired);
            assert_eq!(credential.check_verify(deadline), Err(Refusal::Expired));
            assert_eq!(expired.expire(deadline), None, "once");
        }
    }

    #[test]
    fn activated_on_the_last_of_august_a_citizen_pin_ends_on_the_last_of_february() {
        let common = active(at("2026-08-31T09:30:00Z"), Holder::Citizen);
        assert_eq!(common.deadline(), Some(at("2027-02-28T09:30:00Z")));
        let leap = active(at("2027-08-31T09:30:00Z"), Holder::Citizen);
        assert_eq!(leap.deadline(), Some(at("2028-02-29T09:30:00Z")));
        let intermediary = active(at("2026-11-30T09:30:00Z"), Holder::Intermediary);
        assert_eq!(intermediary.deadline(), Some(at("2027-02-28T09:30:00Z")));
    }

    #[test]
    fn an_unused_initial_pin_expires_at_the_end_of_its_window() {
        let issued = Credential {
            status: Status::Issued,
            activated_at: None,
            valid_until: None,
            ..active(at("2026-11-22T10:00:00Z"), Holder::Citizen)
        };
        let window = at("2027-01-21T10:00:00Z");
        assert_eq!(issued.deadline(), Some(window));
        assert!(issued.expire(window - Duration::seconds(1)).is_none());
        assert_eq!(issued.expire(window).unwrap().status, Status::Expired);
        assert!(!issued.reminder_due(window - Duration::days(1), &period("P14D")));
    }

    #[test]
    fn the_reminder_is_due_from_the_period_before_the_deadline_until_the_deadline() {
        let credential = active(at("2026-11-22T10:00:00Z"), Holder::Citizen);
        let deadline = at("2027-05-22T10:00:00Z");
        let ahead = period("P14D");
        assert!(!credential.reminder_due(at("2027-05-08T09:59:59Z"), &ahead));
        assert!(credential.reminder_due(at("2027-05-08T10:00:00Z"), &ahead));
        assert!(credential.reminder_due(deadline - Duration::seconds(1), &ahead));
        assert!(
            !credential.reminder_due(deadline, &ahead),
            "then it expires"
        );
        let locked = Credential {
            status: Status::Locked,
            ..credential.clone()
        };
        assert!(locked.reminder_due(at("2027-05-10T00:00:00Z"), &ahead));
    }

    #[test]
    fn a_reset_unlocks_and_waits_for_first_access_again() {
        let now = at("2027-01-10T12:00:00Z");
        let locked = Credential {
            status: Status::Locked,
            failed_attempts: 5,
            ..active(at("2026-11-22T10:00:00Z"), Holder::Citizen)
        };
        let reset = locked.reset(now, &period("P60D")).unwrap();
        assert_eq!(reset.status, Status::Issued);
        assert_eq!(reset.failed_attempts, 0);
        assert_eq!(reset.activated_at, None);
        assert_eq!(
            reset.initial_pin_expires_at,
            Some(at("2027-03-11T12:00:00Z"))
        );
        assert_eq!(reset.check_first_access(now), Ok(()));
        assert_eq!(reset.check_verify(now), Err(Refusal::NotActivated));
        assert_eq!((reset.kind, reset.holder), (locked.kind, locked.holder));
    }

    #[test]
    fn a_revoked_pin_never_resets_and_an_expired_one_neither() {
        let credential = active(at("2026-11-22T10:00:00Z"), Holder::Citizen);
        let now = at("2027-01-10T12:00:00Z");
        let revoked = credential.revoke().unwrap();
        assert_eq!(revoked.status, Status::Revoked);
        assert_eq!(revoked.revoke(), Err(Refusal::Revoked));
        assert_eq!(revoked.reset(now, &period("P60D")), Err(Refusal::Revoked));
        assert_eq!(revoked.expire(at("2030-01-01T00:00:00Z")), None);
        let late = at("2027-06-01T00:00:00Z");
        assert_eq!(
            credential.reset(late, &period("P60D")),
            Err(Refusal::Expired)
        );
    }
}
