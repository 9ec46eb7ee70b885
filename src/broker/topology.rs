//! Declares (and, for tests, deletes) the exchanges and queues of one namespace.
//! Declaring is idempotent, so every (re)connection declares again.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::names::{NOTIFY_CHANNELS, Names};
use crate::config::Runtime;
use crate::manifest::{Description, Source};

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn millis(duration: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

const DURABLE_EXCHANGE: ExchangeDeclareOptions = ExchangeDeclareOptions {
    passive: false,
    durable: true,
    auto_delete: false,
    internal: false,
    nowait: false,
};

const DURABLE_QUEUE: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: true,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};

async fn queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), lapin::Error> {
    channel
        .queue_declare(name.into(), DURABLE_QUEUE, args)
        .await?;
    Ok(())
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

async fn unbind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    channel
        .queue_unbind(
            queue.into(),
            exchange.into(),
            key.into(),
            FieldTable::default(),
        )
        .await
}

/// The exchanges, the unrouted-command queue, the intake and the notification queues.
pub async fn declare_shared(channel: &Channel, names: &Names) -> Result<(), lapin::Error> {
    let exchange = |name: String, kind: ExchangeKind, args: FieldTable| async move {
        channel
            .exchange_declare(name.into(), kind, DURABLE_EXCHANGE, args)
            .await
    };
    exchange(
        names.unrouted(),
        ExchangeKind::Fanout,
        FieldTable::default(),
    )
    .await?;
    let alternate = table(&[("alternate-exchange", text(&names.unrouted()))]);
    exchange(names.commands(), ExchangeKind::Topic, alternate).await?;
    exchange(names.events(), ExchangeKind::Topic, FieldTable::default()).await?;
    exchange(
        names.notifications(),
        ExchangeKind::Topic,
        FieldTable::default(),
    )
    .await?;
    exchange(names.dlx(), ExchangeKind::Direct, FieldTable::default()).await?;

    queue(channel, &names.unrouted_dlq(), FieldTable::default()).await?;
    queue(channel, &names.intake(), FieldTable::default()).await?;
    bind(channel, &names.intake(), &names.unrouted(), "").await?;
    // Installations from before the intake bound the dead-letter queue directly.
    unbind(channel, &names.unrouted_dlq(), &names.unrouted(), "").await?;
    for notify in NOTIFY_CHANNELS {
        let name = names.notify_queue(notify);
        queue(channel, &name, FieldTable::default()).await?;
        bind(
            channel,
            &name,
            &names.notifications(),
            &format!("notify.{notify}"),
        )
        .await?;
    }
    Ok(())
}

/// The shared part and every described worker's queues: what `run` declares before
/// anything is published, so an event published before its subscriber first starts is
/// already routed to the subscriber's queue.
pub async fn declare_all(
    channel: &Channel,
    names: &Names,
    runtime: &Runtime,
    workers: &[Description],
) -> Result<(), lapin::Error> {
    declare_shared(channel, names).await?;
    for worker in workers {
        declare_worker(channel, names, runtime, worker).await?;
    }
    Ok(())
}

/// A worker's quorum work queue (with the broker's own dead-lettering and delivery
/// limit as the last guard), its bindings on `pinflow.commands` and
/// `pinflow.events`, its dead-letter queue and its delay queues. A worker made only of
/// timed jobs has no queue.
pub async fn declare_worker(
    channel: &Channel,
    names: &Names,
    runtime: &Runtime,
    worker: &Description,
) -> Result<(), lapin::Error> {
    if !worker.has_queue() {
        return Ok(());
    }
    let work = names.work_queue(worker.name);
    let dlq = Names::dlq(&work);
    queue(channel, &dlq, FieldTable::default()).await?;
    // What the broker dead-letters goes through the intake to be sealed; pinflow
    // publishes its own (sealed) dead letters straight to the `.dlq`.
    bind(channel, &names.intake(), &names.dlx(), &work).await?;
    unbind(channel, &dlq, &names.dlx(), &work).await?;

    let args = table(&[
        ("x-queue-type", text("quorum")),
        ("x-dead-letter-exchange", text(&names.dlx())),
        ("x-dead-letter-routing-key", text(&work)),
        (
            "x-delivery-limit",
            AMQPValue::LongLongInt(runtime.delivery_limit.into()),
        ),
    ]);
    queue(channel, &work, args).await?;
    for binding in worker.bindings {
        let exchange = match binding.source {
            Source::Commands => names.commands(),
            Source::Events => names.events(),
        };
        bind(channel, &work, &exchange, binding.message_type).await?;
    }
    for ttl in retry_ttls(runtime) {
        let args = table(&[
            ("x-message-ttl", millis(ttl)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&work)),
        ]);
        queue(channel, &Names::retry_queue(&work, ttl), args).await?;
    }
    Ok(())
}

fn backoff(runtime: &Runtime) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(runtime.retry_min_delay)
        .with_max_delay(runtime.retry_max_delay)
        .with_factor(2.0)
        .with_max_times(runtime.retry_max_attempts as usize)
}

/// The delay before retry number `retry` (1 = the first retry), with jitter, and the
/// TTL of the delay queue that holds it (twice the delay without jitter, the upper
/// bound of backon's jitter).
pub fn retry_delay(runtime: &Runtime, retry: u32) -> (Duration, Duration) {
    let index = retry.saturating_sub(1) as usize;
    let nominal = backoff(runtime)
        .build()
        .nth(index)
        .unwrap_or(runtime.retry_max_delay);
    let jittered = backoff(runtime)
        .with_jitter()
        .build()
        .nth(index)
        .unwrap_or(nominal);
    (jittered, nominal * 2)
}

/// The TTLs of every delay queue the retry settings need.
pub fn retry_ttls(runtime: &Runtime) -> Vec<Duration> {
    let mut ttls: Vec<Duration> = (1..runtime.retry_max_attempts)
        .map(|retry| retry_delay(runtime, retry).1)
        .collect();
    ttls.dedup();
    ttls
}

/// Deletes everything `declare_shared` and `declare_worker` made for a namespace
/// (used by tests to clean up after themselves).
pub async fn delete(
    channel: &Channel,
    names: &Names,
    runtime: &Runtime,
    workers: &[Description],
) -> Result<(), lapin::Error> {
    let mut queues = vec![names.unrouted_dlq(), names.intake()];
    queues.extend(NOTIFY_CHANNELS.iter().map(|c| names.notify_queue(c)));
    for worker in workers.iter().filter(|w| w.has_queue()) {
        let work = names.work_queue(worker.name);
        queues.push(Names::dlq(&work));
        queues.extend(
            retry_ttls(runtime)
                .into_iter()
                .map(|t| Names::retry_queue(&work, t)),
        );
        queues.push(work);
    }
    for name in queues {
        channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await?;
    }
    for name in [
        names.commands(),
        names.unrouted(),
        names.events(),
        names.notifications(),
        names.dlx(),
    ] {
        channel
            .exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> Runtime {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            runtime: Runtime,
        }
        Cli::parse_from(["test"]).runtime
    }

    #[test]
    fn retry_delays_double_and_stay_within_their_queue_ttl() {
        let runtime = runtime();
        for retry in 1..runtime.retry_max_attempts {
            let (delay, ttl) = retry_delay(&runtime, retry);
            let nominal = runtime.retry_min_delay * 2u32.pow(retry - 1);
            let nominal = nominal.min(runtime.retry_max_delay);
            assert!(
                delay >= nominal && delay < ttl,
                "retry {retry}: {delay:?} {ttl:?}"
            );
            assert_eq!(ttl, nominal * 2);
        }
    }

    #[test]
    fn there_is_a_delay_queue_for_every_retry() {
        let runtime = runtime();
        let ttls = retry_ttls(&runtime);
        assert_eq!(ttls.len(), runtime.retry_max_attempts as usize - 1);
        assert!(ttls.windows(2).all(|w| w[0] < w[1]));
    }
}
