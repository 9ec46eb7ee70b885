//! The broker and the database the tests use: the ones named by
//! `PINFLOW_TEST_AMQP_URL` and `PINFLOW_TEST_DATABASE_URL` when set, otherwise
//! RabbitMQ and PostgreSQL containers started once per test binary with
//! testcontainers, from the image tags pinned in `.env` (shared with compose).

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use testcontainers_modules::postgres::Postgres;
use tokio::sync::OnceCell;

/// Where the shared services are.
pub struct Services {
    /// AMQP URL of the broker.
    pub amqp_url: String,
    /// A PostgreSQL URL whose database the tests may use to create their own.
    pub database_url: String,
    /// Containers live as long as the test binary.
    _containers: Option<(ContainerAsync<GenericImage>, ContainerAsync<Postgres>)>,
}

static SERVICES: OnceCell<Services> = OnceCell::const_new();

/// The shared services, started on first use.
pub async fn services() -> &'static Services {
    SERVICES.get_or_init(start).await
}

fn pinned(key: &str) -> (String, String) {
    let line = include_str!("../../.env")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!(".env pins no {key}"));
    let (name, tag) = line.trim().rsplit_once(':').expect("image is name:tag");
    (name.to_owned(), tag.to_owned())
}

async fn start() -> Services {
    if let (Ok(amqp_url), Ok(database_url)) = (
        std::env::var("PINFLOW_TEST_AMQP_URL"),
        std::env::var("PINFLOW_TEST_DATABASE_URL"),
    ) {
        return Services {
            amqp_url,
            database_url,
            _containers: None,
        };
    }
    let (rabbit_name, rabbit_tag) = pinned("RABBITMQ_IMAGE");
    let rabbit = GenericImage::new(rabbit_name, rabbit_tag)
        .with_exposed_port(5672.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
        .start()
        .await
        .expect("start RabbitMQ (is Docker running? or set PINFLOW_TEST_AMQP_URL)");
    let (pg_name, pg_tag) = pinned("POSTGRES_IMAGE");
    let postgres = Postgres::default()
        .with_host_auth()
        .with_name(pg_name)
        .with_tag(pg_tag)
        .start()
        .await
        .expect("start PostgreSQL (is Docker running? or set PINFLOW_TEST_DATABASE_URL)");
    let host = rabbit.get_host().await.expect("rabbit host");
    let amqp_port = rabbit.get_host_port_ipv4(5672).await.expect("amqp port");
    let pg_port = postgres.get_host_port_ipv4(5432).await.expect("pg port");
    Services {
        amqp_url: format!("amqp://guest:guest@{host}:{amqp_port}/%2f"),
        database_url: format!("postgres://postgres@{host}:{pg_port}/postgres"),
        _containers: Some((rabbit, postgres)),
    }
}
