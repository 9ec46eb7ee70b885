//! Turning an ordinary PIN into a device PIN: the transition of the credential state
//! machine that a conversion applies once its documents are accepted. The PIN itself
//! (its hash, its validity period, its lock) stays as it is; only the kind changes, so
//! the citizen's 8-character PIN works on as a device PIN. No I/O.

use chrono::{DateTime, Utc};

use super::credential::{Credential, Kind, Status};

/// Why a credential cannot become a device PIN now. The names are the reasons the
/// contract's refusals carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertRefusal {
    /// Past its deadline (validity period, or the initial PIN's window).
    Expired,
    /// Revoked: it never works again.
    Revoked,
    /// Already a device PIN.
    AlreadyDevice,
}

impl ConvertRefusal {
    /// The reason's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ConvertRefusal::Expired => "pin_expired",
            ConvertRefusal::Revoked => "pin_revoked",
            ConvertRefusal::AlreadyDevice => "pin_already_device",
        }
    }
}

impl Credential {
    /// The same credential as a device PIN. Only a live ordinary PIN converts: one
    /// waiting for first access, active, or locked (a lock survives the conversion).
    pub fn convert(&self, now: DateTime<Utc>) -> Result<Credential, ConvertRefusal> {
        if self.status == Status::Revoked {
            return Err(ConvertRefusal::Revoked);
        }
        if self.is_past_deadline(now) {
            return Err(ConvertRefusal::Expired);
        }
        if self.kind == Kind::Device {
            return Err(ConvertRefusal::AlreadyDevice);
        }
        Ok(Credential {
            kind: Kind::Device,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;
    use crate::domain::credential::Holder;

    fn active(now: DateTime<Utc>) -> Credential {
        Credential {
            id: Uuid::nil(),
            kind: Kind::Ordinary,
            holder: Holder::Citizen,
            status: Status::Active,
            initial_pin_expires_at: Some(now - Duration::days(30)),
            activated_at: Some(now - Duration::days(40)),
            valid_until: Some(now + Duration::days(140)),
            failed_attempts: 2,
        }
    }

    #[test]
    fn a_live_ordinary_pin_becomes_a_device_pin_and_keeps_everything_else() {
        let now = Utc::now();
        let converted = active(now).convert(now).unwrap();
        assert_eq!(converted.kind, Kind::Device);
        assert_eq!(
            Credential {
                kind: Kind::Ordinary,
                ..converted.clone()
            },
            active(now),
            "validity, failures and status are untouched"
        );
        let locked = Credential {
            status: Status::Locked,
            ..active(now)
        };
        assert_eq!(locked.convert(now).unwrap().status, Status::Locked);
    }

    #[test]
    fn an_initial_pin_waiting_for_first_access_converts_within_its_window() {
        let now = Utc::now();
        let issued = Credential {
            status: Status::Issued,
            activated_at: None,
            valid_until: None,
            initial_pin_expires_at: Some(now + Duration::days(1)),
            ..active(now)
        };
        assert!(issued.convert(now).is_ok());
        assert_eq!(
            issued.convert(now + Duration::days(2)),
            Err(ConvertRefusal::Expired)
        );
    }

    #[test]
    fn an_expired_revoked_or_device_pin_does_not_convert() {
        let now = Utc::now();
        let at_deadline = now + Duration::days(140);
        assert_eq!(
            active(now).convert(at_deadline),
            Err(ConvertRefusal::Expired)
        );
        let swept = Credential {
            status: Status::Expired,
            ..active(now)
        };
        assert_eq!(swept.convert(now), Err(ConvertRefusal::Expired));
        let revoked = Credential {
            status: Status::Revoked,
            ..active(now)
        };
        assert_eq!(revoked.convert(now), Err(ConvertRefusal::Revoked));
        let device = active(now).convert(now).unwrap();
        assert_eq!(device.convert(now), Err(ConvertRefusal::AlreadyDevice));
    }
}
