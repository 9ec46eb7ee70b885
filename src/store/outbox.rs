//! The outbox: messages written in the handler's transaction and published by the
//! relay after the commit. A secret is sealed with the outbox key (the message id is
//! the associated data, so a sealed value cannot be moved to another row) and leaves
//! the database with the row once the relay has its confirm.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::{audit, notifications};
use crate::contract::trace::TraceContext;
use crate::contract::{Destination, Outgoing};
use crate::seal::KeyRing;

/// A row waiting to be published.
pub struct Pending {
    /// Row id; publication follows it.
    pub id: i64,
    /// Which exchange.
    pub destination: Destination,
    /// Routing key on it.
    pub routing_key: String,
    /// The CloudEvent id, also the AMQP message id.
    pub message_id: String,
    /// The CloudEvent type.
    pub message_type: String,
    /// For replies.
    pub correlation_id: Option<String>,
    /// Trace context to continue.
    pub traceparent: Option<String>,
    /// The caller's `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
    /// The CloudEvent without its secret (the relay takes it when it publishes).
    pub body: Value,
    /// Where the secret goes, and its sealed value and key id.
    pub sealed: Option<Sealed>,
    /// Publications tried so far.
    pub attempts: i32,
    /// The id of the message whose handling wrote this row, if a message did.
    pub caused_by: Option<String>,
    /// For a reply: the tax code and credential its request's last audit entry named.
    pub request_tax_code: Option<String>,
    /// See `request_tax_code`.
    pub request_credential_id: Option<Uuid>,
}

/// A secret as stored.
pub struct Sealed {
    /// The `data` member it belongs in.
    pub field: String,
    /// Nonce and ciphertext.
    pub ciphertext: Vec<u8>,
    /// Which key sealed it.
    pub key_id: String,
}

/// The messages one handled message (or one batch of a timed job) causes, and the
/// trace context they carry (the context of the span that caused them).
pub struct Caused<'a> {
    /// What to publish, in order.
    pub messages: &'a [Outgoing],
    /// Their trace context.
    pub trace: &'a TraceContext,
    /// The id of the message whose handling wrote them, if a message did.
    pub caused_by: Option<&'a str>,
}

/// Writes a message's outgoing messages, in their order, each carrying `trace`.
/// Notifications go into the ledger in the same transaction.
pub async fn insert_all(
    conn: &mut PgConnection,
    messages: &[Outgoing],
    trace: &TraceContext,
    keys: &KeyRing,
    caused_by: Option<&str>,
) -> Result<(), sqlx::Error> {
    let caused = Caused {
        messages,
        trace,
        caused_by,
    };
    insert_caused(conn, &[caused], keys).await
}

/// Writes what several messages caused in one statement, in their order, with the
/// notifications among them into the ledger.
pub async fn insert_caused(
    conn: &mut PgConnection,
    groups: &[Caused<'_>],
    keys: &KeyRing,
) -> Result<(), sqlx::Error> {
    insert_held(conn, &[], groups, keys, None).await.map(drop)
}

/// Rows a process publishes itself as soon as it commits (see `runtime::at_commit`),
/// held from the relay while that process lives, and at most until a deadline.
pub struct Hold {
    /// The key of the advisory lock (`HOLDERS`, key) the process holds while it lives.
    pub by: i32,
    /// When the relay takes the rows even so.
    pub until: DateTime<Utc>,
}

/// The first key of the advisory locks held by processes that publish at commit.
pub const HOLDERS: i32 = 0x7066_6877;

/// Writes what several messages caused, as `insert_caused` does, and what they
/// audited, in one statement, the rows held from the relay by `hold` when given. A
/// reply's row carries the tax code and credential of its request's last entry in
/// `audited`, for when its caller's queue is gone (see `Pending::request_tax_code`).
/// Returns the rows' ids in the messages' order.
pub async fn insert_held(
    conn: &mut PgConnection,
    audited: &[audit::Record],
    groups: &[Caused<'_>],
    keys: &KeyRing,
    hold: Option<&Hold>,
) -> Result<Vec<i64>, sqlx::Error> {
    let key = keys.current();
    let count: usize = groups.iter().map(|g| g.messages.len()).sum();
    if count == 0 && audited.is_empty() {
        return Ok(Vec::new());
    }
    let mut destination = Vec::with_capacity(count);
    let mut routing_key = Vec::with_capacity(count);
    let mut message_id = Vec::with_capacity(count);
    let mut message_type = Vec::with_capacity(count);
    let mut correlation_id = Vec::with_capacity(count);
    let mut traceparent = Vec::with_capacity(count);
    let mut tracestate = Vec::with_capacity(count);
    let mut body = Vec::with_capacity(count);
    let mut secret_field = Vec::with_capacity(count);
    let mut sealed_secret = Vec::with_capacity(count);
    let mut key_id = Vec::with_capacity(count);
    let mut caused_by = Vec::with_capacity(count);
    let mut request_tax_code = Vec::with_capacity(count);
    let mut request_credential_id = Vec::with_capacity(count);
    for group in groups {
        let parent = group.trace.parent.to_string();
        for message in group.messages {
            let request = match message.destination {
                Destination::Reply => last_entry(audited, group.caused_by),
                _ => None,
            };
            request_tax_code.push(request.and_then(|r| r.tax_code.as_deref()));
            request_credential_id.push(request.and_then(|r| r.credential_id));
            destination.push(message.destination.as_str());
            routing_key.push(message.routing_key.as_str());
            message_id.push(message.message_id.as_str());
            message_type.push(message.message_type());
            correlation_id.push(message.correlation_id.as_deref());
            traceparent.push(parent.clone());
            tracestate.push(group.trace.state.as_deref());
            body.push(&message.body);
            let sealed = message.secret.as_ref().map(|secret| {
                (
                    secret.field,
                    key.seal(
                        secret.value.as_bytes(),
                        &aad(&message.message_id, secret.field, &message.routing_key),
                    ),
                )
            });
            secret_field.push(sealed.as_ref().map(|(field, _)| *field));
            key_id.push(sealed.as_ref().map(|_| key.key_id()));
            sealed_secret.push(sealed.map(|(_, bytes)| bytes));
            caused_by.push(group.caused_by);
        }
    }
    let query = sqlx::query(INSERT.as_str())
        .bind(destination)
        .bind(routing_key)
        .bind(message_id)
        .bind(message_type)
        .bind(correlation_id)
        .bind(traceparent)
        .bind(tracestate)
        .bind(body)
        .bind(secret_field)
        .bind(sealed_secret)
        .bind(key_id)
        .bind(caused_by)
        .bind(hold.map(|h| h.until))
        .bind(hold.map(|h| i64::from(h.by)))
        .bind(request_tax_code)
        .bind(request_credential_id);
    let query = audit::Columns::of(audited).bind(query);
    let query = notifications::Columns::of(groups.iter().flat_map(|g| g.messages)).bind(query);
    let rows = query.fetch_all(&mut *conn).await?;
    let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    // Ids are drawn in the order the rows go in, so sorting them gives the messages'
    // order back.
    ids.sort_unstable();
    Ok(ids)
}

/// The outbox rows (parameters 1 to 16), their audit entries (from 17) and the
/// notifications among them (from 24), in one statement. PostgreSQL runs each insert
/// of a `with` exactly once, whether or not the statement reads its rows.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "with audited as ({}), ledger as ({})
         insert into outbox (destination, routing_key, message_id, message_type,
             correlation_id, traceparent, tracestate, body, secret_field, sealed_secret,
             key_id, caused_by, next_attempt_at, held_by, request_tax_code,
             request_credential_id)
         select d, r, i, t, c, p, ts, b, f, s, k, y, coalesce($13, now()), $14, q, u
         from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::text[], $8::jsonb[], $9::text[], $10::bytea[], $11::text[],
             $12::text[], $15::text[], $16::uuid[])
         with ordinality as m(d, r, i, t, c, p, ts, b, f, s, k, y, q, u, n)
         order by n
         returning id",
        audit::insert(17),
        notifications::insert(24),
    )
});

/// The last of `audited` that `message_id` caused.
fn last_entry<'a>(
    audited: &'a [audit::Record],
    message_id: Option<&str>,
) -> Option<&'a audit::Record> {
    let message_id = message_id?;
    audited
        .iter()
        .rev()
        .find(|r| r.message_id.as_deref() == Some(message_id))
}

/// What a sealed outbox secret is bound to: its message, its field and where it goes,
/// so a ciphertext moved to another row does not open.
pub fn aad(message_id: &str, field: &str, routing_key: &str) -> Vec<u8> {
    format!("outbox\u{1f}{message_id}\u{1f}{field}\u{1f}{routing_key}").into_bytes()
}

/// The oldest due rows, locked for this transaction: those whose time has come, and
/// those held by a process that no longer holds its lock (it stopped or lost the
/// database before settling them).
pub async fn due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query(
        "select id, destination, routing_key, message_id, message_type, correlation_id,
                traceparent, tracestate, body, secret_field, sealed_secret, key_id, attempts,
                caused_by, request_tax_code, request_credential_id
         from outbox
         where next_attempt_at <= $1
            or (held_by is not null and held_by not in (
                select objid::bigint from pg_locks
                where locktype = 'advisory' and granted and objsubid = 2
                  and classid::bigint = $3
                  and database = (select oid from pg_database where datname = current_database())))
         order by id limit $2 for update skip locked",
    )
    .bind(now)
    .bind(i64::from(limit))
    .bind(i64::from(HOLDERS))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let destination: String = row.try_get("destination")?;
            let field: Option<String> = row.try_get("secret_field")?;
            let ciphertext: Option<Vec<u8>> = row.try_get("sealed_secret")?;
            let key_id: Option<String> = row.try_get("key_id")?;
            Ok(Pending {
                id: row.try_get("id")?,
                destination: Destination::parse(&destination).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown destination {destination}").into())
                })?,
                routing_key: row.try_get("routing_key")?,
                message_id: row.try_get("message_id")?,
                message_type: row.try_get("message_type")?,
                correlation_id: row.try_get("correlation_id")?,
                traceparent: row.try_get("traceparent")?,
                tracestate: row.try_get("tracestate")?,
                body: row.try_get("body")?,
                sealed: match (field, ciphertext) {
                    (Some(field), Some(ciphertext)) => Some(Sealed {
                        field,
                        ciphertext,
                        key_id: key_id.unwrap_or_default(),
                    }),
                    _ => None,
                },
                attempts: row.try_get("attempts")?,
                caused_by: row.try_get("caused_by")?,
                request_tax_code: row.try_get("request_tax_code")?,
                request_credential_id: row.try_get("request_credential_id")?,
            })
        })
        .collect()
}

/// Removes rows whose publication the broker confirmed, and with them any secret.
pub async fn delete(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("delete from outbox where id = any($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Settles rows their own process published (see `insert_held`), in one statement:
/// deletes those the broker confirmed (`sent`, with `sent_ids` their message ids, whose
/// notifications the ledger marks sent at `at`) and hands the others (`released`) to
/// the relay at once.
pub async fn settle(
    conn: &mut PgConnection,
    sent: &[i64],
    sent_ids: &[String],
    released: &[i64],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "with gone as (delete from outbox where id = any($1)),
              back as (update outbox set next_attempt_at = now(), held_by = null
                       where id = any($3))
         update notifications set state = 'sent', sent_at = $4, state_at = $4
         where notification_id = any($2) and state = 'pending'",
    )
    .bind(sent)
    .bind(sent_ids)
    .bind(released)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts a row back for a later round after a failed publication.
pub async fn defer(
    conn: &mut PgConnection,
    id: i64,
    until: DateTime<Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox set attempts = attempts + 1, next_attempt_at = $2, last_error = $3,
             held_by = null
         where id = $1",
    )
    .bind(id)
    .bind(until)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows not yet published (for shutdown reports and tests).
pub async fn pending_count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(conn)
        .await
}
