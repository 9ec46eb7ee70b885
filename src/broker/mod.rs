//! RabbitMQ through lapin: connecting and reconnecting, names, the topology,
//! publishing with confirms, and sending failed deliveries to delay and dead-letter
//! queues. Talks to lapin and imports nothing above it: no runtime, no worker.

pub mod dead_letter;
pub mod names;
pub mod publish;
pub mod topology;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

pub use names::Names;

/// Connects once.
pub async fn connect(url: &str) -> Result<Connection, lapin::Error> {
    connect_named(url, "pinflow").await
}

/// Connects once, under a name the broker shows (`rabbitmqctl list_connections
/// user_provided_name`), so operators can tell pinflow's connections apart.
pub async fn connect_named(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(&with_frame_max(url), properties).await
}

/// The largest frame pinflow asks for, unless the URL sets `frame_max` itself. lapin
/// keeps two buffers of 32 frames per connection: at RabbitMQ's default of 128 KiB
/// that is 8 MiB for each of the twenty connections of a process running every
/// worker; pinflow's messages are a few KiB, and a larger body is sent in several
/// frames.
const FRAME_MAX: u32 = 16 * 1024;

fn with_frame_max(url: &str) -> String {
    if url.contains("frame_max=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}frame_max={FRAME_MAX}")
}

/// How long [`close`] waits for the broker's answer.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Closes a connection that is being left, waiting at most [`CLOSE_LIMIT`]: when the
/// connection fails while it closes, lapin 4 can wait for the broker's close-ok for
/// ever, and the loop that reconnects would never run again.
pub async fn close(connection: &Connection, reason: &str) {
    let closing = connection.close(200, reason.into());
    if tokio::time::timeout(CLOSE_LIMIT, closing).await.is_err() {
        tracing::debug!(
            reason,
            "the broker did not answer the close; leaving the connection"
        );
    }
}

/// Connects, retrying with exponential backoff and jitter until it succeeds or
/// `cancel` fires (then `None`). Each failure is logged once, without the URL, which
/// may hold a password.
pub async fn connect_with_backoff(
    url: &str,
    purpose: &str,
    cancel: &CancellationToken,
) -> Option<Connection> {
    let mut delays = reconnect_delays();
    loop {
        match connect_named(url, purpose).await {
            Ok(connection) => return Some(connection),
            Err(e) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(30));
                tracing::warn!(
                    purpose,
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot connect to the broker"
                );
                tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// A server-named queue that lives as long as this channel's connection and only it
/// may use: for RPC replies and for watching exchanges.
pub async fn private_queue(channel: &lapin::Channel) -> Result<lapin::Queue, lapin::Error> {
    let options = lapin::options::QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare("".into(), options, lapin::types::FieldTable::default())
        .await
}

/// The delays between reconnection attempts: 200 ms doubling to 30 s, with jitter,
/// for ever.
pub fn reconnect_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_size_is_asked_for_unless_the_url_sets_one() {
        let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
        assert_eq!(with_frame_max(url), format!("{url}?frame_max=16384"));
        let tuned = "amqp://h/%2f?heartbeat=10";
        assert_eq!(with_frame_max(tuned), format!("{tuned}&frame_max=16384"));
        let own = "amqp://h/%2f?frame_max=65536";
        assert_eq!(with_frame_max(own), own);
    }
}
