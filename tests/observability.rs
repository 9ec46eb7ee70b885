//! What an operator sees of a running `pinflow run` (a child process, so its metrics
//! are its own): `/metrics` counters move by exactly what was sent, `/readyz` turns
//! not ready when the broker connection is cut and ready again after the reconnect,
//! spans go to an OTLP collector with the ids found in the notifications'
//! `traceparent` and in every JSON log line of the delivery, and the dashboard asks
//! only for metrics pinflow exposes.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::conversion::application;
use common::issuance::{IssuanceApp, pin_request};
use common::process::{Pinflow, key, start};
use common::{PATIENCE, TestApp, command_properties, observer_with, tax_code};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use tokio::sync::Mutex;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// One sample of the exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once("=\"").expect("label");
                        (key.to_owned(), value.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: value.parse().expect("a number"),
        });
    }
    samples
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{addr}{path}")).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    parse_exposition(&text)
}

/// Polls `/readyz` until its status is `want` and its answer names every one of
/// `naming`; returns the answer.
async fn readiness(addr: SocketAddr, want: u16, naming: &[&str], pinflow: &Pinflow) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = get(addr, "/readyz").await;
        if status == want && naming.iter().all(|n| body.contains(n)) {
            return body;
        }
        if tokio::time::Instant::now() > deadline {
            let log = pinflow.log.lock().await.clone();
            panic!("/readyz never answered {want} naming {naming:?}; last {status}: {body}\n{log}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Scrapes until `done` holds for the samples (counters are recorded just after the
/// acknowledgement, so they may trail what already came out).
async fn scrape_until(addr: SocketAddr, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let samples = scrape(addr).await;
        if done(&samples) || tokio::time::Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A `pinflow run` with every worker, serving its metrics, logging at `info`, with
/// `env` besides, once it is ready; and the test's app and the metrics' address.
async fn serving_metrics(env: &[(&str, &str)]) -> (TestApp, SocketAddr, Pinflow) {
    let (app, connections, _) = observer_with(&[]).await;
    let addr = free_addr();
    let metrics_addr = addr.to_string();
    let mut all = vec![
        ("PINFLOW_METRICS_ADDR", metrics_addr.as_str()),
        ("PINFLOW_LOG", "info"),
    ];
    all.extend_from_slice(env);
    let pinflow = start(&connections, &key(), &all);
    readiness(addr, 200, &["ready"], &pinflow).await;
    (app, addr, pinflow)
}

#[tokio::test]
async fn counters_move_by_exactly_what_was_sent() {
    let (app, addr, pinflow) = serving_metrics(&[("PINFLOW_METRICS_INTERVAL", "PT0.2S")]).await;
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "alive\n"));
    let before = scrape(addr).await;

    // Two requests, one of them sent twice; a body that is not JSON; a bad tax code.
    let first = pin_request(&tax_code(81), "online");
    let second = pin_request(&tax_code(82), "online");
    let mut bad = pin_request(&tax_code(83), "online");
    bad["data"]["applicant"]["tax_code"] = "RSSMRA85T10A083X".into();
    for request in [&first, &second, &first, &bad] {
        app.publish(request).await;
    }
    app.publish_raw("pin.request", b"{not json", command_properties(&first))
        .await;
    app.take(&app.notify_queue("sms"), 2).await;
    app.take(&app.notify_queue("post"), 2).await;
    let dlq = pinflow::broker::Names::dlq(&app.work_queue());
    app.take(&dlq, 2).await;

    let issuance = [("worker", "issuance"), ("type", "pin.request")];
    let delta = |after: &[Sample], name: &str, labels: &[(&str, &str)]| {
        value(after, name, labels) - value(&before, name, labels)
    };
    let after = scrape_until(addr, |s| {
        delta(s, "pinflow_messages_dead_lettered_total", &issuance) >= 2.0
            && delta(s, "pinflow_messages_processed_total", &issuance) >= 3.0
            && delta(s, "pinflow_relay_published_total", &[]) >= 6.0
            && value(s, "pinflow_outbox_backlog", &[]) == 0.0
            && value(s, "pinflow_credentials", &[("status", "issued")]) == 2.0
    })
    .await;
    let handled = [("outcome", "handled")];
    let duplicate = [("outcome", "duplicate")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        issuance.iter().chain(extra).copied().collect()
    };
    let counts = [
        ("pinflow_messages_received_total", issuance.to_vec(), 5.0),
        ("pinflow_messages_processed_total", with(&handled), 2.0),
        ("pinflow_messages_processed_total", with(&duplicate), 1.0),
        ("pinflow_messages_retried_total", issuance.to_vec(), 0.0),
        (
            "pinflow_messages_dead_lettered_total",
            with(&[("reason", "invalid")]),
            2.0,
        ),
        (
            "pinflow_messages_dead_lettered_total",
            with(&[("reason", "rejected")]),
            0.0,
        ),
        (
            "pinflow_handling_duration_seconds_count",
            issuance.to_vec(),
            3.0,
        ),
        (
            "pinflow_relay_published_total",
            vec![("destination", "notification")],
            4.0,
        ),
        (
            "pinflow_relay_published_total",
            vec![("destination", "event")],
            2.0,
        ),
        ("pinflow_broker_reconnects_total", vec![], 0.0),
    ];
    for (name, labels, expected) in counts {
        assert_eq!(delta(&after, name, &labels), expected, "{name} {labels:?}");
    }
    // The database gauges: this test's own database.
    let gauges = [
        (
            "pinflow_credentials",
            vec![("status", "issued"), ("kind", "ordinary")],
            2.0,
        ),
        ("pinflow_credentials", vec![("status", "active")], 0.0),
        ("pinflow_outbox_backlog", vec![], 0.0),
        ("pinflow_outbox_oldest_unsent_age_seconds", vec![], 0.0),
        ("pinflow_credentials_expiring_within_7d", vec![], 0.0),
        ("pinflow_expiry_sweep_lag_seconds", vec![], 0.0),
    ];
    for (name, labels, expected) in gauges {
        assert_eq!(value(&after, name, &labels), expected, "{name} {labels:?}");
    }
    assert_eq!(
        value(&after, "pinflow_argon2_duration_seconds_count", &[]),
        3.0,
        "one hash per issued PIN, and one for the duplicate (prepared before the inbox sees it)"
    );

    // Every metric the dashboard asks for is one pinflow exposes.
    let dashboard: Value =
        serde_json::from_str(include_str!("../ops/grafana/dashboards/pinflow.json"))
            .expect("dashboard JSON");
    let exposed: Vec<&str> = after.iter().map(|s| s.name.as_str()).collect();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("pinflow_") {
                    asked += 1;
                    assert!(
                        exposed.contains(&word),
                        "the dashboard asks for {word}, which is not exposed"
                    );
                }
            }
        }
    }
    assert!(asked >= 15, "the dashboard queries pinflow's metrics");
    let (status, _) = pinflow.terminate().await;
    assert!(status.success());
    app.stop().await;
}

/// With two hashing threads, one steps aside while commands that do not hash are
/// handled (`pinflow_argon2_threads_stepped_aside` is 1), never for hashing commands
/// alone, and hashes again once the others stop.
#[tokio::test]
async fn a_hashing_thread_steps_aside_only_for_commands_that_do_not_hash() {
    let (app, addr, pinflow) = serving_metrics(&[("PINFLOW_ARGON2_THREADS", "2")]).await;
    let aside = |samples: &[Sample]| value(samples, "pinflow_argon2_threads_stepped_aside", &[]);
    let pause = std::time::Duration::from_millis(40);

    // PIN requests alone, one every 40 ms for 1.2 s: every hashing thread hashes.
    for n in 0..30 {
        app.publish(&pin_request(&tax_code(100 + n), "online"))
            .await;
        tokio::time::sleep(pause).await;
        assert_eq!(aside(&scrape(addr).await), 0.0, "after PIN request {n}");
    }
    app.take(&app.notify_queue("sms"), 30).await;

    // Applications, which hash nothing: one thread steps aside while they flow.
    let mut stepped_aside = false;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut n = 0;
    while !stepped_aside {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no thread stepped aside"
        );
        let code = tax_code(200 + n % 50);
        let id = format!("APP-{n}");
        app.publish(&application(&code, &id, "spid", "2026-11-22T10:00:00Z"))
            .await;
        tokio::time::sleep(pause).await;
        let now = aside(&scrape(addr).await);
        assert!(now <= 1.0, "one thread keeps hashing: {now} stepped aside");
        stepped_aside = now == 1.0;
        n += 1;
    }

    // They stopped: it hashes again.
    let after = scrape_until(addr, |s| aside(s) == 0.0).await;
    assert_eq!(aside(&after), 0.0, "the thread hashes again");
    let (status, _) = pinflow.terminate().await;
    assert!(status.success());
    app.stop().await;
}

/// A TCP relay between pinflow and the broker that the test can cut.
struct Cable {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cable {
    async fn to(broker: String) -> Cable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicBool::new(true));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (gate, list) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    continue;
                }
                let broker = broker.clone();
                list.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(broker).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Cable { addr, open, links }
    }

    /// Drops every connection and refuses new ones.
    async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn mend(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn readiness_follows_the_broker_connection() {
    let (app, mut connections, _) = observer_with(&[]).await;
    // host:port of the broker under test, from its URL.
    let broker = connections
        .amqp_url
        .rsplit_once('@')
        .map_or(connections.amqp_url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let cable = Cable::to(broker.clone()).await;
    connections.amqp_url = connections
        .amqp_url
        .replace(&broker, &cable.addr.to_string());
    let addr = free_addr();
    let pinflow = start(
        &connections,
        &key(),
        &[
            ("PINFLOW_METRICS_ADDR", &addr.to_string()),
            ("PINFLOW_LOG", "info"),
        ],
    );
    readiness(addr, 200, &["ready"], &pinflow).await;

    cable.cut().await;
    let down = [
        "consumer issuance 1: no broker session",
        "intake 1: no broker session",
        "relay 1: no broker session",
    ];
    readiness(addr, 503, &down, &pinflow).await;

    cable.mend();
    readiness(addr, 200, &["ready"], &pinflow).await;
    let samples = scrape(addr).await;
    assert!(
        value(
            &samples,
            "pinflow_broker_reconnects_total",
            &[("component", "relay")]
        ) >= 1.0,
        "the relay's reconnect is counted"
    );
    // And it works again: a request goes through.
    app.publish(&pin_request(&tax_code(84), "online")).await;
    app.take(&app.notify_queue("sms"), 1).await;
    let (status, _) = pinflow.terminate().await;
    assert!(status.success());
    app.stop().await;
}

/// An OTLP/HTTP collector that keeps every export request's body.
async fn collector() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    use axum::routing::post;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().await.push(body.to_vec());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, bodies)
}

fn bytes_of(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test]
async fn a_request_is_traced_from_the_caller_to_the_gateway_and_in_every_log_line() {
    traced_request(true).await;
}

/// Without an OTLP endpoint pinflow exports no span, and the trace still continues
/// the same way: into what the request causes and into every line logged for it.
#[tokio::test]
async fn without_span_export_the_trace_still_continues_into_outputs_and_logs() {
    traced_request(false).await;
}

/// A `pin.request` with the caller's trace context: the notifications continue the
/// caller's trace under pinflow's delivery span, every line logged while it is handled
/// carries both ids, no half reaches the log, and with `export` the delivery span
/// reaches an OTLP collector.
async fn traced_request(export: bool) {
    let (app, connections, _) = observer_with(&[]).await;
    let (otlp, exports) = collector().await;
    let endpoint = format!("http://{otlp}");
    let mut settings = vec![
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("PINFLOW_LOG_FORMAT", "json"),
        ("PINFLOW_LOG", "debug,lapin=info"),
    ];
    if export {
        settings.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint));
    } else {
        // Empty is unset, whatever the test's own environment holds.
        settings.push(("OTEL_EXPORTER_OTLP_ENDPOINT", ""));
        settings.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""));
    }
    let pinflow = start(&connections, &key(), &settings);
    app.wait_for_consumer(&app.work_queue()).await;
    let trace_id = "0af7651916cd43dd8448eb211c8031aa";
    let caller_span = "b7ad6b7169203344";
    let request = pin_request(&tax_code(85), "online");
    let mut properties = command_properties(&request);
    let mut headers = FieldTable::default();
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(traceparent.into()),
    );
    headers.insert(
        "tracestate".into(),
        AMQPValue::LongString("portal=desk7".into()),
    );
    properties = properties.with_headers(headers);
    let body = serde_json::to_vec(&request).expect("json");
    app.publish_raw("pin.request", &body, properties).await;

    let sms = app.take(&app.notify_queue("sms"), 1).await.remove(0);
    let post = app.take(&app.notify_queue("post"), 1).await.remove(0);
    let carried = sms
        .header("traceparent")
        .expect("traceparent on the notification");
    let parts: Vec<&str> = carried.split('-').collect();
    assert_eq!(
        parts[1], trace_id,
        "the caller's trace continues: {carried}"
    );
    let delivery_span = parts[2].to_owned();
    assert_ne!(delivery_span, caller_span, "pinflow's span is the parent");
    assert_eq!(
        post.header("traceparent").as_deref(),
        Some(carried.as_str())
    );
    assert_eq!(sms.header("tracestate").as_deref(), Some("portal=desk7"));

    // With export on, the delivery's span reaches the collector, in the caller's
    // trace; with it off, nothing is sent there.
    let deadline = tokio::time::Instant::now()
        + if export {
            PATIENCE
        } else {
            std::time::Duration::ZERO
        };
    let (trace_bytes, span_bytes) = (bytes_of(trace_id), bytes_of(&delivery_span));
    let exported = loop {
        let found = exports.lock().await.iter().any(|body| {
            let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
            has(&trace_bytes) && has(&span_bytes) && has(b"issuance pin.request")
        });
        if found || tokio::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(exported, export, "the delivery span was exported over OTLP");

    let (status, log) = pinflow.terminate().await;
    assert!(status.success(), "{log}");
    if !export {
        assert!(
            exports.lock().await.is_empty(),
            "nothing was sent over OTLP"
        );
    }
    let mut in_delivery = 0;
    for line in log.lines() {
        let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if line["message_id"] == request["id"] {
            in_delivery += 1;
            assert_eq!(line["trace_id"], trace_id, "{line}");
            assert_eq!(line["span_id"], delivery_span.as_str(), "{line}");
            assert_eq!(line["worker"], "issuance", "{line}");
        }
    }
    assert!(
        in_delivery > 0,
        "lines were logged while the request was handled:\n{log}"
    );
    for half in [&sms.body["data"]["secret"], &post.body["data"]["secret"]] {
        let half = half.as_str().expect("half");
        assert!(!log.contains(half), "a PIN half reached the log");
    }
    app.stop().await;
}
