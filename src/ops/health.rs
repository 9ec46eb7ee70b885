//! `pinflow health`: exit 0 when the broker and the database answer and every chosen
//! worker's queue has a consumer; for container health checks. A worker made only of
//! timed jobs has no queue, and is healthy when the broker and the database are.
//! `pinflow ready` asks a running process's own `/readyz` instead.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::broker::{self, Names};
use crate::config::Connections;
use crate::manifest::Description;

/// Checks the broker, the database and the workers' consumers; the error says which
/// failed.
pub async fn check(connections: &Connections, workers: &[&Description]) -> anyhow::Result<()> {
    let pool = crate::store::connect(&connections.database_url, 1).await?;
    sqlx::query("select 1").execute(&pool).await?;
    pool.close().await;
    let connection = broker::connect(&connections.amqp_url).await?;
    let channel = connection.create_channel().await?;
    let names = Names::new(&connections.namespace);
    for worker in workers.iter().filter(|w| w.has_queue()) {
        let queue = names.work_queue(worker.name);
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await?;
        anyhow::ensure!(declared.consumer_count() > 0, "no worker consumes {queue}");
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// Asks a running `pinflow run` for its `/readyz` at `addr` (an unspecified address,
/// such as `0.0.0.0`, means this host): whether it is ready, and its answer.
pub async fn probe_ready(addr: std::net::SocketAddr) -> anyhow::Result<(bool, String)> {
    use anyhow::Context as _;
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .with_context(|| format!("no answer from http://{addr}/readyz"))?;
    let ready = response.status().is_success();
    Ok((ready, response.text().await?))
}
