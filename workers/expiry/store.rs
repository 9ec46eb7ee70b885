//! The expiry worker's SQL: claiming due credentials and reset tokens in deadline
//! order with `FOR UPDATE SKIP LOCKED` (so replicas share a pass and none takes a row
//! another holds), marking them, and writing a batch's audit rows in one statement.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::domain::credential::{Credential, Holder, Kind, Status};
use crate::store::profiles::{self, Profile};

/// A claimed credential and its holder.
pub struct Due {
    /// What the rules look at.
    pub credential: Credential,
    /// Names and contacts, for the notice.
    pub profile: Profile,
}

/// Which deadline a claim looks for.
#[derive(Debug, Clone, Copy)]
pub enum Claim {
    /// Active or locked, validity period over at `now`.
    Expired,
    /// Active or locked, validity period ending in `(now, horizon]`, not reminded of.
    Reminder { horizon: DateTime<Utc> },
    /// Never activated, initial PIN's window over at `now`.
    InitialPin,
}

impl Claim {
    /// The condition and order of the claim: the same rule as the credential state
    /// machine's (`expire`, `reminder_due`), so every row claimed is changed and a
    /// pass always moves on. Each names the predicate of a partial index of the
    /// migration `expiry_reset`, so the claim reads only due rows.
    fn condition(self) -> &'static str {
        match self {
            Claim::Expired => {
                "status in ('active', 'locked') and valid_until <= $1
                 and activated_at is not null order by valid_until"
            }
            Claim::Reminder { .. } => {
                "status in ('active', 'locked') and reminded_for is distinct from valid_until
                 and valid_until > $1 and valid_until <= $3 and activated_at is not null
                 order by valid_until"
            }
            Claim::InitialPin => {
                "status in ('issued', 'locked') and activated_at is null
                 and initial_pin_expires_at <= $1 order by initial_pin_expires_at"
            }
        }
    }
}

const CREDENTIAL: &str = "id, kind, holder, status, initial_pin_expires_at, activated_at,
    valid_until, failed_attempts";

fn credential(row: &PgRow) -> Result<Credential, sqlx::Error> {
    let bad =
        |what: &str, value: String| sqlx::Error::Decode(format!("unknown {what} {value}").into());
    let kind: String = row.try_get("kind")?;
    let holder: String = row.try_get("holder")?;
    let status: String = row.try_get("status")?;
    let failed: i32 = row.try_get("failed_attempts")?;
    Ok(Credential {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind).ok_or_else(|| bad("kind", kind.clone()))?,
        holder: Holder::parse(&holder).ok_or_else(|| bad("holder", holder.clone()))?,
        status: Status::parse(&status).ok_or_else(|| bad("status", status.clone()))?,
        initial_pin_expires_at: row.try_get("initial_pin_expires_at")?,
        activated_at: row.try_get("activated_at")?,
        valid_until: row.try_get("valid_until")?,
        failed_attempts: u32::try_from(failed).unwrap_or(0),
    })
}

/// Claims at most `limit` credentials due at `now`, locked until the transaction ends;
/// rows another transaction holds are skipped, not waited for.
pub async fn claim(
    conn: &mut PgConnection,
    what: Claim,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Due>, sqlx::Error> {
    let sql = format!(
        "select {CREDENTIAL}, {profile} from credentials where {condition}
         limit $2 for update skip locked",
        profile = profiles::COLUMNS,
        condition = what.condition(),
    );
    let mut query = sqlx::query(&sql).bind(now).bind(i64::from(limit));
    if let Claim::Reminder { horizon } = what {
        query = query.bind(horizon);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            Ok(Due {
                credential: credential(row)?,
                profile: profiles::decode(row)?,
            })
        })
        .collect()
}

/// Marks credentials expired and drops their PIN hashes, which nothing may check any
/// more.
pub async fn mark_expired(
    conn: &mut PgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update credentials set status = 'expired', ended_at = coalesce(ended_at, $2),
             pin_hash = null, initial_pin_hash = null, locked_at = null
         where id = any($1)",
    )
    .bind(ids)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the reminder for each credential's current deadline went out.
pub async fn mark_reminded(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("update credentials set reminded_for = valid_until where id = any($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks at most `limit` pending reset tokens past their deadline as expired; returns
/// how many.
pub async fn expire_reset_tokens(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<usize, sqlx::Error> {
    let done = sqlx::query(
        "update reset_tokens set state = 'expired', ended_at = $1
         where token_sha256 in (
             select token_sha256 from reset_tokens
             where state = 'pending' and expires_at <= $1
             order by expires_at limit $2 for update skip locked)",
    )
    .bind(now)
    .bind(i64::from(limit))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(usize::try_from(done).unwrap_or(usize::MAX))
}

/// One audit row of a sweep: whose credential and what to keep.
pub struct Audited {
    /// Whose.
    pub tax_code: String,
    /// Which credential.
    pub credential_id: Uuid,
    /// The deadline and anything else worth keeping; never a secret.
    pub detail: Value,
}

/// Writes a batch's audit rows in one statement, all by `pinflow` at `at`.
pub async fn audit_all(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
    action: &str,
    rows: &[Audited],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let tax_codes: Vec<&str> = rows.iter().map(|r| r.tax_code.as_str()).collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.credential_id).collect();
    let details: Vec<Value> = rows.iter().map(|r| r.detail.clone()).collect();
    sqlx::query(
        "insert into audit_log (at, actor, action, tax_code, credential_id, detail)
         select $1, 'pinflow', $2, t, c, d
         from unnest($3::text[], $4::uuid[], $5::jsonb[]) as x(t, c, d)",
    )
    .bind(at)
    .bind(action)
    .bind(tax_codes)
    .bind(ids)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}
