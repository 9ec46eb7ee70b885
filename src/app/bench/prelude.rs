//! What a benchmark sends before it measures. A command whose binding names others it
//! needs handled first (a conversion needs an ordinary PIN) gets them: for the same
//! applicants, the contract's example of each needed type, handled by pinflow until
//! everything they cause has come out, then drained. None of it is timed.

use std::time::Duration;

use lapin::Channel;
use lapin::options::QueuePurgeOptions;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::ceiling::{count, publish_all};
use super::{binding_of, command};
use crate::app::Setup;
use crate::broker::Names;
use crate::runtime::Registration;

/// pinflow running in this process for a phase of the benchmark.
pub(super) struct Pinflow {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Pinflow {
    /// Starts every worker of `setup`.
    pub(super) fn start(setup: Setup) -> Pinflow {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::app::run(setup, async move {
            let _ = stopped.await;
        }));
        Pinflow { stop, task }
    }

    /// Waits until `queue` holds `expected` messages; fails if pinflow stops first.
    pub(super) async fn wait_for(
        &self,
        channel: &Channel,
        queue: &str,
        expected: u32,
    ) -> anyhow::Result<()> {
        while count(channel, queue).await? < expected {
            anyhow::ensure!(
                !self.task.is_finished(),
                "pinflow stopped during the benchmark"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops it and waits until it has.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Where the prelude publishes and what it waits on.
pub(super) struct Target<'a> {
    /// The benchmark's names.
    pub names: &'a Names,
    /// The queue that collects everything pinflow publishes.
    pub sink: &'a str,
    /// How long to wait for a publisher confirm.
    pub confirm_timeout: Duration,
}

/// Has pinflow handle, for applicants `0..messages`, the example of every type in
/// `needs`, then empties the sink. Does nothing when `needs` is empty.
pub(super) async fn run(
    channel: &Channel,
    target: Target<'_>,
    registry: &[Registration],
    needs: &[&str],
    messages: u32,
    setup: Setup,
) -> anyhow::Result<()> {
    if needs.is_empty() {
        return Ok(());
    }
    let pinflow = Pinflow::start(setup);
    let mut expected = 0u32;
    for needed in needs {
        let binding = binding_of(registry, needed)?;
        let mut bodies = Vec::with_capacity(messages as usize);
        for n in 0..messages {
            let event = command(needed, n)?;
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            bodies.push((id, serde_json::to_vec(&event)?));
        }
        let reply_to = binding.rpc.then_some(target.sink);
        let exchange = target.names.commands();
        publish_all(
            channel,
            &exchange,
            needed,
            &bodies,
            (needed, reply_to),
            target.confirm_timeout,
        )
        .await?;
        expected += messages.saturating_mul(binding.causes.len() as u32);
    }
    pinflow.wait_for(channel, target.sink, expected).await?;
    pinflow.stop().await?;
    channel
        .queue_purge(target.sink.into(), QueuePurgeOptions::default())
        .await?;
    Ok(())
}
