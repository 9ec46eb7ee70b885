//! The credential repository. PINs are stored only as Argon2id hashes; the initial
//! PIN's hash is cleared once it has been used.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row as _};
use uuid::Uuid;

use crate::domain::credential::{Credential, Holder, Kind, Status};

/// A credential about to be issued.
pub struct NewCredential<'a> {
    pub id: Uuid,
    pub tax_code: &'a str,
    pub kind: Kind,
    pub holder: Holder,
    pub channel: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub birth_date: NaiveDate,
    pub residence_country: &'a str,
    pub contacts: Value,
    pub postal_address: Value,
    pub health_card: Option<Value>,
    pub initial_pin_hash: &'a str,
    pub initial_pin_expires_at: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
}

/// A stored credential with its hashes.
#[derive(Clone)]
pub struct Stored {
    /// What the rules look at.
    pub credential: Credential,
    /// The initial PIN's hash, until first access.
    pub initial_pin_hash: Option<String>,
    /// The 8-character PIN's hash, after first access.
    pub pin_hash: Option<String>,
}

/// Why an insert failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// Another current credential exists for the tax code (a concurrent request won).
    #[error("a current credential exists for this tax code")]
    AlreadyCurrent,
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, kind, holder, status, initial_pin_expires_at, activated_at,
    valid_until, failed_attempts, initial_pin_hash, pin_hash";

fn decode(row: PgRow) -> Result<Stored, sqlx::Error> {
    let bad =
        |what: &str, value: String| sqlx::Error::Decode(format!("unknown {what} {value}").into());
    let kind: String = row.try_get("kind")?;
    let holder: String = row.try_get("holder")?;
    let status: String = row.try_get("status")?;
    let failed: i32 = row.try_get("failed_attempts")?;
    Ok(Stored {
        credential: Credential {
            id: row.try_get("id")?,
            kind: Kind::parse(&kind).ok_or_else(|| bad("kind", kind.clone()))?,
            holder: Holder::parse(&holder).ok_or_else(|| bad("holder", holder.clone()))?,
            status: Status::parse(&status).ok_or_else(|| bad("status", status.clone()))?,
            initial_pin_expires_at: row.try_get("initial_pin_expires_at")?,
            activated_at: row.try_get("activated_at")?,
            valid_until: row.try_get("valid_until")?,
            failed_attempts: u32::try_from(failed).unwrap_or(0),
        },
        initial_pin_hash: row.try_get("initial_pin_hash")?,
        pin_hash: row.try_get("pin_hash")?,
    })
}

/// The tax code's current credential, or else its most recent one, locked for update.
pub async fn latest_for_update(
    conn: &mut PgConnection,
    tax_code: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    let mut latest = latest_all_with(conn, &[tax_code], " for update").await?;
    Ok(latest.remove(tax_code))
}

/// `latest_for_update` for several tax codes in one statement, locked in the order of
/// the tax codes (so two batches that wait on each other's rows wait in the same
/// order): each tax code's credential, where it has one.
pub async fn latest_for_update_all(
    conn: &mut PgConnection,
    tax_codes: &[&str],
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    latest_all_with(conn, tax_codes, " for update").await
}

/// The same credential as `latest_for_update`, read without a lock (what it holds may
/// change before a transaction locks it).
pub async fn latest(
    conn: impl PgExecutor<'_>,
    tax_code: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    let mut latest = latest_all(conn, &[tax_code]).await?;
    Ok(latest.remove(tax_code))
}

/// `latest` for several tax codes in one statement (none for no tax codes).
pub async fn latest_all(
    conn: impl PgExecutor<'_>,
    tax_codes: &[&str],
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    latest_all_with(conn, tax_codes, "").await
}

async fn latest_all_with(
    conn: impl PgExecutor<'_>,
    tax_codes: &[&str],
    lock: &str,
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    if tax_codes.is_empty() {
        return Ok(HashMap::new());
    }
    let mut tax_codes = tax_codes.to_vec();
    tax_codes.sort_unstable();
    let sql = format!(
        "select t.code, c.* from unnest($1::text[]) with ordinality as t(code, n)
         cross join lateral (
             select {COLUMNS} from credentials where tax_code = t.code
             order by (status in ('issued', 'active', 'locked')) desc, issued_at desc
             limit 1{lock}) c
         order by t.n"
    );
    let rows = sqlx::query(&sql).bind(tax_codes).fetch_all(conn).await?;
    rows.into_iter()
        .map(|row| Ok((row.try_get("code")?, decode(row)?)))
        .collect()
}

/// Inserts a new credential; `AlreadyCurrent` when the tax code has a current one
/// (also when a concurrent request inserted it first: the insert then waits for that
/// transaction and does nothing). No error aborts the caller's transaction.
pub async fn insert(conn: &mut PgConnection, new: &NewCredential<'_>) -> Result<(), InsertError> {
    let inserted = insert_all(conn, std::slice::from_ref(new)).await?;
    if inserted.is_empty() {
        Err(InsertError::AlreadyCurrent)
    } else {
        Ok(())
    }
}

/// Inserts new credentials in one statement, in the order of their tax codes (so two
/// batches that wait on each other's rows wait in the same order); the ids of those
/// inserted. One whose tax code has a current credential, or another of the same
/// statement earlier in that order, is not inserted, as `insert` would not insert it.
/// No error aborts the caller's transaction.
pub async fn insert_all(
    conn: &mut PgConnection,
    news: &[NewCredential<'_>],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut news: Vec<&NewCredential<'_>> = news.iter().collect();
    news.sort_by_key(|new| new.tax_code);
    fn text<'n>(
        news: &[&'n NewCredential<'n>],
        f: fn(&'n NewCredential<'n>) -> &'n str,
    ) -> Vec<&'n str> {
        news.iter().map(|n| f(n)).collect()
    }
    let column = |f| text(&news, f);
    let id: Vec<Uuid> = news.iter().map(|n| n.id).collect();
    let birth_date: Vec<NaiveDate> = news.iter().map(|n| n.birth_date).collect();
    let contacts: Vec<&Value> = news.iter().map(|n| &n.contacts).collect();
    let postal_address: Vec<&Value> = news.iter().map(|n| &n.postal_address).collect();
    let health_card: Vec<Option<&Value>> = news.iter().map(|n| n.health_card.as_ref()).collect();
    let expires: Vec<DateTime<Utc>> = news.iter().map(|n| n.initial_pin_expires_at).collect();
    let issued_at: Vec<DateTime<Utc>> = news.iter().map(|n| n.issued_at).collect();
    sqlx::query_scalar(
        "insert into credentials (id, tax_code, kind, holder, channel, status, given_name,
             family_name, birth_date, residence_country, contacts, postal_address,
             health_card, initial_pin_hash, initial_pin_expires_at, issued_at)
         select i, t, k, h, c, 'issued', g, f, b, r, ct, pa, hc, p, e, at
         from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::date[], $9::text[], $10::jsonb[], $11::jsonb[], $12::jsonb[],
             $13::text[], $14::timestamptz[], $15::timestamptz[])
         with ordinality as n(i, t, k, h, c, g, f, b, r, ct, pa, hc, p, e, at, o)
         order by o
         on conflict (tax_code) where status in ('issued', 'active', 'locked') do nothing
         returning id",
    )
    .bind(id)
    .bind(column(|n| n.tax_code))
    .bind(column(|n| n.kind.as_str()))
    .bind(column(|n| n.holder.as_str()))
    .bind(column(|n| n.channel))
    .bind(column(|n| n.given_name))
    .bind(column(|n| n.family_name))
    .bind(birth_date)
    .bind(column(|n| n.residence_country))
    .bind(contacts)
    .bind(postal_address)
    .bind(health_card)
    .bind(column(|n| n.initial_pin_hash))
    .bind(expires)
    .bind(issued_at)
    .fetch_all(conn)
    .await
}

/// Stores a credential's new state. `pin_hash`, when given, replaces the PIN hash and
/// clears the initial PIN's (first access).
pub async fn save(
    conn: &mut PgConnection,
    credential: &Credential,
    pin_hash: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let saved = Saved::new(credential, pin_hash, now);
    save_all(conn, std::slice::from_ref(&saved)).await
}

/// A credential's new state held to be stored with others (see `save_all`).
pub struct Saved {
    /// The new state.
    pub credential: Credential,
    /// The new PIN's hash, as `save` takes it.
    pub pin_hash: Option<String>,
    /// When the change happened.
    pub now: DateTime<Utc>,
}

impl Saved {
    /// A credential's new state, as `save` takes it.
    pub fn new(credential: &Credential, pin_hash: Option<&str>, now: DateTime<Utc>) -> Saved {
        Saved {
            credential: credential.clone(),
            pin_hash: pin_hash.map(str::to_owned),
            now,
        }
    }
}

/// `save` for several credentials, each once, in one statement.
pub async fn save_all(conn: &mut PgConnection, saves: &[Saved]) -> Result<(), sqlx::Error> {
    if saves.is_empty() {
        return Ok(());
    }
    let id: Vec<Uuid> = saves.iter().map(|s| s.credential.id).collect();
    let status: Vec<&str> = saves.iter().map(|s| s.credential.status.as_str()).collect();
    let failed: Vec<i32> = saves
        .iter()
        .map(|s| i32::try_from(s.credential.failed_attempts).unwrap_or(i32::MAX))
        .collect();
    let activated_at: Vec<Option<DateTime<Utc>>> =
        saves.iter().map(|s| s.credential.activated_at).collect();
    let valid_until: Vec<Option<DateTime<Utc>>> =
        saves.iter().map(|s| s.credential.valid_until).collect();
    let pin_hash: Vec<Option<&str>> = saves.iter().map(|s| s.pin_hash.as_deref()).collect();
    let now: Vec<DateTime<Utc>> = saves.iter().map(|s| s.now).collect();
    sqlx::query(
        "update credentials c set status = s.status, failed_attempts = s.failed,
             activated_at = s.activated_at, valid_until = s.valid_until,
             pin_hash = coalesce(s.pin_hash, c.pin_hash),
             initial_pin_hash = case when s.pin_hash is null then c.initial_pin_hash end,
             locked_at = case when s.status = 'locked' then coalesce(c.locked_at, s.now) end,
             ended_at = case when s.status in ('expired', 'revoked')
                             then coalesce(c.ended_at, s.now) end
         from unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[],
             $5::timestamptz[], $6::text[], $7::timestamptz[])
             as s(id, status, failed, activated_at, valid_until, pin_hash, now)
         where c.id = s.id",
    )
    .bind(id)
    .bind(status)
    .bind(failed)
    .bind(activated_at)
    .bind(valid_until)
    .bind(pin_hash)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

// For the device-PIN flow (the verification and conversion workers): a credential by
// id, its kind, and who it belongs to.

/// A credential by id, locked for update.
pub async fn by_id_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Stored>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from credentials where id = $1 for update");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.map(decode).transpose()
}

/// Stores a credential's kind (a conversion: the PIN and its hashes stay as they are).
pub async fn save_kind(
    conn: &mut PgConnection,
    credential: &Credential,
) -> Result<(), sqlx::Error> {
    sqlx::query("update credentials set kind = $2 where id = $1")
        .bind(credential.id)
        .bind(credential.kind.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Whom a credential belongs to, as a notice addresses them.
pub struct Addressee {
    /// Given name, for the greeting.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// The contacts on record.
    pub contacts: crate::contract::commands::Contacts,
}

/// The holder of a credential and their contacts on record.
pub async fn addressee(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Addressee>, sqlx::Error> {
    let row =
        sqlx::query("select given_name, family_name, contacts from credentials where id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(|row| {
        let contacts: Value = row.try_get("contacts")?;
        Ok(Addressee {
            given_name: row.try_get("given_name")?,
            family_name: row.try_get("family_name")?,
            contacts: serde_json::from_value(contacts)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        })
    })
    .transpose()
}
