//! A phone PIN's life as pure rules: it answers `expired` from the instant its
//! validity ends (even when locked, as `pin.verify` does), `locked` once consecutive
//! failures reach the threshold, and a right PIN starts the count again. No I/O.

use chrono::{DateTime, Utc};

/// Why a presented phone PIN is not accepted before it is compared; the names are
/// the reply's statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its credential was revoked since it was issued.
    Revoked,
    /// Past its validity (or tidied up, which only happens after that).
    Expired,
    /// Locked by consecutive failures.
    Locked,
}

/// The part of a stored phone PIN the rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonePinState {
    /// Until when it works.
    pub valid_until: DateTime<Utc>,
    /// Consecutive wrong presentations.
    pub failed_attempts: u32,
    /// Whether failures locked it.
    pub locked: bool,
    /// Whether the hash is still kept (it is cleared once past validity).
    pub has_hash: bool,
    /// Whether the credential it was issued against has been revoked.
    pub credential_revoked: bool,
}

impl PhonePinState {
    /// Whether it may be compared now.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.credential_revoked {
            Err(Refusal::Revoked)
        } else if !self.has_hash || now >= self.valid_until {
            Err(Refusal::Expired)
        } else if self.locked {
            Err(Refusal::Locked)
        } else {
            Ok(())
        }
    }

    /// A wrong phone PIN: counted, and locked at `threshold` consecutive failures.
    pub fn fail(&self, threshold: u32) -> PhonePinState {
        let failed_attempts = self.failed_attempts.saturating_add(1);
        PhonePinState {
            failed_attempts,
            locked: self.locked || failed_attempts >= threshold,
            ..self.clone()
        }
    }

    /// The right phone PIN: the count starts again.
    pub fn succeed(&self) -> PhonePinState {
        PhonePinState {
            failed_attempts: 0,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn fresh(now: DateTime<Utc>) -> PhonePinState {
        PhonePinState {
            valid_until: now + Duration::days(1),
            failed_attempts: 0,
            locked: false,
            has_hash: true,
            credential_revoked: false,
        }
    }

    #[test]
    fn a_phone_pin_expires_at_the_instant_its_validity_ends() {
        let now = Utc::now();
        let pin = fresh(now);
        assert_eq!(
            pin.check(pin.valid_until - Duration::milliseconds(1)),
            Ok(())
        );
        assert_eq!(pin.check(pin.valid_until), Err(Refusal::Expired));
    }

    #[test]
    fn the_threshold_failure_locks_and_a_success_before_it_starts_again() {
        let now = Utc::now();
        let mut pin = fresh(now);
        for _ in 0..4 {
            pin = pin.fail(5);
        }
        assert_eq!(pin.check(now), Ok(()));
        assert_eq!(pin.succeed().failed_attempts, 0);
        let locked = pin.fail(5);
        assert!(locked.locked);
        assert_eq!(locked.check(now), Err(Refusal::Locked));
    }

    #[test]
    fn locked_and_past_its_validity_answers_expired_and_revoked_wins_over_both() {
        let now = Utc::now();
        let locked = PhonePinState {
            locked: true,
            ..fresh(now)
        };
        assert_eq!(locked.check(locked.valid_until), Err(Refusal::Expired));
        let tidied = PhonePinState {
            has_hash: false,
            ..fresh(now)
        };
        assert_eq!(tidied.check(now), Err(Refusal::Expired));
        let revoked = PhonePinState {
            credential_revoked: true,
            ..locked
        };
        assert_eq!(revoked.check(now), Err(Refusal::Revoked));
    }
}
