//! `pinflow keys`: the outbox keys. `list` shows each key's id and what is still sealed
//! under it (outbox rows, dead letters); `rotate` adds a new key to the key file (new
//! seals use it once the processes restart); `retire` re-seals everything an old key
//! sealed under the newest key, checks that nothing is left, and removes the old key
//! from the file. Never prints a key.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use lapin::options::BasicAckOptions;
use sqlx::{PgPool, Row as _};

use crate::broker::dead_letter::publish_sealed;
use crate::broker::{self, Names};
use crate::config::{Connections, Secrets, append_key, parse_keys};
use crate::manifest::Description;
use crate::ops::dlq::{dead_letter_queues, read_all};
use crate::seal::{KeyRing, OutboxKey};
use crate::sealing::{self, Place};
use crate::store::outbox;

/// What is sealed under each key id: (outbox rows, dead letters).
pub async fn usage(
    connections: &Connections,
    workers: &[Description],
) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
    let mut usage: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let pool = crate::store::connect(&connections.database_url, 1).await?;
    let rows = sqlx::query(
        "select key_id, count(*) as n from outbox where key_id is not null group by key_id",
    )
    .fetch_all(&pool)
    .await?;
    for row in rows {
        usage.entry(row.try_get("key_id")?).or_default().0 += row.try_get::<i64, _>("n")?;
    }
    pool.close().await;
    let names = Names::new(&connections.namespace);
    let connection =
        broker::connect_named(&connections.amqp_url, &names.connection_name("operator")).await?;
    let channel = connection.create_channel().await?;
    let letters = read_all(&channel, &names, &dead_letter_queues(&names, workers)).await?;
    for letter in &letters {
        for id in sealing::sealed_key_ids(&letter.message.delivery.data) {
            usage.entry(id).or_default().1 += 1;
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(usage)
}

/// Adds a new key at the end of the key file; returns its id.
pub fn rotate(secrets: &Secrets) -> anyhow::Result<String> {
    if secrets.outbox_key.is_some() {
        bail!(
            "the keys come from PINFLOW_OUTBOX_KEY: add the new key there (comma-separated, newest last), from `pinflow keygen`"
        );
    }
    let key = OutboxKey::generate();
    append_key(&secrets.key_file(), &key)?;
    Ok(key.key_id())
}

/// Re-seals every outbox row sealed under `old` with the newest key.
async fn reseal_outbox(pool: &PgPool, keys: &KeyRing, old: &OutboxKey) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query("select id, message_id, routing_key, secret_field, sealed_secret from outbox where key_id = $1 for update")
        .bind(old.key_id())
        .fetch_all(&mut *tx)
        .await?;
    let current = keys.current();
    for row in &rows {
        let (id, message_id, routing_key, field): (i64, String, String, String) = (
            row.try_get("id")?,
            row.try_get("message_id")?,
            row.try_get("routing_key")?,
            row.try_get("secret_field")?,
        );
        let sealed: Vec<u8> = row.try_get("sealed_secret")?;
        let aad = outbox::aad(&message_id, &field, &routing_key);
        let clear = old
            .open(&sealed, &aad)
            .or_else(|_| old.open(&sealed, message_id.as_bytes()))
            .map_err(|_| {
                anyhow::anyhow!("outbox row {id} does not open with key {}", old.key_id())
            })?;
        sqlx::query("update outbox set sealed_secret = $2, key_id = $3 where id = $1")
            .bind(id)
            .bind(current.seal(&clear, &aad))
            .bind(current.key_id())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// Re-seals every dead letter that holds a seal of `old`, in its own queue.
async fn reseal_dead_letters(
    connections: &Connections,
    keys: &KeyRing,
    old_id: &str,
    workers: &[Description],
) -> anyhow::Result<u64> {
    let names = Names::new(&connections.namespace);
    let connection =
        broker::connect_named(&connections.amqp_url, &names.connection_name("operator")).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let letters = read_all(&channel, &names, &dead_letter_queues(&names, workers)).await?;
    let mut moved = 0;
    for letter in &letters {
        let delivery = &letter.message.delivery;
        if !sealing::sealed_key_ids(&delivery.data)
            .iter()
            .any(|id| id == old_id)
        {
            continue;
        }
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let place = Place {
            message_id: &message_id,
            queue: &letter.dlq,
        };
        let clear = sealing::unseal_body(&delivery.data, keys, &place)
            .with_context(|| format!("dead letter {} does not open", letter.id))?;
        let properties = delivery.properties.clone();
        let limit = std::time::Duration::from_secs(10);
        publish_sealed(&channel, keys, &letter.dlq, &clear, properties, limit).await?;
        channel
            .basic_ack(letter.tag, BasicAckOptions::default())
            .await?;
        moved += 1;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(moved)
}

/// Re-seals what `old_id` sealed under the newest key, checks nothing is left, then
/// removes it from the key file. Returns (outbox rows, dead letters) re-sealed.
pub async fn retire(
    connections: &Connections,
    secrets: &Secrets,
    old_id: &str,
    workers: &[Description],
) -> anyhow::Result<(u64, u64)> {
    if secrets.outbox_key.is_some() {
        bail!(
            "the keys come from PINFLOW_OUTBOX_KEY: retire there, after `pinflow keys list` shows nothing left under it"
        );
    }
    let keys = secrets.key_ring()?;
    let old = keys
        .find(old_id)
        .with_context(|| format!("no key {old_id} in {}", secrets.key_file().display()))?;
    if keys.current().key_id() == old_id {
        bail!("{old_id} is the newest key: rotate first");
    }
    let pool = crate::store::connect(&connections.database_url, 1).await?;
    let rows = reseal_outbox(&pool, &keys, old).await?;
    pool.close().await;
    let letters = reseal_dead_letters(connections, &keys, old_id, workers).await?;
    let left = usage(connections, workers).await?;
    if let Some((r, d)) = left.get(old_id).filter(|(r, d)| *r + *d > 0) {
        bail!(
            "{r} outbox rows and {d} dead letters are still sealed under {old_id}; nothing was removed"
        );
    }
    let path = secrets.key_file();
    let text = std::fs::read_to_string(&path)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| OutboxKey::from_base64(line.trim()).map_or(true, |k| k.key_id() != old_id))
        .collect();
    parse_keys(&kept.join("\n"))?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(file, "{}", kept.join("\n"))?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok((rows, letters))
}
