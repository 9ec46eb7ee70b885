//! `pinflow credential show`: a credential as the support desk sees it — state, kind,
//! holder, deadlines, lock, masked contacts, the notifications sent about it with their
//! delivery state and its audit history, the phone PIN's validity and the delegation
//! given and received — and never a secret (the hashes are not even read).

use serde_json::{Value, json};
use sqlx::{PgPool, Row as _};

use crate::domain::{Email, Mobile, TaxCode};
use crate::store::notifications;

fn masked(contacts: &Value) -> Value {
    let mask = |name: &str, value: &Value| -> Option<String> {
        let text = value.as_str()?;
        Some(match name {
            "mobile" => Mobile::parse(text)
                .map(|m| m.mask())
                .unwrap_or_else(|_| "***".into()),
            _ => Email::parse(text)
                .map(|e| e.mask())
                .unwrap_or_else(|_| "***".into()),
        })
    };
    let mut out = serde_json::Map::new();
    if let Some(map) = contacts.as_object() {
        for (name, value) in map {
            if let Some(m) = mask(name, value) {
                out.insert(name.clone(), Value::String(m));
            }
        }
    }
    Value::Object(out)
}

/// Every credential of a tax code, newest first, with its audit history.
pub async fn show(pool: &PgPool, tax_code: &str) -> anyhow::Result<Value> {
    let tax_code =
        TaxCode::parse(tax_code).map_err(|e| anyhow::anyhow!("invalid tax code: {e}"))?;
    let rows = sqlx::query(
        "select id, kind, holder, channel, status, contacts, issued_at, initial_pin_expires_at,
                activated_at, valid_until, failed_attempts, locked_at, ended_at
         from credentials where tax_code = $1 order by issued_at desc",
    )
    .bind(tax_code.as_str())
    .fetch_all(pool)
    .await?;
    let (phone_pin, given, received) = phone_pin_and_delegation(pool, tax_code.as_str()).await?;
    anyhow::ensure!(
        !rows.is_empty() || !given.is_empty() || !received.is_empty(),
        "no credential for {tax_code}"
    );
    let mut credentials = Vec::new();
    for row in rows {
        let time = |name: &str| -> Value {
            row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(name)
                .ok()
                .flatten()
                .map_or(Value::Null, |t| json!(t.to_rfc3339()))
        };
        credentials.push(json!({
            "credential_id": row.try_get::<uuid::Uuid, _>("id")?,
            "status": row.try_get::<String, _>("status")?,
            "kind": row.try_get::<String, _>("kind")?,
            "holder": row.try_get::<String, _>("holder")?,
            "channel": row.try_get::<String, _>("channel")?,
            "contacts": masked(&row.try_get::<Value, _>("contacts")?),
            "issued_at": time("issued_at"),
            "initial_pin_expires_at": time("initial_pin_expires_at"),
            "activated_at": time("activated_at"),
            "valid_until": time("valid_until"),
            "failed_attempts": row.try_get::<i32, _>("failed_attempts")?,
            "locked_at": time("locked_at"),
            "ended_at": time("ended_at"),
        }));
    }
    let history = sqlx::query("select at, actor, action, credential_id, message_id, detail from audit_log where tax_code = $1 order by at, id")
        .bind(tax_code.as_str())
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|row| {
            json!({
                "at": row.try_get::<chrono::DateTime<chrono::Utc>, _>("at").map(|t| t.to_rfc3339()).unwrap_or_default(),
                "actor": row.try_get::<String, _>("actor").unwrap_or_default(),
                "action": row.try_get::<String, _>("action").unwrap_or_default(),
                "credential_id": row.try_get::<Option<uuid::Uuid>, _>("credential_id").ok().flatten(),
                "message_id": row.try_get::<Option<String>, _>("message_id").ok().flatten(),
                "detail": row.try_get::<Value, _>("detail").unwrap_or(Value::Null),
            })
        })
        .collect::<Vec<_>>();
    let mut conn = pool.acquire().await?;
    let sent = notifications::for_tax_code(&mut conn, tax_code.as_str()).await?;
    for credential in &mut credentials {
        let id = credential["credential_id"].as_str().map(str::to_owned);
        let own: Vec<Value> = sent
            .iter()
            .filter(|n| n.credential_id.map(|c| c.to_string()) == id)
            .map(|n| json!(n))
            .collect();
        credential["notifications"] = Value::Array(own);
    }
    let other: Vec<Value> = sent
        .iter()
        .filter(|n| n.credential_id.is_none())
        .map(|n| json!(n))
        .collect();
    Ok(json!({
        "tax_code": tax_code.as_str(),
        "credentials": credentials,
        "notifications_without_credential": other,
        "history": history,
        "phone_pin": phone_pin,
        "delegations_given": given,
        "delegations_received": received,
    }))
}

/// The tax code's phone PIN (its validity and lock, never its hash) and the delegation
/// it gave and received, newest first.
async fn phone_pin_and_delegation(
    pool: &PgPool,
    tax_code: &str,
) -> anyhow::Result<(Value, Vec<Value>, Vec<Value>)> {
    let phone_pin = sqlx::query(
        "select credential_id, validity, authenticated_with, issued_at, valid_until,
                failed_attempts, locked_at, tidied_at,
                case when tidied_at is not null or valid_until <= now() then 'expired'
                     when locked_at is not null then 'locked' else 'live' end as state
         from phone_pin_credentials where tax_code = $1",
    )
    .bind(tax_code)
    .fetch_optional(pool)
    .await?
    .map(|row| -> anyhow::Result<Value> {
        let time = |name: &str| -> anyhow::Result<Option<String>> {
            let t: Option<chrono::DateTime<chrono::Utc>> = row.try_get(name)?;
            Ok(t.map(|t| t.to_rfc3339()))
        };
        Ok(json!({
            "state": row.try_get::<String, _>("state")?,
            "credential_id": row.try_get::<uuid::Uuid, _>("credential_id")?,
            "validity": row.try_get::<String, _>("validity")?,
            "authenticated_with": row.try_get::<String, _>("authenticated_with")?,
            "issued_at": time("issued_at")?,
            "valid_until": time("valid_until")?,
            "failed_attempts": row.try_get::<i32, _>("failed_attempts")?,
            "locked_at": time("locked_at")?,
            "tidied_at": time("tidied_at")?,
        }))
    })
    .transpose()?
    .unwrap_or(Value::Null);
    let rows = sqlx::query(
        "select id, delegator_tax_code, delegate_tax_code, valid_until, ends_at,
                case when status = 'live' and ends_at <= now() then 'expired'
                     else status end as status,
                granted_at, granted_by, ended_at, ended_by
         from delegations where delegator_tax_code = $1 or delegate_tax_code = $1
         order by granted_at desc, id",
    )
    .bind(tax_code)
    .fetch_all(pool)
    .await?;
    let (mut given, mut received) = (Vec::new(), Vec::new());
    for row in rows {
        let time = |name: &str| -> anyhow::Result<Option<String>> {
            let t: Option<chrono::DateTime<chrono::Utc>> = row.try_get(name)?;
            Ok(t.map(|t| t.to_rfc3339()))
        };
        let delegator: String = row.try_get("delegator_tax_code")?;
        let shown = json!({
            "delegation_id": row.try_get::<uuid::Uuid, _>("id")?,
            "delegator_tax_code": delegator,
            "delegate_tax_code": row.try_get::<String, _>("delegate_tax_code")?,
            "valid_until": row.try_get::<Option<chrono::NaiveDate>, _>("valid_until")?,
            "ends_at": time("ends_at")?,
            "status": row.try_get::<String, _>("status")?,
            "granted_at": time("granted_at")?,
            "granted_by": row.try_get::<String, _>("granted_by")?,
            "ended_at": time("ended_at")?,
            "ended_by": row.try_get::<Option<String>, _>("ended_by")?,
        });
        if delegator == tax_code {
            given.push(shown);
        } else {
            received.push(shown);
        }
    }
    Ok((phone_pin, given, received))
}
