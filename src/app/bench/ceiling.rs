//! The broker's side of the benchmark: publishing with a window of confirms, and the
//! broker alone running a command's message pattern (consume, publish what it causes
//! with confirms, acknowledge), batched like the consumer loop: at full speed (its
//! ceiling) and at a set rate (its latency).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

use super::machine::{CpuSplit, Snapshot};
use super::report::Latency;
use crate::broker;
use crate::broker::names::NOTIFY_CHANNELS;
use crate::broker::publish::{self, Outbound, set_str};
use crate::config::Runtime;
use crate::contract::CONTENT_TYPE;

/// Commands to publish, each with its message id.
pub(super) type Bodies = [(String, Vec<u8>)];

pub(super) fn properties(id: &str, message_type: &str, reply_to: Option<&str>) -> BasicProperties {
    traced(id, message_type, reply_to, None)
}

/// The properties of a command, with its own `traceparent` when given.
pub(super) fn traced(
    id: &str,
    message_type: &str,
    reply_to: Option<&str>,
    traceparent: Option<&str>,
) -> BasicProperties {
    let mut properties = BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_message_id(ShortString::from(id))
        .with_type(ShortString::from(message_type))
        .with_correlation_id(ShortString::from(id))
        .with_delivery_mode(2);
    if let Some(traceparent) = traceparent {
        let mut headers = FieldTable::default();
        set_str(&mut headers, "traceparent", traceparent);
        properties = properties.with_headers(headers);
    }
    match reply_to {
        Some(queue) => properties.with_reply_to(ShortString::from(queue)),
        None => properties,
    }
}

/// Publishes bodies with confirms, keeping `window` confirms outstanding, at most
/// `rate` a second when given. Returns when each was published.
pub(super) async fn publish_all(
    channel: &Channel,
    exchange: &str,
    key: &str,
    bodies: &Bodies,
    (message_type, reply_to): (&str, Option<&str>),
    limit: Duration,
    rate: Option<f64>,
) -> anyhow::Result<Vec<Instant>> {
    let window = 256;
    let mut pending = std::collections::VecDeque::new();
    let mut published = Vec::with_capacity(bodies.len());
    let start = Instant::now();
    for (i, (id, body)) in bodies.iter().enumerate() {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let props = properties(id, message_type, reply_to);
        published.push(Instant::now());
        pending.push_back(publish::start(channel, exchange, key, body, props, true).await?);
        if pending.len() >= window
            && let Some(confirm) = pending.pop_front()
        {
            publish::confirmed(confirm, limit).await?;
        }
    }
    for confirm in pending {
        publish::confirmed(confirm, limit).await?;
    }
    Ok(published)
}

pub(super) async fn declare(channel: &Channel, queue: &str, quorum: bool) -> anyhow::Result<u32> {
    let mut args = FieldTable::default();
    if quorum {
        set_str(&mut args, "x-queue-type", "quorum");
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    Ok(channel
        .queue_declare(queue.into(), options, args)
        .await?
        .message_count())
}

/// Where the broker alone sends a command's outputs: where pinflow's run sends them,
/// to the benchmark's gateway. A notification goes to a quorum queue of its channel's
/// (as to `notify.*`), an event through a topic exchange to one classic queue (the
/// gateway's subscriber), a reply by the default exchange to a classic queue (the
/// caller's reply queue). A quorum queue keeps a replicated log and costs the broker
/// more than a classic one, so the pattern keeps each output's kind of destination.
pub(super) struct Sinks {
    /// Per cause, in the description's order: the exchange and routing key.
    routes: Vec<(String, String)>,
    /// The queues, each once, and whether each is a quorum queue.
    queues: Vec<(String, bool)>,
    /// When the command announces something: the topic exchange events go through
    /// and the queue bound to it.
    events: Option<(String, String)>,
}

/// The name of the ceiling's sink (or exchange) `name` in namespace `tag`.
fn sink(tag: &str, name: &str) -> String {
    format!("{tag}.ceiling.{name}")
}

/// Where the broker alone takes a burst in beside the pattern (see `pattern_latency`):
/// a quorum queue, as a worker's is, that nothing consumes.
pub(super) fn burst_queue(tag: &str) -> String {
    sink(tag, "burst")
}

impl Sinks {
    /// The sinks in namespace `tag` for a command that causes `causes`.
    pub(super) fn of(tag: &str, causes: &[&str]) -> Sinks {
        let (mut routes, mut queues, mut events) = (Vec::new(), Vec::new(), None);
        for cause in causes {
            let (route, queue) = if cause.starts_with("notify.") {
                let queue = sink(tag, cause);
                ((String::new(), queue.clone()), (queue, true))
            } else if *cause == "reply" {
                let queue = sink(tag, "replies");
                ((String::new(), queue.clone()), (queue, false))
            } else {
                let (exchange, queue) = events
                    .get_or_insert_with(|| (sink(tag, "topic"), sink(tag, "events")))
                    .clone();
                ((exchange, (*cause).to_owned()), (queue, false))
            };
            routes.push(route);
            if !queues.contains(&queue) {
                queues.push(queue);
            }
        }
        Sinks {
            routes,
            queues,
            events,
        }
    }

    /// Outputs a command causes.
    pub(super) fn outputs(&self) -> usize {
        self.routes.len()
    }

    /// Every queue name the sinks may take in namespace `tag`, and the exchange's.
    pub(super) fn names(tag: &str) -> (Vec<String>, String) {
        let mut queues: Vec<String> = NOTIFY_CHANNELS
            .iter()
            .map(|c| sink(tag, &format!("notify.{c}")))
            .collect();
        queues.push(sink(tag, "events"));
        queues.push(sink(tag, "replies"));
        (queues, sink(tag, "topic"))
    }

    /// Declares the queues (and the exchange with the events queue bound to it) where
    /// missing, and empties them: outputs a run before left (it stops counting at the
    /// number it expects) would be counted as this run's. Logged when it happens.
    async fn declare_empty(&self, channel: &Channel) -> anyhow::Result<()> {
        for (queue, quorum) in &self.queues {
            let held = declare(channel, queue, *quorum).await?;
            if held > 0 {
                tracing::warn!(
                    queue,
                    held,
                    "outputs left in the ceiling's sink by the phase before; purged"
                );
                channel
                    .queue_purge(queue.as_str().into(), Default::default())
                    .await?;
            }
        }
        if let Some((exchange, queue)) = &self.events {
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    "#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Consumes every sink (`no_ack`) on `channel`, as one stream.
    async fn consume(
        &self,
        channel: &Channel,
    ) -> anyhow::Result<futures_util::stream::SelectAll<lapin::Consumer>> {
        let mut all = futures_util::stream::SelectAll::new();
        for (queue, _) in &self.queues {
            all.push(consume(channel, queue, true).await?);
        }
        Ok(all)
    }
}

/// Declares the ceiling's command queue and its sinks, and makes sure all are empty
/// before a run. The phase before may still be settling its commands (a quorum queue
/// applies acknowledgements through its log): they are given until `limit`, then
/// purged. Outputs left in a sink go at once (see `Sinks::declare_empty`). Either is
/// logged.
async fn empty_queues(
    channel: &Channel,
    queue: &str,
    sinks: &Sinks,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let held = declare(channel, queue, true).await?;
        if held == 0 {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                queue,
                held,
                "commands left in the ceiling's queue by the phase before; purged"
            );
            channel
                .queue_purge(queue.into(), Default::default())
                .await?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sinks.declare_empty(channel).await
}

pub(super) async fn count(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    Ok(look(channel, queue).await?.message_count())
}

/// A queue's message and consumer counts, without declaring it.
pub(super) async fn look(channel: &Channel, queue: &str) -> anyhow::Result<lapin::Queue> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    Ok(channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?)
}

/// The broker alone running the pattern: commands already queued; consume each,
/// publish what it causes (`causes`, to `Sinks`) with confirms, acknowledge; and, as
/// the gateway does in pinflow's run, a consumer takes every output (`no_ack`).
/// Commands per second, from the first command taken until the last output arrived,
/// and where the machine's CPU went meanwhile. Its queues are declared where missing
/// and left, empty, for the next run and the teardown.
///
/// It runs on a connection of its own, closed afterwards: lapin has been seen, a few
/// times in a hundred runs, to fail its connection when the ceiling's consumer is
/// cancelled ("invalid channel state: Closing (basic.cancel)"), and that must not take
/// the run's connection, and pinflow's phase, with it.
pub(super) async fn pattern_ceiling(
    amqp_url: &str,
    tag: &str,
    bodies: &Bodies,
    causes: &[&str],
    runtime: &Runtime,
) -> anyhow::Result<Ceiling> {
    let connection = broker::connect(amqp_url).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let sinks = Sinks::of(tag, causes);
    let measured = measure(&connection, &channel, tag, bodies, &sinks, runtime).await;
    // Closed here, not dropped: a channel dropped just before its connection closes
    // would be closed a second time by lapin, which logs that as a connection error.
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    measured
}

/// What a run of the broker alone found.
pub(super) struct Ceiling {
    /// Commands published with confirms a second, into the ceiling's queue.
    pub publish_rate: f64,
    /// Commands a second through the pattern.
    pub pattern_rate: f64,
    /// Where the CPU went while the pattern ran.
    pub cpu: CpuSplit,
}

async fn measure(
    connection: &Connection,
    channel: &Channel,
    tag: &str,
    bodies: &Bodies,
    sinks: &Sinks,
    runtime: &Runtime,
) -> anyhow::Result<Ceiling> {
    let queue = format!("{tag}.ceiling");
    empty_queues(channel, &queue, sinks, runtime.confirm_timeout).await?;
    let started = Instant::now();
    let kind = ("bench", None);
    publish_all(
        channel,
        "",
        &queue,
        bodies,
        kind,
        runtime.confirm_timeout,
        None,
    )
    .await?;
    let publish_rate = bodies.len() as f64 / started.elapsed().as_secs_f64();
    let taker = connection.create_channel().await?;
    let mut outputs_in = sinks.consume(&taker).await?;
    let expected = bodies.len() * sinks.outputs();
    let taken = tokio::spawn(async move {
        let mut seen = 0;
        let mut last = None;
        while seen < expected {
            match outputs_in.next().await {
                Some(Ok(_)) => {
                    seen += 1;
                    last = Some(Instant::now());
                }
                _ => break,
            }
        }
        (seen, last)
    });
    channel
        .basic_qos(runtime.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = consume(channel, &queue, false).await?;
    let machine = Snapshot::take();
    let started = Instant::now();
    serve(channel, &mut consumer, sinks, bodies.len(), runtime).await?;
    let (seen, last) = tokio::time::timeout(runtime.confirm_timeout, taken)
        .await
        .context("the ceiling's outputs stopped arriving")??;
    let cpu = machine.split(bodies.len());
    anyhow::ensure!(
        seen == expected,
        "the ceiling's consumer took {seen} of {expected} outputs"
    );
    let finished = last.unwrap_or_else(Instant::now);
    let pattern_rate =
        bodies.len() as f64 / finished.saturating_duration_since(started).as_secs_f64();
    let _ = taker.close(200, "done".into()).await;
    // The queues stay, empty, for the run after pinflow's phase, and only the teardown
    // deletes them: on RabbitMQ 3.10 deleting a quorum queue can crash the broker's
    // Raft log writer and fail whatever uses quorum queues at that moment (see the
    // README), and the teardown tries again where a phase could not.
    // Measured by now: a channel that fails to cancel loses nothing, and its
    // connection is closed next anyway (see `pattern_ceiling`).
    if let Err(e) = channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
    {
        tracing::debug!(error = %e, "cancelling the ceiling's consumer");
    }
    Ok(Ceiling {
        publish_rate,
        pattern_rate,
        cpu,
    })
}

/// The broker alone running the pattern at `rate` commands a second, as pinflow's
/// phase at a set rate runs: each command published when due (with confirms), then
/// taken, its outputs published and the batch acknowledged as in `serve`, while a
/// consumer takes every output. Each command's latency runs from its publication until
/// its last output arrived, as pinflow's does; with the machine's CPU from the first
/// command's publication until the last output, the publishing included as in
/// pinflow's phase at a set rate. A pattern that causes nothing has no such latency
/// (`None`). On a connection of its own and the ceiling's queues (see
/// `pattern_ceiling`), left empty.
///
/// With `burst`, those bodies are published at once (with confirms, on a connection of
/// their own) into `burst_queue` as the first command is: what taking a burst in costs
/// the pattern at the broker alone. Nothing consumes them; the queue is purged once
/// the pattern is done.
pub(super) async fn pattern_latency(
    amqp_url: &str,
    tag: &str,
    bodies: &Bodies,
    causes: &[&str],
    runtime: &Runtime,
    (rate, burst): (f64, Option<&Bodies>),
) -> anyhow::Result<Option<(Latency, CpuSplit)>> {
    if causes.is_empty() {
        return Ok(None);
    }
    let connection = broker::connect(amqp_url).await?;
    let burst = match burst {
        Some(bodies) => Some((broker::connect(amqp_url).await?, bodies)),
        None => None,
    };
    let sinks = Sinks::of(tag, causes);
    let beside = burst
        .as_ref()
        .map(|(connection, bodies)| (connection, *bodies));
    let measured = latency_at(&connection, tag, bodies, &sinks, runtime, rate, beside).await;
    let _ = connection.close(200, "done".into()).await;
    if let Some((connection, _)) = burst {
        let _ = connection.close(200, "done".into()).await;
    }
    measured.map(Some)
}

async fn latency_at(
    connection: &Connection,
    tag: &str,
    bodies: &Bodies,
    sinks: &Sinks,
    runtime: &Runtime,
    rate: f64,
    burst: Option<(&Connection, &Bodies)>,
) -> anyhow::Result<(Latency, CpuSplit)> {
    let queue = format!("{tag}.ceiling");
    let publisher = connection.create_channel().await?;
    publisher.confirm_select(Default::default()).await?;
    empty_queues(&publisher, &queue, sinks, runtime.confirm_timeout).await?;
    let burst_queue = burst_queue(tag);
    let bursting = match burst {
        Some((connection, bodies)) => {
            let channel = connection.create_channel().await?;
            channel.confirm_select(Default::default()).await?;
            if declare(&channel, &burst_queue, true).await? > 0 {
                channel
                    .queue_purge(burst_queue.as_str().into(), Default::default())
                    .await?;
            }
            Some((channel, bodies))
        }
        None => None,
    };
    let index: HashMap<String, usize> = bodies
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.clone(), i))
        .collect();
    let taker = connection.create_channel().await?;
    let mut outputs_in = sinks.consume(&taker).await?;
    let (n, outputs) = (bodies.len(), sinks.outputs());
    let arrived = tokio::spawn(async move {
        let mut left = vec![outputs; n];
        let mut done: Vec<Option<Instant>> = vec![None; n];
        let mut complete = 0;
        while complete < n {
            let Some(Ok(output)) = outputs_in.next().await else {
                break;
            };
            let id = output.properties.message_id().as_ref();
            let Some(&i) = id.and_then(|id| index.get(id.as_str())) else {
                continue;
            };
            if left[i] > 0 {
                left[i] -= 1;
                if left[i] == 0 {
                    done[i] = Some(Instant::now());
                    complete += 1;
                }
            }
        }
        done
    });
    let server = connection.create_channel().await?;
    server.confirm_select(Default::default()).await?;
    server
        .basic_qos(runtime.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = consume(&server, &queue, false).await?;
    let kind = ("bench", None);
    let limit = runtime.confirm_timeout;
    let machine = Snapshot::take();
    let burst_in = async {
        match &bursting {
            Some((channel, bodies)) => {
                publish_all(channel, "", &burst_queue, bodies, kind, limit, None).await?;
                anyhow::Ok(())
            }
            None => Ok(()),
        }
    };
    let (published, served, burst_in) = tokio::join!(
        publish_all(&publisher, "", &queue, bodies, kind, limit, Some(rate)),
        serve(&server, &mut consumer, sinks, n, runtime),
        burst_in,
    );
    let published = published?;
    served?;
    burst_in.context("the burst beside the broker alone")?;
    // Emptied once the pattern is done, not while it runs.
    if let Some((channel, _)) = &bursting {
        channel
            .queue_purge(burst_queue.as_str().into(), Default::default())
            .await?;
        let _ = channel.close(200, "done".into()).await;
    }
    let done = tokio::time::timeout(limit, arrived)
        .await
        .context("the pattern's outputs stopped arriving")??;
    let cpu = machine.split(n);
    let samples: Vec<Duration> = done
        .iter()
        .zip(&published)
        .filter_map(|(done, sent)| done.map(|d| d.saturating_duration_since(*sent)))
        .collect();
    anyhow::ensure!(
        samples.len() == n,
        "the pattern completed {} of {n} commands",
        samples.len()
    );
    // See `measure`: a consumer that fails to cancel loses nothing here.
    if let Err(e) = server
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
    {
        tracing::debug!(error = %e, "cancelling the pattern's consumer");
    }
    for channel in [&server, &taker, &publisher] {
        let _ = channel.close(200, "done".into()).await;
    }
    Ok((Latency::of(samples, false), cpu))
}

/// The broker alone doing what a worker does, for `n` commands from `consumer`:
/// batched like the consumer loop (up to a batch of deliveries, their outputs published
/// to `sinks` with confirms, each under its command's message id, then one `multiple`
/// ack).
async fn serve(
    channel: &Channel,
    consumer: &mut lapin::Consumer,
    sinks: &Sinks,
    n: usize,
    runtime: &Runtime,
) -> anyhow::Result<()> {
    let mut handled = 0;
    while handled < n {
        let first = consumer.next().await.context("consumer closed")??;
        let mut batch = vec![first];
        while batch.len() < usize::from(runtime.batch_size) {
            match futures_util::FutureExt::now_or_never(consumer.next()) {
                Some(Some(delivery)) => batch.push(delivery?),
                _ => break,
            }
        }
        // Published as pinflow publishes a batch's outputs (see `publish::start_all`).
        let mut outbound = Vec::with_capacity(batch.len() * sinks.outputs());
        for delivery in &batch {
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .map_or("out", |id| id.as_str());
            for (exchange, routing_key) in &sinks.routes {
                outbound.push(Outbound {
                    exchange: exchange.clone(),
                    routing_key: routing_key.clone(),
                    body: delivery.data.clone(),
                    properties: properties(id, "bench", None),
                    mandatory: true,
                });
            }
        }
        let mut confirms = Vec::with_capacity(outbound.len());
        for started in publish::start_all(channel, outbound).await {
            confirms.push(started?);
        }
        for confirmed in publish::confirmed_all(confirms, runtime.confirm_timeout)
            .await
            .each
        {
            confirmed?;
        }
        let last = batch.last().map_or(0, |d| d.delivery_tag);
        channel
            .basic_ack(last, BasicAckOptions { multiple: true })
            .await?;
        handled += batch.len();
    }
    Ok(())
}

/// Starts consuming `queue` as the benchmark (`no_ack`: deliveries count as
/// acknowledged once sent).
pub(super) async fn consume(
    channel: &Channel,
    queue: &str,
    no_ack: bool,
) -> anyhow::Result<lapin::Consumer> {
    let options = BasicConsumeOptions {
        no_ack,
        ..Default::default()
    };
    // Tagged by its queue: a channel may consume several (see `Sinks::consume`).
    Ok(channel
        .basic_consume(queue.into(), queue.into(), options, FieldTable::default())
        .await?)
}

/// A queue that receives a copy of every event pinflow publishes on the events
/// exchange of `names`, for the benchmark to count. Never bound to the notifications
/// exchange: a notification may carry a PIN half, which only its `notify.*` queue may
/// hold.
pub(super) async fn events_sink(
    channel: &Channel,
    tag: &str,
    names: &crate::broker::Names,
) -> anyhow::Result<String> {
    let sink = format!("{tag}.bench.events");
    declare(channel, &sink, false).await?;
    let options = lapin::options::QueueBindOptions::default();
    channel
        .queue_bind(
            sink.as_str().into(),
            names.events().as_str().into(),
            "#".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_output_goes_to_its_kind_of_destination_and_the_teardown_knows_every_sink() {
        let sinks = Sinks::of("t", &["notify.sms", "notify.post", "pin.issued"]);
        let routes: Vec<(&str, &str)> = sinks
            .routes
            .iter()
            .map(|(e, k)| (e.as_str(), k.as_str()))
            .collect();
        assert_eq!(
            routes,
            [
                ("", "t.ceiling.notify.sms"),
                ("", "t.ceiling.notify.post"),
                ("t.ceiling.topic", "pin.issued"),
            ]
        );
        let queues = [
            ("t.ceiling.notify.sms".to_owned(), true),
            ("t.ceiling.notify.post".to_owned(), true),
            ("t.ceiling.events".to_owned(), false),
        ];
        assert_eq!(sinks.queues, queues);

        let rpc = Sinks::of("t", &["reply", "phone_pin.issued", "pin.activated"]);
        assert_eq!(rpc.outputs(), 3);
        assert_eq!(
            rpc.routes[0],
            (String::new(), "t.ceiling.replies".to_owned())
        );
        let queues = [
            ("t.ceiling.replies".to_owned(), false),
            ("t.ceiling.events".to_owned(), false),
        ];
        assert_eq!(rpc.queues, queues, "two events, one queue");
        assert!(Sinks::of("t", &[]).events.is_none());

        let (all, exchange) = Sinks::names("t");
        for sinks in [&sinks, &rpc] {
            for (queue, _) in &sinks.queues {
                assert!(all.contains(queue), "{queue} is left out of the teardown");
            }
            if let Some((events, _)) = &sinks.events {
                assert_eq!(events, &exchange);
            }
        }
    }
}
