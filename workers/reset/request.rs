//! `pin.reset.request`: the rate limit per tax code, the two contacts that must be
//! those on record, and the single-use link by e-mail or PEC whose token is the
//! notification's secret and is stored only as its SHA-256.

use serde_json::json;
use sqlx::PgConnection;
use zeroize::Zeroizing;

use super::command::ResetRequest;
use super::store::{self, Outcome};
use super::{Reset, matching, refuse, sha256};
use crate::contract::account_events::ResetRejection;
use crate::contract::{Carries, Notice, Outgoing};
use crate::domain::ResetToken;
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::{credentials, profiles};

/// A new random token and its SHA-256, made before the transaction.
pub struct NewToken {
    token: ResetToken,
    sha256: [u8; 32],
}

impl NewToken {
    /// 32 bytes from the OS CSPRNG.
    pub fn generate() -> NewToken {
        let token = ResetToken::generate();
        let sha256 = sha256(token.expose());
        NewToken { token, sha256 }
    }
}

/// Handles one `pin.reset.request`.
pub async fn handle(
    worker: &Reset,
    request: &ResetRequest,
    token: &NewToken,
    message: &Message<'_>,
    conn: &mut PgConnection,
) -> Result<Vec<Outgoing>, HandlerError> {
    let tax_code = &request.tax_code;
    let now = message.now;
    // Locking the credential first serializes the requests of one tax code, so the
    // count below cannot be raced past the limit.
    let stored = credentials::latest_for_update(conn, tax_code.as_str()).await?;
    let since = worker.rules.reset_rate_window.sub_from(now);
    let recent = store::requests_since(conn, tax_code.as_str(), since).await?;
    if recent >= worker.rules.reset_rate_limit {
        return refuse(message, tax_code, None, ResetRejection::RateLimited);
    }
    let Some(stored) = stored.filter(|s| s.credential.is_live(now)) else {
        store::record_request(conn, tax_code.as_str(), now, Outcome::NotFound).await?;
        return refuse(message, tax_code, None, ResetRejection::NotFound);
    };
    let id = stored.credential.id;
    let profile = profiles::of(conn, id)
        .await?
        .ok_or_else(|| HandlerError::Permanent("a locked credential vanished".into()))?;
    let link = matching::link_address(&request.contacts, &profile.contacts);
    let (Some((channel, to)), 2..) = (
        link,
        matching::matches(&request.contacts, &profile.contacts),
    ) else {
        store::record_request(conn, tax_code.as_str(), now, Outcome::ContactsMismatch).await?;
        return refuse(
            message,
            tax_code,
            Some(id),
            ResetRejection::ContactsMismatch,
        );
    };
    let expires_at = worker.rules.reset_token_ttl.add_to(now);
    store::replace_tokens(conn, &token.sha256, id, tax_code.as_str(), now, expires_at).await?;
    store::record_request(conn, tax_code.as_str(), now, Outcome::LinkSent).await?;
    let expires = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    message.audit(
        &message.envelope.source,
        "pin.reset.requested",
        Some(tax_code.as_str()),
        Some(id),
        json!({ "link_via": channel.as_str(), "token_expires_at": expires }),
    );
    let notice = Notice {
        channel,
        template: "reset_link",
        to: json!(to.as_str()),
        params: json!({
            "credential_id": id,
            "given_name": profile.given_name,
            "family_name": profile.family_name,
            "expires_at": expires,
        }),
        tax_code: tax_code.as_str().to_owned(),
        credential_id: Some(id),
        secret: Some((
            Carries::Token,
            Zeroizing::new(token.token.expose().to_owned()),
        )),
    };
    Ok(vec![Outgoing::notification(notice, now)])
}
