//! The notification ledger: every notification pinflow sends, kept after the outbox
//! row is gone, so delivery receipts and operators can find it by its
//! `notification_id`. It holds which secret a notification carried, never the secret.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Query;
use crate::contract::Outgoing;

/// The statement that records the notifications bound as `Columns` from parameter
/// `$first` on, state `pending` (see `outbox::insert_held`, which writes them with the
/// outbox rows that carry them).
pub(super) fn insert(first: usize) -> String {
    let [i, t, c, x, k, s, a] = std::array::from_fn(|n| first + n);
    format!(
        "insert into notifications (notification_id, template, channel, tax_code,
             credential_id, carries, created_at, state_at)
         select i, t, c, x, k, s, a, a
         from unnest(${i}::text[], ${t}::text[], ${c}::text[], ${x}::text[], ${k}::uuid[],
             ${s}::text[], ${a}::timestamptz[]) as m(i, t, c, x, k, s, a)
         on conflict (notification_id) do nothing"
    )
}

/// The notifications among some outgoing messages as the parameters of `insert`, one
/// array per column; each is created at its own `time`.
pub(super) struct Columns<'a> {
    ids: Vec<&'a str>,
    templates: Vec<&'a str>,
    channels: Vec<&'a str>,
    tax_codes: Vec<&'a str>,
    credentials: Vec<Option<Uuid>>,
    carries: Vec<Option<&'a str>>,
    created_at: Vec<DateTime<Utc>>,
}

impl<'a> Columns<'a> {
    pub(super) fn of(messages: impl IntoIterator<Item = &'a Outgoing>) -> Columns<'a> {
        let entries: Vec<_> = messages
            .into_iter()
            .filter_map(|m| m.ledger.as_ref().map(|entry| (m, entry)))
            .collect();
        Columns {
            ids: entries.iter().map(|(m, _)| m.message_id.as_str()).collect(),
            templates: entries.iter().map(|(_, e)| e.template).collect(),
            channels: entries.iter().map(|(_, e)| e.channel.as_str()).collect(),
            tax_codes: entries.iter().map(|(_, e)| e.tax_code.as_str()).collect(),
            credentials: entries.iter().map(|(_, e)| e.credential_id).collect(),
            carries: entries
                .iter()
                .map(|(_, e)| e.carries.map(|c| c.as_str()))
                .collect(),
            created_at: entries
                .iter()
                .map(|(m, _)| {
                    m.body["time"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
                })
                .collect(),
        }
    }

    /// Binds the columns as `insert`'s next seven parameters.
    pub(super) fn bind<'q>(self, query: Query<'q>) -> Query<'q>
    where
        'a: 'q,
    {
        query
            .bind(self.ids)
            .bind(self.templates)
            .bind(self.channels)
            .bind(self.tax_codes)
            .bind(self.credentials)
            .bind(self.carries)
            .bind(self.created_at)
    }
}

/// Marks notifications sent once the broker confirmed them (other message ids are
/// ignored).
pub async fn mark_sent(
    conn: &mut PgConnection,
    message_ids: &[String],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if message_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "update notifications set state = 'sent', sent_at = $2, state_at = $2
         where notification_id = any($1) and state = 'pending'",
    )
    .bind(message_ids)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A notification as the ledger keeps it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Notification {
    /// The id gateways and receipts use.
    pub notification_id: String,
    /// The template.
    pub template: String,
    /// The gateway's channel.
    pub channel: String,
    /// Whose.
    pub tax_code: String,
    /// Which credential.
    pub credential_id: Option<Uuid>,
    /// Which secret it carried (`first_half`, `second_half`, `whole_pin`, `token`).
    pub carries: Option<String>,
    /// `pending`, `sent`, `delivered`, `failed` or `returned`.
    pub state: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When the broker confirmed it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When its state last changed.
    pub state_at: DateTime<Utc>,
}

const COLUMNS: &str = "notification_id, template, channel, tax_code, credential_id, carries,
     state, created_at, sent_at, state_at";

/// One notification by id.
pub async fn find(
    conn: &mut PgConnection,
    notification_id: &str,
) -> Result<Option<Notification>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from notifications where notification_id = $1"
    ))
    .bind(notification_id)
    .fetch_optional(conn)
    .await
}

/// Every notification of a tax code, oldest first.
pub async fn for_tax_code(
    conn: &mut PgConnection,
    tax_code: &str,
) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from notifications where tax_code = $1
         order by created_at, notification_id"
    ))
    .bind(tax_code)
    .fetch_all(conn)
    .await
}

// Delivery receipts move a notification's state on. The order of states is pending <
// sent < a gateway's word (delivered, failed, returned). Between two words of a
// gateway, the later observation is the real state (a receipt's CloudEvent `time`, or
// its arrival when it has none), so a receipt that arrives late does not undo a newer
// one; at the same instant a failure outranks a delivery (returned > failed >
// delivered), and the same word twice changes nothing.

/// A notification a receipt named, and whether the receipt became its state.
#[derive(Debug, sqlx::FromRow)]
pub struct Received {
    /// The notification as it was before the receipt.
    #[sqlx(flatten)]
    pub notification: Notification,
    /// Whether the receipt's word is now its state.
    pub applied: bool,
}

/// Sets a gateway's word (`delivered`, `failed` or `returned`), observed at
/// `observed_at`, as the notification's state if it is the latest real one (see
/// above), in one statement; `None` when the ledger has no such notification. An
/// applied receipt holds the row until its transaction ends, so receipts for one
/// notification that change it take turns.
pub async fn receive(
    conn: &mut PgConnection,
    notification_id: &str,
    state: &str,
    observed_at: DateTime<Utc>,
    detail: Option<&str>,
) -> Result<Option<Received>, sqlx::Error> {
    let word = Word {
        notification_id: notification_id.to_owned(),
        state,
        observed_at,
        detail,
    };
    let mut found = receive_all(conn, std::slice::from_ref(&word)).await?;
    Ok(found.remove(notification_id))
}

/// A gateway's word on one notification, as `receive_all` takes it.
pub struct Word<'a> {
    /// The notification it names.
    pub notification_id: String,
    /// `delivered`, `failed` or `returned`.
    pub state: &'a str,
    /// When the gateway saw it.
    pub observed_at: DateTime<Utc>,
    /// The gateway's own words.
    pub detail: Option<&'a str>,
}

/// `receive` for several notifications in one statement, each named once, taken in
/// the order of their ids (so two batches that wait on each other's rows wait in the
/// same order): what each receipt found, by notification id; an id the ledger does
/// not have is missing.
pub async fn receive_all(
    conn: &mut PgConnection,
    words: &[Word<'_>],
) -> Result<HashMap<String, Received>, sqlx::Error> {
    let mut words: Vec<&Word<'_>> = words.iter().collect();
    words.sort_by(|a, b| a.notification_id.cmp(&b.notification_id));
    let ids: Vec<&str> = words.iter().map(|w| w.notification_id.as_str()).collect();
    let states: Vec<&str> = words.iter().map(|w| w.state).collect();
    let observed: Vec<DateTime<Utc>> = words.iter().map(|w| w.observed_at).collect();
    let details: Vec<Option<&str>> = words.iter().map(|w| w.detail).collect();
    let rank = |x: &str| {
        format!(
            "case {x} when 'delivered' then 1 when 'failed' then 2 when 'returned' then 3 else 0 end"
        )
    };
    // The update judges the latest rows (it waits for a receipt that holds one). The
    // outer select reads the statement's snapshot, the rows as they were before: a
    // receipt reads only what never changes on them (whose, template, channel,
    // secret).
    let found: Vec<Received> = sqlx::query_as(&format!(
        "with word as (
             select * from unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[])
                 with ordinality as w(id, state, at, detail, n)
         ), applied as (
             update notifications n set state = w.state, state_at = w.at, detail = w.detail
             from word w
             where n.notification_id = w.id
               and (n.state in ('pending', 'sent')
                    or n.state_at < w.at
                    or (n.state_at = w.at and {} < {}))
             returning n.notification_id
         )
         select {COLUMNS}, exists (select 1 from applied a
                                   where a.notification_id = notifications.notification_id)
                           as applied
         from notifications where notification_id = any($1)",
        rank("n.state"),
        rank("w.state")
    ))
    .bind(ids)
    .bind(states)
    .bind(observed)
    .bind(details)
    .fetch_all(conn)
    .await?;
    Ok(found
        .into_iter()
        .map(|r| (r.notification.notification_id.clone(), r))
        .collect())
}
