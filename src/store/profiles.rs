//! What pinflow keeps of a credential's holder besides the credential's state: names,
//! contacts and health card. Read for notices and identity checks, changed by contact
//! updates. Knows the contract's shapes of contacts and health cards; holds no secret.

use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::contract::NotifyChannel;
use crate::contract::commands::{Contacts, HealthCard};
use crate::domain::Email;

/// The holder of one credential, as on record.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Whose credential (checked at issue).
    pub tax_code: String,
    /// Given name, for the notices' greeting.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// How to reach the holder.
    pub contacts: Contacts,
    /// The health card, if one was given at issue.
    pub health_card: Option<HealthCard>,
}

impl Profile {
    /// Where a notice "by e-mail or PEC" goes: the e-mail on record, else the PEC;
    /// `None` when the holder gave only a mobile number.
    pub fn notice_address(&self) -> Option<(NotifyChannel, &Email)> {
        match (&self.contacts.email, &self.contacts.pec) {
            (Some(email), _) => Some((NotifyChannel::Email, email)),
            (None, Some(pec)) => Some((NotifyChannel::Pec, pec)),
            (None, None) => None,
        }
    }
}

/// The columns `decode` reads; a query that selects them may decode its rows.
pub const COLUMNS: &str = "tax_code, given_name, family_name, contacts, health_card";

fn json<T: DeserializeOwned>(row: &PgRow, column: &str) -> Result<T, sqlx::Error> {
    let value: Value = row.try_get(column)?;
    serde_json::from_value(value)
        .map_err(|e| sqlx::Error::Decode(format!("stored {column} unreadable: {e}").into()))
}

/// Reads the `COLUMNS` of a row.
pub fn decode(row: &PgRow) -> Result<Profile, sqlx::Error> {
    let health_card: Option<Value> = row.try_get("health_card")?;
    let health_card = match health_card {
        Some(value) => Some(serde_json::from_value(value).map_err(|e| {
            sqlx::Error::Decode(format!("stored health_card unreadable: {e}").into())
        })?),
        None => None,
    };
    Ok(Profile {
        tax_code: row.try_get("tax_code")?,
        given_name: row.try_get("given_name")?,
        family_name: row.try_get("family_name")?,
        contacts: json(row, "contacts")?,
        health_card,
    })
}

/// The holder of a credential.
pub async fn of(
    conn: &mut PgConnection,
    credential_id: Uuid,
) -> Result<Option<Profile>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from credentials where id = $1");
    let row = sqlx::query(&sql)
        .bind(credential_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Replaces the contacts on record.
pub async fn set_contacts(
    conn: &mut PgConnection,
    credential_id: Uuid,
    contacts: &Contacts,
) -> Result<(), sqlx::Error> {
    let contacts = serde_json::to_value(contacts)
        .map_err(|e| sqlx::Error::Encode(format!("contacts: {e}").into()))?;
    sqlx::query("update credentials set contacts = $2 where id = $1")
        .bind(credential_id)
        .bind(contacts)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(contacts: serde_json::Value) -> Profile {
        Profile {
            tax_code: "RSSMRA85T10A562S".into(),
            given_name: "Mario".into(),
            family_name: "Rossi".into(),
            contacts: serde_json::from_value(contacts).unwrap(),
            health_card: None,
        }
    }

    #[test]
    fn a_notice_goes_to_the_email_else_the_pec_else_nowhere() {
        let both =
            profile(serde_json::json!({ "email": "m@example.org", "pec": "m@pec.example.it" }));
        let (channel, to) = both.notice_address().unwrap();
        assert_eq!(
            (channel, to.as_str()),
            (NotifyChannel::Email, "m@example.org")
        );
        let pec =
            profile(serde_json::json!({ "mobile": "+393331234567", "pec": "m@pec.example.it" }));
        assert_eq!(pec.notice_address().unwrap().0, NotifyChannel::Pec);
        let mobile = profile(serde_json::json!({ "mobile": "+393331234567" }));
        assert!(mobile.notice_address().is_none());
    }
}
