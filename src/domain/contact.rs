//! Contacts: E.164 mobile numbers and e-mail addresses, with masks for operator
//! screens. Pure: no I/O.

/// Why a contact is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error("not an E.164 number: '+' and 8 to 15 digits")]
    Mobile,
    #[error("not an e-mail address")]
    Email,
}

/// A mobile number in E.164 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mobile(String);

impl Mobile {
    /// Parses `+` followed by 8 to 15 digits.
    pub fn parse(text: &str) -> Result<Mobile, ContactError> {
        let digits = text.strip_prefix('+').ok_or(ContactError::Mobile)?;
        if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Mobile(text.to_owned()))
        } else {
            Err(ContactError::Mobile)
        }
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+39*******567`: the first two and last three digits.
    pub fn mask(&self) -> String {
        let digits = &self.0[1..];
        let hidden = digits.len().saturating_sub(5);
        format!(
            "+{}{}{}",
            &digits[..2],
            "*".repeat(hidden),
            &digits[digits.len() - 3..]
        )
    }
}

/// An e-mail (or PEC) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses `local@domain.tld`: one `@`, a local part of 1 to 64 characters, a domain
    /// of dot-separated non-empty labels, no spaces or control characters, at most 254
    /// characters in all.
    pub fn parse(text: &str) -> Result<Email, ContactError> {
        let (local, domain) = text.split_once('@').ok_or(ContactError::Email)?;
        let clean = |s: &str| {
            !s.is_empty()
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        };
        let ok = text.len() <= 254
            && clean(local)
            && local.len() <= 64
            && clean(domain)
            && domain.contains('.')
            && domain.split('.').all(|label| !label.is_empty());
        if ok {
            Ok(Email(text.to_owned()))
        } else {
            Err(ContactError::Email)
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `m***@example.org`.
    pub fn mask(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or(("", &self.0));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

impl serde::Serialize for Mobile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl serde::Serialize for Email {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Read from a command's data through `parse`, the same check as the schemas' `email`
/// format and `mobile` pattern, so after the schema it cannot fail.
impl<'de> serde::Deserialize<'de> for Mobile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Mobile::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Read from a command's data through `parse` (see `Mobile`).
impl<'de> serde::Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Email::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_are_accepted_and_others_refused() {
        assert!(Mobile::parse("+393331234567").is_ok());
        assert!(Mobile::parse("+12345678").is_ok());
        for bad in [
            "393331234567",
            "+1234567",
            "+1234567890123456",
            "+39 333 1234567",
            "+39333abc4567",
        ] {
            assert_eq!(Mobile::parse(bad), Err(ContactError::Mobile), "{bad}");
        }
    }

    #[test]
    fn a_mobile_mask_shows_only_its_ends() {
        assert_eq!(
            Mobile::parse("+393331234567").unwrap().mask(),
            "+39*******567"
        );
    }

    #[test]
    fn e_mail_addresses_are_checked() {
        assert!(Email::parse("mario.rossi@example.org").is_ok());
        for bad in [
            "mario",
            "@example.org",
            "mario@",
            "mario@example",
            "ma rio@example.org",
            "a@b@c.org",
            "a@example..org",
            " a@example.org",
        ] {
            assert_eq!(Email::parse(bad), Err(ContactError::Email), "{bad}");
        }
    }

    #[test]
    fn an_email_mask_keeps_the_first_letter_and_the_domain() {
        assert_eq!(
            Email::parse("mario.rossi@example.org").unwrap().mask(),
            "m***@example.org"
        );
    }
}
