//! `pinflow publish`: put a command on `pinflow.commands` as an upstream system would,
//! wait for the broker's confirm and, for RPC commands, for the reply.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::BasicConsumeOptions;
use lapin::types::{FieldTable, ShortString};
use serde_json::Value;
use uuid::Uuid;

use crate::broker::{self, Names, publish::publish_routed, publish::set_str};
use crate::config::Connections;
use crate::contract::CONTENT_TYPE;
use crate::contract::trace::TraceParent;

/// What to publish.
pub struct PublishRequest {
    /// A CloudEvent in structured JSON.
    pub body: Vec<u8>,
    /// Wait this long for an RPC reply; `None` for fire-and-forget commands.
    pub wait_reply: Option<Duration>,
    /// How long to wait for the broker's confirm.
    pub confirm_timeout: Duration,
}

/// What happened.
pub struct Published {
    /// The CloudEvent id.
    pub id: String,
    /// Its type, the routing key.
    pub message_type: String,
    /// The exchange it went to.
    pub exchange: String,
    /// The RPC reply, when one was awaited.
    pub reply: Option<Value>,
}

/// Publishes one command.
pub async fn publish(
    connections: &Connections,
    request: PublishRequest,
) -> anyhow::Result<Published> {
    let event: Value = serde_json::from_slice(&request.body)
        .map_err(|e| anyhow::anyhow!("the file is not JSON: {e}"))?;
    let text = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
    let message_type =
        text("type").ok_or_else(|| anyhow::anyhow!("the CloudEvent has no `type`"))?;
    let id = text("id").ok_or_else(|| anyhow::anyhow!("the CloudEvent has no `id`"))?;

    let connection = broker::connect(&connections.amqp_url).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let mut headers = FieldTable::default();
    set_str(
        &mut headers,
        "traceparent",
        &TraceParent::start().to_string(),
    );
    let mut properties = BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_message_id(ShortString::from(id.clone()))
        .with_type(ShortString::from(message_type.clone()))
        .with_delivery_mode(2)
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
        .with_headers(headers);

    let mut replies = None;
    let correlation_id = Uuid::new_v4().to_string();
    if request.wait_reply.is_some() {
        let queue = crate::broker::private_queue(&channel).await?;
        let consume = BasicConsumeOptions {
            no_ack: true,
            exclusive: true,
            ..Default::default()
        };
        replies = Some(
            channel
                .basic_consume(
                    queue.name().clone(),
                    "pinflow-publish".into(),
                    consume,
                    FieldTable::default(),
                )
                .await?,
        );
        properties = properties
            .with_reply_to(queue.name().clone())
            .with_correlation_id(ShortString::from(correlation_id.clone()));
    }
    let exchange = Names::new(&connections.namespace).commands();
    publish_routed(
        &channel,
        &exchange,
        &message_type,
        &request.body,
        properties,
        request.confirm_timeout,
    )
    .await?;

    let mut reply = None;
    if let (Some(mut consumer), Some(limit)) = (replies, request.wait_reply) {
        let wait = async {
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery?;
                let matches = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str())
                    == Some(correlation_id.as_str());
                if matches {
                    return Ok::<_, anyhow::Error>(serde_json::from_slice::<Value>(
                        &delivery.data,
                    )?);
                }
            }
            anyhow::bail!("the broker closed the reply queue")
        };
        reply = Some(tokio::time::timeout(limit, wait).await.map_err(|_| {
            anyhow::anyhow!("no reply within {limit:?}: is `pinflow run` running?")
        })??);
    }
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(Published {
        id,
        message_type,
        exchange,
        reply,
    })
}
