//! The phone-PIN table, `phone_pin_credentials`: one row per tax code, the phone PIN
//! only as an Argon2id hash, cleared by the tidy-up job once past its validity.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, PgPool, Row as _};
use uuid::Uuid;

use super::state::PhonePinState;

/// A phone PIN about to replace the tax code's last one.
pub struct Replacement<'a> {
    /// Whose phone PIN.
    pub tax_code: &'a str,
    /// The live credential it is issued against.
    pub credential_id: Uuid,
    /// Its Argon2id hash.
    pub pin_hash: &'a str,
    /// Wire name of the validity (`P1D`, ...).
    pub validity: &'a str,
    /// Wire name of the authentication (`spid`, ...).
    pub authenticated_with: &'a str,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// Until when it works, to the millisecond.
    pub valid_until: DateTime<Utc>,
}

/// A stored phone PIN.
#[derive(Clone)]
pub struct Stored {
    /// The credential it was issued against.
    pub credential_id: Uuid,
    /// The hash, until tidied up.
    pub pin_hash: Option<String>,
    /// What the rules look at.
    pub state: PhonePinState,
}

/// Stores new phone PINs in place of their tax codes' last ones, in one statement and
/// in the order of their tax codes (the order a batch's verifies lock them in): a fresh
/// count, no lock. No tax code may come twice.
pub async fn replace_all<'a>(
    conn: &mut PgConnection,
    news: &[Replacement<'a>],
) -> Result<(), sqlx::Error> {
    if news.is_empty() {
        return Ok(());
    }
    let column = |field: fn(&Replacement<'a>) -> &'a str| -> Vec<&'a str> {
        news.iter().map(field).collect()
    };
    let credential_ids: Vec<Uuid> = news.iter().map(|new| new.credential_id).collect();
    let issued_at: Vec<DateTime<Utc>> = news.iter().map(|new| new.issued_at).collect();
    let valid_until: Vec<DateTime<Utc>> = news.iter().map(|new| new.valid_until).collect();
    sqlx::query(
        "insert into phone_pin_credentials (tax_code, credential_id, pin_hash, validity,
             authenticated_with, issued_at, valid_until)
         select * from unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
             $6::timestamptz[], $7::timestamptz[]) as new
         order by 1
         on conflict (tax_code) do update set credential_id = excluded.credential_id,
             pin_hash = excluded.pin_hash, validity = excluded.validity,
             authenticated_with = excluded.authenticated_with,
             issued_at = excluded.issued_at, valid_until = excluded.valid_until,
             failed_attempts = 0, locked_at = null, tidied_at = null",
    )
    .bind(column(|new| new.tax_code))
    .bind(credential_ids)
    .bind(column(|new| new.pin_hash))
    .bind(column(|new| new.validity))
    .bind(column(|new| new.authenticated_with))
    .bind(issued_at)
    .bind(valid_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// The tax code's phone PIN, with whether its credential has been revoked since, locked
/// for update.
pub async fn for_update(
    conn: &mut PgConnection,
    tax_code: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    let mut found = for_update_all(conn, &[tax_code]).await?;
    Ok(found.remove(tax_code))
}

/// `for_update` for several tax codes in one statement, locked in the order of the tax
/// codes (so two batches that wait on each other's rows wait in the same order): each
/// tax code's phone PIN, where it has one.
pub async fn for_update_all(
    conn: &mut PgConnection,
    tax_codes: &[&str],
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    read_all_with(conn, tax_codes, " for update of p").await
}

/// The tax code's phone PIN as it stands, without a lock (for the check made before
/// the transaction).
pub async fn read(pool: &PgPool, tax_code: &str) -> Result<Option<Stored>, sqlx::Error> {
    let mut found = read_all(pool, &[tax_code]).await?;
    Ok(found.remove(tax_code))
}

/// `read` for several tax codes in one statement (none for no tax codes).
pub async fn read_all(
    conn: impl PgExecutor<'_>,
    tax_codes: &[&str],
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    read_all_with(conn, tax_codes, "").await
}

/// The phone PINs of `tax_codes`, with whether each one's credential has been revoked
/// since, in the order of their tax codes, then `lock`.
async fn read_all_with(
    conn: impl PgExecutor<'_>,
    tax_codes: &[&str],
    lock: &str,
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    if tax_codes.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "select p.tax_code, p.credential_id, p.pin_hash, p.valid_until, p.failed_attempts,
                p.locked_at is not null as locked, c.status = 'revoked' as credential_revoked
         from phone_pin_credentials p join credentials c on c.id = p.credential_id
         where p.tax_code = any($1::text[])
         order by p.tax_code{lock}"
    );
    let rows = sqlx::query(&sql).bind(tax_codes).fetch_all(conn).await?;
    rows.into_iter()
        .map(|row| Ok((row.try_get("tax_code")?, decode(row)?)))
        .collect()
}

fn decode(row: PgRow) -> Result<Stored, sqlx::Error> {
    let pin_hash: Option<String> = row.try_get("pin_hash")?;
    let failed: i32 = row.try_get("failed_attempts")?;
    Ok(Stored {
        credential_id: row.try_get("credential_id")?,
        state: PhonePinState {
            valid_until: row.try_get("valid_until")?,
            failed_attempts: u32::try_from(failed).unwrap_or(0),
            locked: row.try_get("locked")?,
            has_hash: pin_hash.is_some(),
            credential_revoked: row.try_get("credential_revoked")?,
        },
        pin_hash,
    })
}

/// Stores the count of consecutive failures and, once locked, when.
pub async fn save_attempts(
    conn: &mut PgConnection,
    tax_code: &str,
    state: &PhonePinState,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update phone_pin_credentials set failed_attempts = $2,
             locked_at = case when $3 then coalesce(locked_at, $4) end
         where tax_code = $1",
    )
    .bind(tax_code)
    .bind(i32::try_from(state.failed_attempts).unwrap_or(i32::MAX))
    .bind(state.locked)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Clears the hashes of at most `limit` phone PINs past their validity at `now`,
/// skipping rows another runner holds; returns how many.
pub async fn tidy_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "with due as (
             select tax_code from phone_pin_credentials
             where pin_hash is not null and valid_until <= $1
             order by valid_until limit $2 for update skip locked)
         update phone_pin_credentials p set pin_hash = null, tidied_at = $1
         from due where p.tax_code = due.tax_code",
    )
    .bind(now)
    .bind(i64::from(limit))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
