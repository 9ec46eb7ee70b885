//! The conversions table: one row per `conversion.submit`, rejected at once by the
//! automatic checks, waiting for an operator, or approved. At most one conversion of a
//! credential waits at a time (a partial unique index). Shared with the verification
//! worker, which writes the rows this worker's reviews decide.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::contract::commands::{ConversionChannel, Document, Fax, IdentityDocument};
use crate::domain::TaxCode;

/// Where a conversion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for an operator's review.
    UnderReview,
    /// The PIN became a device PIN.
    Approved,
    /// Refused by the checks or by an operator; blocks nothing.
    Rejected,
}

impl Status {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::UnderReview => "under_review",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        [Status::UnderReview, Status::Approved, Status::Rejected]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A stored conversion, as a review sees it.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// Its id (`conversion_id` on the wire).
    pub id: Uuid,
    /// Whose PIN.
    pub tax_code: TaxCode,
    /// The PIN to convert; `None` only for a rejection of a tax code without one.
    pub credential_id: Option<Uuid>,
    /// How the documents arrived.
    pub channel: ConversionChannel,
    /// Where it stands.
    pub status: Status,
}

/// A conversion about to be recorded.
pub struct NewConversion<'a> {
    /// Its new id.
    pub id: Uuid,
    /// Whose PIN.
    pub tax_code: &'a TaxCode,
    /// The PIN to convert, if the tax code has one.
    pub credential_id: Option<Uuid>,
    /// How the documents arrived.
    pub channel: ConversionChannel,
    /// `UnderReview`, or `Rejected` with its reasons.
    pub status: Status,
    /// References to the documents.
    pub documents: &'a [Document],
    /// The identity document's data.
    pub identity_document: &'a IdentityDocument,
    /// How a fax arrived.
    pub fax: Option<&'a Fax>,
    /// Every failed check, for a rejection.
    pub reasons: &'a [String],
    /// The operator at the office, or the upstream system.
    pub submitted_by: &'a str,
    /// The `conversion.submit` message.
    pub message_id: &'a str,
    /// When it was handled.
    pub at: DateTime<Utc>,
}

/// A contract enum's wire name, as stored.
pub(super) fn wire<T: Serialize>(value: &T) -> Result<String, sqlx::Error> {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => Ok(text),
        Ok(other) => Err(sqlx::Error::Encode(format!("not a name: {other}").into())),
        Err(e) => Err(sqlx::Error::Encode(Box::new(e))),
    }
}

fn unwire<T: DeserializeOwned>(text: String) -> Result<T, sqlx::Error> {
    serde_json::from_value(Value::String(text)).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Records a conversion. `false` when it is to wait for review and another conversion
/// of the same credential already does (nothing was written).
pub async fn insert(conn: &mut PgConnection, new: &NewConversion<'_>) -> Result<bool, sqlx::Error> {
    let inserted = insert_all(conn, std::slice::from_ref(new)).await?;
    Ok(!inserted.is_empty())
}

/// Records conversions in one statement, in the order of their tax codes (so two
/// batches that wait on each other's rows wait in the same order); the ids of those
/// written. One that is to wait for review while another conversion of its credential
/// already does is not written, as `insert` would not write it.
pub async fn insert_all(
    conn: &mut PgConnection,
    news: &[NewConversion<'_>],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut news: Vec<&NewConversion<'_>> = news.iter().collect();
    news.sort_by(|a, b| a.tax_code.as_str().cmp(b.tax_code.as_str()));
    let decided_at =
        |new: &NewConversion<'_>| (new.status != Status::UnderReview).then_some(new.at);
    let mut channels = Vec::with_capacity(news.len());
    for new in &news {
        channels.push(wire(&new.channel)?);
    }
    sqlx::query_scalar(
        "insert into conversions (id, tax_code, credential_id, channel, status, documents,
             identity_document, fax, reasons, submitted_by, submit_message_id, submitted_at,
             decided_by, decide_message_id, decided_at)
         select * from unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[],
             $6::jsonb[], $7::jsonb[], $8::jsonb[], $9::jsonb[], $10::text[], $11::text[],
             $12::timestamptz[], $13::text[], $14::text[], $15::timestamptz[])
         on conflict (credential_id) where status = 'under_review' do nothing
         returning id",
    )
    .bind(news.iter().map(|n| n.id).collect::<Vec<_>>())
    .bind(news.iter().map(|n| n.tax_code.as_str()).collect::<Vec<_>>())
    .bind(news.iter().map(|n| n.credential_id).collect::<Vec<_>>())
    .bind(channels)
    .bind(news.iter().map(|n| n.status.as_str()).collect::<Vec<_>>())
    .bind(news.iter().map(|n| json!(n.documents)).collect::<Vec<_>>())
    .bind(
        news.iter()
            .map(|n| json!(n.identity_document))
            .collect::<Vec<_>>(),
    )
    .bind(
        news.iter()
            .map(|n| n.fax.map(|fax| json!(fax)))
            .collect::<Vec<_>>(),
    )
    .bind(news.iter().map(|n| json!(n.reasons)).collect::<Vec<_>>())
    .bind(news.iter().map(|n| n.submitted_by).collect::<Vec<_>>())
    .bind(news.iter().map(|n| n.message_id).collect::<Vec<_>>())
    .bind(news.iter().map(|n| n.at).collect::<Vec<_>>())
    .bind(
        news.iter()
            .map(|n| decided_at(n).map(|_| n.submitted_by))
            .collect::<Vec<_>>(),
    )
    .bind(
        news.iter()
            .map(|n| decided_at(n).map(|_| n.message_id))
            .collect::<Vec<_>>(),
    )
    .bind(news.iter().map(|n| decided_at(n)).collect::<Vec<_>>())
    .fetch_all(conn)
    .await
}

const COLUMNS: &str = "id, tax_code, credential_id, channel, status";

fn decode(row: PgRow) -> Result<Conversion, sqlx::Error> {
    let tax_code: String = row.try_get("tax_code")?;
    let status: String = row.try_get("status")?;
    Ok(Conversion {
        id: row.try_get("id")?,
        tax_code: TaxCode::parse(&tax_code).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        credential_id: row.try_get("credential_id")?,
        channel: unwire(row.try_get("channel")?)?,
        status: Status::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?,
    })
}

/// A conversion by id, without locking it.
pub async fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<Conversion>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from conversions where id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.map(decode).transpose()
}

/// A conversion by id, locked for update: two reviews of it take turns, and the second
/// sees what the first decided.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Conversion>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from conversions where id = $1 for update");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.map(decode).transpose()
}

/// The conversion of a credential that waits for review, if any.
pub async fn pending_for(
    conn: &mut PgConnection,
    credential_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select id from conversions where credential_id = $1 and status = 'under_review'",
    )
    .bind(credential_id)
    .fetch_optional(conn)
    .await
}

/// Records the decision on a conversion that waits for review; `false` if it no longer
/// waits (nothing was written).
pub async fn decide(
    conn: &mut PgConnection,
    id: Uuid,
    status: Status,
    reasons: &[String],
    by: &str,
    message_id: &str,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "update conversions set status = $2, reasons = $3, decided_by = $4,
             decide_message_id = $5, decided_at = $6
         where id = $1 and status = 'under_review'",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(json!(reasons))
    .bind(by)
    .bind(message_id)
    .bind(at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}
