//! The typed data of the phone-PIN replies, shaped as `schemas/phone_pin.request.reply.json`
//! and `phone_pin.verify.reply.json`. The phone PIN of an `ok` request reply is no field
//! here: it travels as the reply's sealed secret, and only there. Depends on `domain`
//! only.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::contract::events::instant;
use crate::contract::outgoing::OutgoingData;

/// The reply to `phone_pin.request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PhonePinRequestReply {
    /// Issued; the phone PIN is added as `phone_pin` when the reply is sent.
    Ok {
        /// Until when the phone PIN works.
        #[serde(serialize_with = "instant")]
        valid_until: DateTime<Utc>,
    },
    /// No credential for the tax code.
    NotFound,
    /// The tax code's credential was revoked.
    Revoked,
    /// The tax code's credential is past its deadline.
    Expired,
}

impl PhonePinRequestReply {
    /// The `data` member that carries the phone PIN of an `ok` reply.
    pub const SECRET_FIELD: &'static str = "phone_pin";
}

impl OutgoingData for PhonePinRequestReply {
    const TYPE: &'static str = "phone_pin.request.reply";
}

/// The reply to `phone_pin.verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PhonePinVerifyReply {
    /// The phone PIN is right and valid.
    Ok {
        /// Until when it works.
        #[serde(serialize_with = "instant")]
        valid_until: DateTime<Utc>,
    },
    /// Wrong phone PIN, or none issued for the tax code.
    Invalid,
    /// Past the validity chosen at issue.
    Expired,
    /// Too many consecutive wrong phone PINs (this attempt may be the one that locked
    /// it); a new phone PIN replaces it.
    Locked,
    /// The credential it was issued against has been revoked.
    Revoked,
}

impl OutgoingData for PhonePinVerifyReply {
    const TYPE: &'static str = "phone_pin.verify.reply";
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;
    use crate::contract::outgoing::{encode, with_secret};
    use crate::contract::schemas::Schemas;

    fn check<R: OutgoingData>(data: &Value) {
        Schemas::embedded()
            .check(R::TYPE, data)
            .unwrap_or_else(|e| panic!("{}: {e}: {data}", R::TYPE));
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap()
    }

    #[test]
    fn every_request_reply_its_schema_accepts_with_the_phone_pin_only_when_ok() {
        let ok = encode(&PhonePinRequestReply::Ok { valid_until: at() }).unwrap();
        assert!(
            ok.get("phone_pin").is_none(),
            "the phone PIN is the sealed secret"
        );
        let sent = with_secret(
            json!({ "data": ok }),
            PhonePinRequestReply::SECRET_FIELD,
            "K7M2P9QX",
        );
        check::<PhonePinRequestReply>(&sent["data"]);
        for (reply, status) in [
            (PhonePinRequestReply::NotFound, "not_found"),
            (PhonePinRequestReply::Revoked, "revoked"),
            (PhonePinRequestReply::Expired, "expired"),
        ] {
            let data = encode(&reply).unwrap();
            check::<PhonePinRequestReply>(&data);
            assert_eq!(data, json!({ "status": status }));
            let leaky = with_secret(json!({ "data": data }), "phone_pin", "K7M2P9QX");
            assert!(
                Schemas::embedded()
                    .check(PhonePinRequestReply::TYPE, &leaky["data"])
                    .is_err(),
                "only ok carries a phone PIN"
            );
        }
    }

    #[test]
    fn every_verify_reply_its_schema_accepts() {
        let ok = encode(&PhonePinVerifyReply::Ok { valid_until: at() }).unwrap();
        check::<PhonePinVerifyReply>(&ok);
        assert_eq!(ok["valid_until"], "2026-12-06T10:00:00.000Z");
        for (reply, status) in [
            (PhonePinVerifyReply::Invalid, "invalid"),
            (PhonePinVerifyReply::Expired, "expired"),
            (PhonePinVerifyReply::Locked, "locked"),
            (PhonePinVerifyReply::Revoked, "revoked"),
        ] {
            let data = encode(&reply).unwrap();
            check::<PhonePinVerifyReply>(&data);
            assert_eq!(data["status"], status);
        }
    }
}
