//! The reset worker's SQL: reset tokens (kept only as SHA-256), the reset requests
//! counted per tax code, and a credential's reset. The credential row is always
//! locked before its tokens, as the revocation worker does, so the two never
//! deadlock.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::domain::credential::Credential;

/// A token's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Waiting for its confirmation.
    Pending,
    /// Confirmed once; never again.
    Used,
    /// Past its deadline.
    Expired,
    /// A newer request replaced it.
    Superseded,
    /// Its PIN was revoked.
    Revoked,
}

impl TokenState {
    fn parse(text: &str) -> Option<TokenState> {
        Some(match text {
            "pending" => TokenState::Pending,
            "used" => TokenState::Used,
            "expired" => TokenState::Expired,
            "superseded" => TokenState::Superseded,
            "revoked" => TokenState::Revoked,
            _ => return None,
        })
    }
}

/// A stored token.
pub struct Token {
    /// The credential it resets.
    pub credential_id: Uuid,
    /// Whose.
    pub tax_code: String,
    /// Its state.
    pub state: TokenState,
    /// Until when it works.
    pub expires_at: DateTime<Utc>,
}

impl Token {
    /// Whether a confirmation may use it at `now`.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        self.state == TokenState::Pending && now < self.expires_at
    }
}

/// The token with this hash; `lock` holds it until the transaction ends.
pub async fn token(
    conn: &mut PgConnection,
    sha256: &[u8],
    lock: bool,
) -> Result<Option<Token>, sqlx::Error> {
    let sql = format!(
        "select credential_id, tax_code, state, expires_at from reset_tokens
         where token_sha256 = $1{}",
        if lock { " for update" } else { "" }
    );
    let Some(row) = sqlx::query(&sql).bind(sha256).fetch_optional(conn).await? else {
        return Ok(None);
    };
    let state: String = row.try_get("state")?;
    Ok(Some(Token {
        credential_id: row.try_get("credential_id")?,
        tax_code: row.try_get("tax_code")?,
        state: TokenState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown token state {state}").into()))?,
        expires_at: row.try_get("expires_at")?,
    }))
}

/// A new token replaces the credential's pending ones.
pub async fn replace_tokens(
    conn: &mut PgConnection,
    sha256: &[u8],
    credential_id: Uuid,
    tax_code: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update reset_tokens set state = 'superseded', ended_at = $2
         where credential_id = $1 and state = 'pending'",
    )
    .bind(credential_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "insert into reset_tokens (token_sha256, credential_id, tax_code, created_at, expires_at)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(sha256)
    .bind(credential_id)
    .bind(tax_code)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a token used.
pub async fn use_token(
    conn: &mut PgConnection,
    sha256: &[u8],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("update reset_tokens set state = 'used', ended_at = $2 where token_sha256 = $1")
        .bind(sha256)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// What became of a reset request that was weighed.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    LinkSent,
    ContactsMismatch,
    NotFound,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::LinkSent => "link_sent",
            Outcome::ContactsMismatch => "contacts_mismatch",
            Outcome::NotFound => "not_found",
        }
    }
}

/// Reset requests of a tax code weighed since `since`.
pub async fn requests_since(
    conn: &mut PgConnection,
    tax_code: &str,
    since: DateTime<Utc>,
) -> Result<u32, sqlx::Error> {
    let count: i64 =
        sqlx::query_scalar("select count(*) from reset_requests where tax_code = $1 and at > $2")
            .bind(tax_code)
            .bind(since)
            .fetch_one(conn)
            .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// Counts a weighed request toward the tax code's limit.
pub async fn record_request(
    conn: &mut PgConnection,
    tax_code: &str,
    now: DateTime<Utc>,
    outcome: Outcome,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into reset_requests (tax_code, at, outcome) values ($1, $2, $3)")
        .bind(tax_code)
        .bind(now)
        .bind(outcome.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores a reset credential with its new initial PIN's hash: the old PIN's hash, the
/// lock and the reminder go with the old PIN.
pub async fn save_reset(
    conn: &mut PgConnection,
    reset: &Credential,
    initial_pin_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update credentials set status = $2, failed_attempts = $3, activated_at = $4,
             valid_until = $5, initial_pin_expires_at = $6, initial_pin_hash = $7,
             pin_hash = null, locked_at = null, reminded_for = null
         where id = $1",
    )
    .bind(reset.id)
    .bind(reset.status.as_str())
    .bind(i32::try_from(reset.failed_attempts).unwrap_or(i32::MAX))
    .bind(reset.activated_at)
    .bind(reset.valid_until)
    .bind(reset.initial_pin_expires_at)
    .bind(initial_pin_hash)
    .execute(conn)
    .await?;
    Ok(())
}
