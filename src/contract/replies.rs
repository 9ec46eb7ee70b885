//! The typed data of the RPC replies of `pin.first_access` and `pin.verify`, shaped as
//! `schemas/pin.first_access.reply.json` and `pin.verify.reply.json`: the `status`
//! picks the variant, and only `ok` has the fields that go with it. The new PIN of a
//! first access is no field here: it travels as the reply's sealed secret.
//! Depends on `domain` only.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::events::instant;
use super::outgoing::OutgoingData;
use crate::domain::credential::{Kind, Refusal};

/// The reply to `pin.first_access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FirstAccessReply {
    /// Activated; the 8-character PIN is added as `pin` when the reply is sent.
    Ok {
        /// Until when the new PIN works.
        #[serde(serialize_with = "instant")]
        valid_until: DateTime<Utc>,
    },
    /// Wrong initial PIN.
    Invalid,
    /// The initial PIN's window has passed.
    Expired,
    /// Too many failures.
    Locked,
    /// The credential was revoked.
    Revoked,
    /// No credential for the tax code.
    NotFound,
    /// The initial PIN was used already.
    AlreadyActivated,
}

impl FirstAccessReply {
    /// The `data` member that carries the new PIN of an `ok` reply.
    pub const SECRET_FIELD: &'static str = "pin";
}

/// A refusal first access can give; `NotActivated` is not one, and comes back as the
/// error.
impl TryFrom<Refusal> for FirstAccessReply {
    type Error = Refusal;

    fn try_from(refusal: Refusal) -> Result<Self, Refusal> {
        Ok(match refusal {
            Refusal::Invalid => FirstAccessReply::Invalid,
            Refusal::Expired => FirstAccessReply::Expired,
            Refusal::Locked => FirstAccessReply::Locked,
            Refusal::Revoked => FirstAccessReply::Revoked,
            Refusal::AlreadyActivated => FirstAccessReply::AlreadyActivated,
            Refusal::NotActivated => return Err(refusal),
        })
    }
}

impl OutgoingData for FirstAccessReply {
    const TYPE: &'static str = "pin.first_access.reply";
}

/// The reply to `pin.verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum VerifyReply {
    /// The PIN is right.
    Ok {
        /// Ordinary or device: what the holder may do.
        kind: Kind,
        /// Until when the PIN works.
        #[serde(serialize_with = "instant")]
        valid_until: DateTime<Utc>,
    },
    /// Wrong PIN.
    Invalid,
    /// Past its validity period: the portal guides the citizen to a new request.
    Expired,
    /// Too many failures.
    Locked,
    /// The credential was revoked.
    Revoked,
    /// No credential for the tax code.
    NotFound,
    /// First access has not happened yet.
    NotActivated,
}

/// A refusal verification can give; `AlreadyActivated` is not one, and comes back as
/// the error.
impl TryFrom<Refusal> for VerifyReply {
    type Error = Refusal;

    fn try_from(refusal: Refusal) -> Result<Self, Refusal> {
        Ok(match refusal {
            Refusal::Invalid => VerifyReply::Invalid,
            Refusal::Expired => VerifyReply::Expired,
            Refusal::Locked => VerifyReply::Locked,
            Refusal::Revoked => VerifyReply::Revoked,
            Refusal::NotActivated => VerifyReply::NotActivated,
            Refusal::AlreadyActivated => return Err(refusal),
        })
    }
}

impl OutgoingData for VerifyReply {
    const TYPE: &'static str = "pin.verify.reply";
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::Value;

    use super::*;
    use crate::contract::outgoing::{encode, with_secret};
    use crate::contract::schemas::Schemas;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 5, 22, 10, 0, 0).unwrap()
    }

    fn check<R: OutgoingData>(data: &Value) {
        Schemas::embedded()
            .check(R::TYPE, data)
            .unwrap_or_else(|e| panic!("{}: {e}: {data}", R::TYPE));
    }

    #[test]
    fn every_first_access_reply_its_schema_accepts_with_the_pin_only_when_ok() {
        let ok = encode(&FirstAccessReply::Ok { valid_until: at() }).unwrap();
        assert_eq!(ok["status"], "ok");
        assert_eq!(ok["valid_until"], "2027-05-22T10:00:00.000Z");
        assert!(ok.get("pin").is_none(), "the pin is the sealed secret");
        let sent = serde_json::json!({ "data": ok });
        let sent = with_secret(sent, FirstAccessReply::SECRET_FIELD, "K7M2P9QX");
        check::<FirstAccessReply>(&sent["data"]);

        let refusals = [
            Refusal::Invalid,
            Refusal::Expired,
            Refusal::Locked,
            Refusal::Revoked,
            Refusal::AlreadyActivated,
        ];
        let mut replies: Vec<_> = refusals
            .into_iter()
            .map(|r| FirstAccessReply::try_from(r).unwrap())
            .collect();
        replies.push(FirstAccessReply::NotFound);
        for reply in replies {
            let data = encode(&reply).unwrap();
            check::<FirstAccessReply>(&data);
            assert_eq!(data.as_object().unwrap().len(), 1, "{data}: status only");
        }
        assert_eq!(
            FirstAccessReply::try_from(Refusal::NotActivated),
            Err(Refusal::NotActivated)
        );
    }

    #[test]
    fn every_verify_reply_its_schema_accepts() {
        let ok = encode(&VerifyReply::Ok {
            kind: Kind::Ordinary,
            valid_until: at(),
        })
        .unwrap();
        check::<VerifyReply>(&ok);
        assert_eq!(ok["status"], "ok");
        assert_eq!(ok["kind"], "ordinary");
        let refusals = [
            Refusal::Invalid,
            Refusal::Expired,
            Refusal::Locked,
            Refusal::Revoked,
            Refusal::NotActivated,
        ];
        for refusal in refusals {
            let reply = VerifyReply::try_from(refusal).unwrap();
            let data = encode(&reply).unwrap();
            check::<VerifyReply>(&data);
            assert_eq!(data["status"], refusal.as_str());
        }
        check::<VerifyReply>(&encode(&VerifyReply::NotFound).unwrap());
        assert_eq!(
            VerifyReply::try_from(Refusal::AlreadyActivated),
            Err(Refusal::AlreadyActivated)
        );
    }
}

// The phone-PIN replies, in their own file.
mod phone;

pub use phone::{PhonePinRequestReply, PhonePinVerifyReply};
