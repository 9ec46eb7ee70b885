//! Countries as ISO 3166-1 alpha-2 codes, and the one country the eligibility rule
//! names. Pure: no I/O.

use std::fmt;

/// Why a text is not a country code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an ISO 3166-1 alpha-2 code: two upper-case letters")]
pub struct CountryError;

/// An ISO 3166-1 alpha-2 country code (`DE`, `IT`, ...). Only the shape is checked:
/// the contract accepts any two upper-case letters, as its schema does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country([u8; 2]);

impl Country {
    /// Italy: residents are pointed to SPID, CIE or CNS instead of a PIN.
    pub const ITALY: Country = Country(*b"IT");

    /// Parses two upper-case ASCII letters.
    pub fn parse(text: &str) -> Result<Country, CountryError> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Country([*a, *b])),
            _ => Err(CountryError),
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters get in through `parse`.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Country {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Read from a command's data through `parse`, the same check as the schemas'
/// `country` pattern.
impl<'de> serde::Deserialize<'de> for Country {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Country::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_upper_case_letters_are_a_country_and_nothing_else_is() {
        assert_eq!(Country::parse("IT"), Ok(Country::ITALY));
        assert_eq!(Country::parse("DE").unwrap().as_str(), "DE");
        for bad in ["", "I", "it", "ITA", "I1", "ÉT"] {
            assert_eq!(Country::parse(bad), Err(CountryError), "{bad}");
        }
    }
}
