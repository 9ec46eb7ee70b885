//! The delegation table, `delegations`: at most one live row per delegator-delegate
//! pair (a partial unique index), a dated one ending at a stored instant that every
//! check compares with, whether or not the expiry job has run yet.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

/// The institute's legal time: a delegation "valid until" a day ends when that day
/// ends in Italy.
pub const LEGAL_TIME_ZONE: &str = "Europe/Rome";

/// Where a delegation stands in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Granted and not ended by an operator or by the job (it may still be past its
    /// end: see [`Delegation::is_live`]).
    Live,
    /// Ended by `delegation.revoke`.
    Revoked,
    /// Ended at its `ends_at`.
    Expired,
}

impl Status {
    /// The name stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        [Status::Live, Status::Revoked, Status::Expired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A stored delegation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// Its id, as in `delegation.granted`.
    pub id: Uuid,
    /// Who delegates (a checked tax code).
    pub delegator: String,
    /// Who is delegated (a checked tax code).
    pub delegate: String,
    /// Its last day, as granted.
    pub valid_until: Option<NaiveDate>,
    /// The instant it ends.
    pub ends_at: Option<DateTime<Utc>>,
    /// As stored.
    pub status: Status,
}

impl Delegation {
    /// Live: not ended, and not past its end.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status == Status::Live && self.ends_at.is_none_or(|end| now < end)
    }

    /// Stored as live, but its end has passed (the job has not run yet).
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.status == Status::Live && !self.is_live(now)
    }
}

const COLUMNS: &str = "id, delegator_tax_code, delegate_tax_code, valid_until, ends_at, status";

fn decode(row: PgRow) -> Result<Delegation, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Delegation {
        id: row.try_get("id")?,
        delegator: row.try_get("delegator_tax_code")?,
        delegate: row.try_get("delegate_tax_code")?,
        valid_until: row.try_get("valid_until")?,
        ends_at: row.try_get("ends_at")?,
        status: Status::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?,
    })
}

/// The instant a delegation valid until `day` ends: the start of the next day in Italy.
pub async fn end_of(conn: &mut PgConnection, day: NaiveDate) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("select ($1::date + 1)::timestamp at time zone $2")
        .bind(day)
        .bind(LEGAL_TIME_ZONE)
        .fetch_one(conn)
        .await
}

/// The pair's delegation stored as live, locked for update.
pub async fn live_pair_for_update(
    conn: &mut PgConnection,
    delegator: &str,
    delegate: &str,
) -> Result<Option<Delegation>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from delegations
         where delegator_tax_code = $1 and delegate_tax_code = $2 and status = 'live'
         for update"
    );
    let row = sqlx::query(&sql)
        .bind(delegator)
        .bind(delegate)
        .fetch_optional(conn)
        .await?;
    row.map(decode).transpose()
}

/// A delegation by id, locked for update.
pub async fn for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Delegation>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from delegations where id = $1 for update");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.map(decode).transpose()
}

/// Inserts a live delegation; false when the pair already has a live one (a concurrent
/// grant won), without aborting the caller's transaction.
pub async fn insert(
    conn: &mut PgConnection,
    delegation: &Delegation,
    granted_at: DateTime<Utc>,
    granted_by: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "insert into delegations (id, delegator_tax_code, delegate_tax_code, valid_until,
             ends_at, status, granted_at, granted_by)
         values ($1, $2, $3, $4, $5, 'live', $6, $7)
         on conflict (delegator_tax_code, delegate_tax_code) where status = 'live' do nothing",
    )
    .bind(delegation.id)
    .bind(&delegation.delegator)
    .bind(&delegation.delegate)
    .bind(delegation.valid_until)
    .bind(delegation.ends_at)
    .bind(granted_at)
    .bind(granted_by)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Ends a live delegation: revoked by `by` at `at`, or expired at its end.
pub async fn end(
    conn: &mut PgConnection,
    id: Uuid,
    status: Status,
    at: DateTime<Utc>,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update delegations set status = $2, ended_at = $3, ended_by = $4
         where id = $1 and status = 'live'",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(at)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

/// At most `limit` live delegations whose end has passed at `now`, locked, skipping
/// rows another runner holds.
pub async fn due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Delegation>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from delegations where status = 'live' and ends_at <= $1
         order by ends_at limit $2 for update skip locked"
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(decode).collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn a_dated_delegation_stops_being_live_at_the_instant_it_ends() {
        let end = Utc::now();
        let delegation = Delegation {
            id: Uuid::nil(),
            delegator: "A".into(),
            delegate: "B".into(),
            valid_until: None,
            ends_at: Some(end),
            status: Status::Live,
        };
        assert!(delegation.is_live(end - Duration::milliseconds(1)));
        assert!(!delegation.is_live(end));
        assert!(delegation.is_due(end));
        let revoked = Delegation {
            status: Status::Revoked,
            ends_at: None,
            ..delegation
        };
        assert!(!revoked.is_live(end) && !revoked.is_due(end));
    }
}
