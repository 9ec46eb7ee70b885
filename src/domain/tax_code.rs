//! The Italian codice fiscale with its check character and omocodia substitutions.
//! Pure: no I/O.

use std::fmt;

/// A codice fiscale whose layout and check character are valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaxCode(String);

/// Why a text is not a valid codice fiscale.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxCodeError {
    #[error("must have 16 characters, has {0}")]
    WrongLength(usize),
    #[error("character {0} is not an upper-case letter or digit")]
    BadCharacter(usize),
    #[error("character {0} does not fit the layout")]
    BadLayout(usize),
    #[error("wrong check character")]
    BadCheckCharacter,
}

/// Positions (0-based) that hold digits, or their omocodia letters.
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// Letters that stand for the digits 0-9 in an omocode.
const OMOCODIA: &[u8; 10] = b"LMNPQRSTUV";
/// Letters for the months.
const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";
/// Values of A-Z (and 0-9 alike) in odd positions (1st, 3rd, ...).
const ODD: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

fn value(c: u8, odd: bool) -> Option<u32> {
    let index = match c {
        b'0'..=b'9' => u32::from(c - b'0'),
        b'A'..=b'Z' => u32::from(c - b'A'),
        _ => return None,
    };
    Some(if odd { ODD[index as usize] } else { index })
}

/// The check character of the first 15 characters, if they are letters and digits.
pub fn check_character(first15: &str) -> Option<char> {
    let bytes = first15.as_bytes();
    if bytes.len() != 15 {
        return None;
    }
    let mut sum = 0;
    for (i, c) in bytes.iter().enumerate() {
        sum += value(*c, i % 2 == 0)?;
    }
    Some(char::from(b'A' + (sum % 26) as u8))
}

impl TaxCode {
    /// Parses a codice fiscale: 16 upper-case characters, letters and digits in their
    /// places (omocodia letters allowed for digits), a valid month letter and check
    /// character. Eleven-digit numeric codes are not accepted.
    pub fn parse(text: &str) -> Result<TaxCode, TaxCodeError> {
        let bytes = text.as_bytes();
        if text.chars().count() != 16 || bytes.len() != 16 {
            return Err(TaxCodeError::WrongLength(text.chars().count()));
        }
        for (i, c) in bytes.iter().enumerate() {
            if !(c.is_ascii_uppercase() || c.is_ascii_digit()) {
                return Err(TaxCodeError::BadCharacter(i + 1));
            }
        }
        for (i, c) in bytes.iter().enumerate() {
            let ok = if DIGIT_POSITIONS.contains(&i) {
                c.is_ascii_digit() || OMOCODIA.contains(c)
            } else if i == 8 {
                MONTHS.contains(c)
            } else {
                c.is_ascii_uppercase()
            };
            if !ok {
                return Err(TaxCodeError::BadLayout(i + 1));
            }
        }
        if check_character(&text[..15]) != Some(char::from(bytes[15])) {
            return Err(TaxCodeError::BadCheckCharacter);
        }
        Ok(TaxCode(text.to_owned()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaxCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for TaxCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_check(first15: &str) -> String {
        format!("{first15}{}", check_character(first15).unwrap())
    }

    #[test]
    fn a_known_valid_code_is_accepted() {
        assert_eq!(
            TaxCode::parse("RSSMRA85T10A562S").unwrap().as_str(),
            "RSSMRA85T10A562S"
        );
    }

    #[test]
    fn an_omocode_tax_code_is_accepted() {
        // 8 -> U and 5 -> R in the year, 2 -> N in the town code.
        let omocode = with_check("RSSMRAUR T10A56N".replace(' ', "").as_str());
        assert!(TaxCode::parse(&omocode).is_ok(), "{omocode}");
        assert!(TaxCode::parse(&with_check("RSSMRA85T10A56N")).is_ok());
    }

    #[test]
    fn a_wrong_check_character_is_refused() {
        assert_eq!(
            TaxCode::parse("RSSMRA85T10A562T"),
            Err(TaxCodeError::BadCheckCharacter)
        );
    }

    #[test]
    fn an_eleven_digit_numeric_code_is_refused() {
        assert_eq!(
            TaxCode::parse("12345678901"),
            Err(TaxCodeError::WrongLength(11))
        );
    }

    #[test]
    fn lower_case_is_refused() {
        assert_eq!(
            TaxCode::parse("rssmra85t10a562s"),
            Err(TaxCodeError::BadCharacter(1))
        );
    }

    #[test]
    fn a_bad_month_letter_or_a_letter_where_a_digit_belongs_is_refused() {
        assert_eq!(
            TaxCode::parse(&with_check("RSSMRA85F10A562")),
            Err(TaxCodeError::BadLayout(9))
        );
        assert_eq!(
            TaxCode::parse(&with_check("RSSMRA8AT10A562")),
            Err(TaxCodeError::BadLayout(8))
        );
        assert_eq!(
            TaxCode::parse(&with_check("RSSMR185T10A562")),
            Err(TaxCodeError::BadLayout(6))
        );
    }

    #[test]
    fn the_check_character_follows_the_official_tables() {
        assert_eq!(check_character("RSSMRA85T10A562"), Some('S'));
        assert_eq!(check_character("RSSMRA85T10A56"), None);
    }
}
