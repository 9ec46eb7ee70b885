//! `pinflow watch`: print what pinflow publishes (events, notifications) as it happens,
//! from a private queue bound to both exchanges, so it takes nothing from the gateways'
//! queues. Secrets print as `<redacted>` unless asked for (trying pinflow out).

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions};
use lapin::types::FieldTable;
use serde_json::Value;

use crate::broker::{self, Names};
use crate::config::Connections;

/// Prints every event and notification until `stop` completes.
pub async fn watch(
    connections: &Connections,
    show_secrets: bool,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let names = Names::new(&connections.namespace);
    let connection =
        broker::connect_named(&connections.amqp_url, &names.connection_name("watch")).await?;
    let channel = connection.create_channel().await?;
    broker::topology::declare_shared(&channel, &names).await?;
    let queue = crate::broker::private_queue(&channel).await?;
    for exchange in [names.events(), names.notifications()] {
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let consume = BasicConsumeOptions {
        no_ack: true,
        exclusive: true,
        ..Default::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "pinflow-watch".into(),
            consume,
            FieldTable::default(),
        )
        .await?;
    eprintln!(
        "watching {} and {} (Ctrl-C to stop)",
        names.events(),
        names.notifications()
    );
    let mut stop = std::pin::pin!(stop);
    loop {
        let delivery = tokio::select! {
            () = &mut stop => break,
            next = consumer.next() => match next {
                Some(delivery) => delivery?,
                None => break,
            },
        };
        let mut body: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
        if !show_secrets {
            crate::ops::dlq::redact(&mut body);
        }
        println!("{} {}", delivery.routing_key.as_str(), body);
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
