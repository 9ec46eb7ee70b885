//! PostgreSQL through sqlx: the pool, migrations, and one repository per table. Knows
//! the contract's outgoing shapes but nothing of the broker or of any one worker.

pub mod audit;
pub mod credentials;
pub mod inbox;
pub mod notifications;
pub mod outbox;
pub mod profiles;

use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Postgres};

/// Why the database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database url")]
    Url(#[source] sqlx::Error),
    #[error("cannot create database {0}")]
    Create(String, #[source] sqlx::Error),
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// A statement being bound, as the modules that write one batch's rows in one
/// statement pass it to each other.
type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// The migrations in `migrations/`, embedded.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Creates the database named by `url` if it does not exist. Safe when several
/// processes race to create it.
pub async fn ensure_database(url: &str) -> Result<(), StoreError> {
    let options: PgConnectOptions = url.parse().map_err(StoreError::Url)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    if Postgres::database_exists(url)
        .await
        .map_err(StoreError::Connect)?
    {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Ok(()) => Ok(()),
        // 42P04 duplicate_database, 23505 a concurrent creation won the race.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P04") | Some("23505")) =>
        {
            Ok(())
        }
        Err(e) => Err(StoreError::Create(name, e)),
    }
}

/// Opens a pool on an existing database. Statements are logged only at debug level
/// and never with their arguments.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(StoreError::Url)?;
    let options = options
        .application_name("pinflow")
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(2));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(StoreError::Connect)
}

/// Applies pending migrations under sqlx's advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await.map_err(StoreError::Migrate)
}
