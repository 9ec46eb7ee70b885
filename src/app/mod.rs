//! Wiring: builds what the workers share from the settings and runs the chosen
//! workers, their timed jobs and the outbox relay until the shutdown future completes.
//! `main` passes the registry and SIGTERM/Ctrl-C; tests pass their own.

pub mod bench;
pub mod endpoints;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{self, Names};
use crate::clock::Clock;
use crate::config::{Connections, Rules, Runtime};
use crate::manifest::{self, Description};
use crate::runtime::at_commit::{AtCommit, Holder};
use crate::runtime::health::Health;
use crate::runtime::registry::Starter;
use crate::runtime::{Deps, JobTrigger, Registration, descriptions};
use crate::seal::KeyRing;
use crate::store;
use endpoints::Endpoints;

/// Creates the database if needed, connects (retrying while the database is not up
/// yet) and migrates under sqlx's advisory lock.
pub async fn prepare_database(
    url: &str,
    max_connections: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<PgPool> {
    let mut delays = broker::reconnect_delays();
    loop {
        let attempt = async {
            store::ensure_database(url).await?;
            let pool = store::connect(url, max_connections).await?;
            store::migrate(&pool).await?;
            Ok::<_, store::StoreError>(pool)
        };
        match attempt.await {
            Ok(pool) => return Ok(pool),
            Err(e @ (store::StoreError::Url(_) | store::StoreError::Migrate(_))) => {
                return Err(e).context("cannot prepare the database");
            }
            Err(e) => {
                let delay = delays.next().unwrap_or_default();
                tracing::warn!(error = %crate::error::chain(&e), retry_in_ms = delay.as_millis() as u64, "database not ready");
                tokio::select! {
                    () = cancel.cancelled() => anyhow::bail!("stopped while waiting for the database"),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Everything `run` needs.
pub struct Setup {
    /// Broker, database, namespace.
    pub connections: Connections,
    /// Consumer, retry and relay settings.
    pub runtime: Runtime,
    /// Business rules.
    pub rules: Rules,
    /// The outbox keys.
    pub keys: KeyRing,
    /// "Now".
    pub clock: Arc<dyn Clock>,
    /// Every registered worker: the whole topology is declared from it.
    pub registry: Vec<Registration>,
    /// Which workers to run; empty means all.
    pub workers: Vec<String>,
    /// Starts a pass of every timed job at once.
    pub jobs_now: JobTrigger,
}

/// Declares the topology of every worker once (so publishers can start before the
/// workers), used by `pinflow topology` and `pinflow publish`; `run` declares it
/// before its first sessions start and again at every reconnection (see
/// `Deps::declare_topology`).
pub async fn declare_topology(
    connections: &Connections,
    runtime: &Runtime,
    workers: &[Description],
) -> anyhow::Result<()> {
    let connection = broker::connect(&connections.amqp_url)
        .await
        .context("cannot connect to the broker")?;
    let channel = connection.create_channel().await?;
    let names = Names::new(&connections.namespace);
    broker::topology::declare_all(&channel, &names, runtime, workers).await?;
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// Runs the chosen workers and the relay until `shutdown` completes, then stops
/// consuming, lets in-flight batches finish, flushes the relay and returns.
pub async fn run(setup: Setup, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let all = descriptions(&setup.registry);
    let chosen: Vec<Registration> = manifest::choose(&all, &setup.workers)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter_map(|d| setup.registry.iter().find(|r| r.description == *d).copied())
        .collect();
    let mut shutdown = std::pin::pin!(shutdown);
    let health = Arc::new(Health::default());
    // Served from the start (alive, not ready), stopped when `run` returns.
    let listener_stop = CancellationToken::new();
    let _stop_listener = listener_stop.clone().drop_guard();
    let endpoints = match setup.runtime.metrics_addr {
        None => None,
        Some(addr) => {
            let endpoints = Arc::new(Endpoints {
                health: health.clone(),
                pool: std::sync::OnceLock::new(),
                metrics: crate::telemetry::metrics::install(),
            });
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (PINFLOW_METRICS_ADDR)"))?;
            tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
            tokio::spawn(endpoints::serve(
                listener,
                endpoints.clone(),
                listener_stop.clone(),
            ));
            Some(endpoints)
        }
    };
    let pool = tokio::select! {
        pool = prepare_database(&setup.connections.database_url, setup.runtime.db_max_connections, &cancel) => pool?,
        () = &mut shutdown => anyhow::bail!("stopped before start-up finished"),
    };
    if let Some(endpoints) = &endpoints {
        let _ = endpoints.pool.set(pool.clone());
    }
    let holder = match setup.runtime.publish_at_commit {
        false => None,
        true => match Holder::take(&pool).await {
            Ok(holder) => Some(holder),
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "cannot take this process's lock; everything is left to the relay");
                None
            }
        },
    };
    let (at_commit, settling) = match &holder {
        Some(holder) => {
            let (at_commit, batches) = AtCommit::on(holder);
            (at_commit, Some(batches))
        }
        None => (AtCommit::default(), None),
    };
    let deps = Arc::new(Deps {
        pool: pool.clone(),
        names: Names::new(&setup.connections.namespace),
        amqp_url: setup.connections.amqp_url.clone(),
        runtime: setup.runtime.clone(),
        keys: Arc::new(setup.keys),
        clock: setup.clock,
        relay_wake: Arc::new(Notify::new()),
        at_commit,
        workers: all.into(),
        declared: Default::default(),
        jobs_now: setup.jobs_now.clone(),
        health,
        other_work: Arc::default(),
    });
    let hasher = crate::domain::PinHasher::beside(
        setup.rules.hash_params(),
        setup.rules.hash_threads(),
        setup.rules.hash_threads_beside_others(),
        &deps.other_work,
    )
    .context("invalid Argon2 settings")?;
    let tracker = TaskTracker::new();
    let relay_cancel = CancellationToken::new();
    let settle_cancel = CancellationToken::new();
    let settler = settling.map(|batches| {
        tokio::spawn(crate::runtime::at_commit::settle(
            deps.clone(),
            batches,
            settle_cancel.clone(),
        ))
    });
    // Held until the settler is done: the relays leave this process's held rows
    // alone while it holds the lock.
    let hold_cancel = CancellationToken::new();
    let holding = holder.map(|holder| tokio::spawn(holder.keep(pool.clone(), hold_cancel.clone())));
    for registration in &chosen {
        let starter = Starter {
            description: registration.description,
            deps: &deps,
            rules: &setup.rules,
            hasher: &hasher,
            tracker: &tracker,
            cancel: &cancel,
        };
        (registration.start)(&starter);
    }
    tracker.spawn(crate::runtime::intake::run(deps.clone(), cancel.clone()));
    if endpoints.is_some() {
        tracker.spawn(crate::runtime::gauges::run(deps.clone(), cancel.clone()));
    }
    tracker.spawn(crate::runtime::relay::run(
        deps.clone(),
        relay_cancel.clone(),
    ));
    tracker.close();
    let names: Vec<&str> = chosen.iter().map(|r| r.description.name).collect();
    let async_threads = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(
        workers = ?names,
        namespace = %setup.connections.namespace,
        async_threads,
        hash_threads = setup.rules.hash_threads(),
        hash_threads_beside_others = setup.rules.hash_threads_beside_others(),
        "pinflow running"
    );

    shutdown.await;
    tracing::info!("stopping: finishing in-flight messages");
    cancel.cancel();
    // The settler stops after the workers, so it settles what they published last,
    // and the relay after it, so it flushes what they committed last and what the
    // settler handed back.
    let stop = async {
        while tracker.len() > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        settle_cancel.cancel();
        if let Some(settler) = settler {
            let _ = settler.await;
        }
        hold_cancel.cancel();
        if let Some(holding) = holding {
            let _ = holding.await;
        }
        relay_cancel.cancel();
        tracker.wait().await;
    };
    if tokio::time::timeout(setup.runtime.shutdown_timeout * 2, stop)
        .await
        .is_err()
    {
        tracing::warn!(
            unfinished = tracker.len(),
            "tasks did not finish before the shutdown timeout"
        );
    }
    pool.close().await;
    tracing::info!("pinflow stopped");
    Ok(())
}
