//! The phone-PIN commands as domain values, read once at the edge through the
//! contract's typed data. The tax code's check character is checked here; a failure
//! is a permanent error.

use crate::contract::commands::{self as wire, CommandData, CommandType};
use crate::contract::commands::{PhonePinValidity, StrongAuth};
use crate::contract::{Envelope, ParseError};
use crate::domain::{Period, PhonePin, TaxCode};

/// One of the commands the phone-PIN worker takes.
pub enum Command {
    Request(Request),
    Verify(Verify),
}

/// A checked `phone_pin.request`.
pub struct Request {
    /// Whose phone PIN, check character verified.
    pub tax_code: TaxCode,
    /// How the citizen logged in (SPID, CIE or CNS).
    pub authenticated_with: StrongAuth,
    /// The validity the citizen chose.
    pub validity: PhonePinValidity,
}

/// A checked `phone_pin.verify`.
pub struct Verify {
    /// The caller's tax code, check character verified.
    pub tax_code: TaxCode,
    /// The phone PIN the caller said.
    pub phone_pin: PhonePin,
    /// The operator who asks.
    pub operator_id: String,
}

/// The period a chosen validity stands for.
pub fn period(validity: PhonePinValidity) -> Period {
    Period::parse(validity.as_str()).expect("the contract's validities are periods")
}

impl Command {
    /// Parses the data of a phone-PIN command.
    pub fn parse(envelope: &Envelope) -> Result<Command, ParseError> {
        match CommandType::parse(&envelope.message_type) {
            Some(CommandType::PhonePinRequest) => {
                let data = wire::PhonePinRequest::from_envelope(envelope)?;
                Ok(Command::Request(Request {
                    tax_code: wire::tax_code("tax_code", &data.tax_code)?,
                    authenticated_with: data.authenticated_with,
                    validity: data.validity,
                }))
            }
            Some(CommandType::PhonePinVerify) => {
                let data = wire::PhonePinVerify::from_envelope(envelope)?;
                Ok(Command::Verify(Verify {
                    tax_code: wire::tax_code("tax_code", &data.tax_code)?,
                    phone_pin: data.phone_pin,
                    operator_id: data.operator_id,
                }))
            }
            _ => Err(ParseError::UnknownType(envelope.message_type.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_validity_is_its_period() {
        let cases = [
            (PhonePinValidity::OneDay, "P1D"),
            (PhonePinValidity::SevenDays, "P7D"),
            (PhonePinValidity::OneMonth, "P1M"),
            (PhonePinValidity::ThreeMonths, "P3M"),
        ];
        for (validity, wire) in cases {
            assert_eq!(period(validity), Period::parse(wire).unwrap());
            assert_eq!(serde_json::to_value(validity).unwrap(), wire);
        }
    }
}
