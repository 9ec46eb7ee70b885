//! The credential state machine. A credential is `issued` (initial PIN waiting for
//! first access), `active`, `locked` (too many failures; only a reset unlocks),
//! `expired` or `revoked`. Deadlines are data, so a PIN past its deadline is refused
//! whether or not a sweep has marked it. Each transition is one function that returns
//! the new state or the refusal. No I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Period;

/// Ordinary (look at one's data) or device (apply for benefits). The serde names are
/// the wire names, the same as `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ordinary,
    Device,
}

/// Whose PIN: a citizen's lasts six months, an intermediary's three. The serde names
/// are the wire names, the same as `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holder {
    Citizen,
    Intermediary,
}

/// The stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Issued,
    Active,
    Locked,
    Expired,
    Revoked,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The name used on the wire and in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
            /// The inverse of `as_str`.
            pub fn parse(text: &str) -> Option<$ty> {
                match text { $($text => Some($ty::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(Kind { Ordinary => "ordinary", Device => "device" });
text_enum!(Holder { Citizen => "citizen", Intermediary => "intermediary" });
text_enum!(Status { Issued => "issued", Active => "active", Locked => "locked", Expired => "expired", Revoked => "revoked" });

/// Why a presented PIN is not accepted, before or after comparing it. The names are
/// the RPC replies' `status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid,
    Expired,
    Locked,
    Revoked,
    AlreadyActivated,
    NotActivated,
}

text_enum!(Refusal { Invalid => "invalid", Expired => "expired", Locked => "locked", Revoked => "revoked", AlreadyActivated => "already_activated", NotActivated => "not_activated" });

/// The part of a credential the rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Its id.
    pub id: Uuid,
    /// Ordinary or device.
    pub kind: Kind,
    /// Citizen or intermediary.
    pub holder: Holder,
    /// The stored status.
    pub status: Status,
    /// Until when the initial PIN may be used for first access.
    pub initial_pin_expires_at: Option<DateTime<Utc>>,
    /// When first access happened.
    pub activated_at: Option<DateTime<Utc>>,
    /// Until when the 8-character PIN works.
    pub valid_until: Option<DateTime<Utc>>,
    /// Consecutive failed checks.
    pub failed_attempts: u32,
}

impl Credential {
    /// Past its deadline: the initial PIN's window before activation, the validity
    /// period after.
    pub fn is_past_deadline(&self, now: DateTime<Utc>) -> bool {
        let deadline = if self.activated_at.is_some() {
            self.valid_until
        } else {
            self.initial_pin_expires_at
        };
        self.status == Status::Expired || deadline.is_some_and(|d| now >= d)
    }

    /// Live: neither expired nor revoked. A live credential blocks a new request.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status != Status::Revoked && !self.is_past_deadline(now)
    }

    /// Whether the initial PIN may be presented for first access now.
    pub fn check_first_access(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        match self.status {
            Status::Revoked => Err(Refusal::Revoked),
            _ if self.activated_at.is_some() => Err(Refusal::AlreadyActivated),
            Status::Locked => Err(Refusal::Locked),
            _ if self.is_past_deadline(now) => Err(Refusal::Expired),
            _ => Ok(()),
        }
    }

    /// Whether the PIN may be presented at login now. An expired PIN says so even
    /// when locked, so the portal can guide the citizen to a new request.
    pub fn check_verify(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        match self.status {
            Status::Revoked => Err(Refusal::Revoked),
            _ if self.is_past_deadline(now) => Err(Refusal::Expired),
            Status::Locked => Err(Refusal::Locked),
            _ if self.activated_at.is_none() => Err(Refusal::NotActivated),
            _ => Ok(()),
        }
    }

    /// First access succeeded: the validity period starts now.
    pub fn activate(&self, now: DateTime<Utc>, validity: &Period) -> Result<Credential, Refusal> {
        self.check_first_access(now)?;
        Ok(Credential {
            status: Status::Active,
            activated_at: Some(now),
            valid_until: Some(validity.add_to(now)),
            failed_attempts: 0,
            ..self.clone()
        })
    }

    /// A wrong PIN was presented: count it, and lock at `threshold` consecutive
    /// failures.
    pub fn fail(&self, threshold: u32) -> Credential {
        let failed_attempts = self.failed_attempts.saturating_add(1);
        let status = if failed_attempts >= threshold {
            Status::Locked
        } else {
            self.status
        };
        Credential {
            status,
            failed_attempts,
            ..self.clone()
        }
    }

    /// The right PIN was presented: the failure count starts again.
    pub fn succeed(&self) -> Credential {
        Credential {
            failed_attempts: 0,
            ..self.clone()
        }
    }

    /// Replaced by a new request after it expired: marked expired for good.
    pub fn retire(&self, now: DateTime<Utc>) -> Result<Credential, Refusal> {
        if self.is_live(now) {
            return Err(Refusal::AlreadyActivated);
        }
        let status = if self.status == Status::Revoked {
            Status::Revoked
        } else {
            Status::Expired
        };
        Ok(Credential {
            status,
            ..self.clone()
        })
    }
}

/// The validity period of a holder's PIN.
pub fn validity<'a>(holder: Holder, citizen: &'a Period, intermediary: &'a Period) -> &'a Period {
    match holder {
        Holder::Citizen => citizen,
        Holder::Intermediary => intermediary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn issued(now: DateTime<Utc>) -> Credential {
        Credential {
            id: Uuid::nil(),
            kind: Kind::Ordinary,
            holder: Holder::Citizen,
            status: Status::Issued,
            initial_pin_expires_at: Some(now + Duration::days(60)),
            activated_at: None,
            valid_until: None,
            failed_attempts: 0,
        }
    }

    fn six_months() -> Period {
        Period::parse("P6M").unwrap()
    }

    #[test]
    fn first_access_starts_the_validity_period() {
        let now = Utc::now();
        let active = issued(now).activate(now, &six_months()).unwrap();
        assert_eq!(active.status, Status::Active);
        assert_eq!(active.valid_until, Some(six_months().add_to(now)));
        assert_eq!(active.check_verify(now), Ok(()));
    }

    #[test]
    fn an_initial_pin_works_once() {
        let now = Utc::now();
        let active = issued(now).activate(now, &six_months()).unwrap();
        assert_eq!(
            active.activate(now, &six_months()),
            Err(Refusal::AlreadyActivated)
        );
    }

    #[test]
    fn an_initial_pin_past_its_window_is_expired() {
        let now = Utc::now();
        let later = now + Duration::days(61);
        assert_eq!(issued(now).check_first_access(later), Err(Refusal::Expired));
        assert!(!issued(now).is_live(later));
    }

    #[test]
    fn an_expired_pin_never_verifies_even_before_a_sweep() {
        let now = Utc::now();
        let active = issued(now).activate(now, &six_months()).unwrap();
        let later = six_months().add_to(now);
        assert_eq!(active.status, Status::Active);
        assert_eq!(active.check_verify(later), Err(Refusal::Expired));
    }

    #[test]
    fn the_threshold_failure_locks_and_a_success_resets_the_count() {
        let now = Utc::now();
        let mut credential = issued(now).activate(now, &six_months()).unwrap();
        for _ in 0..4 {
            credential = credential.fail(5);
        }
        assert_eq!(credential.status, Status::Active);
        assert_eq!(credential.succeed().failed_attempts, 0);
        let locked = credential.fail(5);
        assert_eq!(locked.status, Status::Locked);
        assert_eq!(locked.check_verify(now), Err(Refusal::Locked));
    }

    #[test]
    fn a_verify_before_first_access_is_not_activated() {
        let now = Utc::now();
        assert_eq!(issued(now).check_verify(now), Err(Refusal::NotActivated));
    }

    #[test]
    fn a_revoked_pin_is_refused_everywhere_and_never_live() {
        let now = Utc::now();
        let revoked = Credential {
            status: Status::Revoked,
            ..issued(now)
        };
        assert_eq!(revoked.check_verify(now), Err(Refusal::Revoked));
        assert_eq!(revoked.check_first_access(now), Err(Refusal::Revoked));
        assert!(!revoked.is_live(now));
    }

    #[test]
    fn only_a_dead_credential_can_be_retired() {
        let now = Utc::now();
        assert!(issued(now).retire(now).is_err());
        let retired = issued(now).retire(now + Duration::days(61)).unwrap();
        assert_eq!(retired.status, Status::Expired);
    }

    #[test]
    fn an_intermediary_gets_the_shorter_period() {
        let (c, i) = (six_months(), Period::parse("P3M").unwrap());
        assert_eq!(validity(Holder::Intermediary, &c, &i), &i);
        assert_eq!(validity(Holder::Citizen, &c, &i), &c);
    }
}
