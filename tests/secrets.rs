//! No secret rests in clear in a dead-letter queue, whoever made the dead letter: an
//! unrouted command and a message the broker dead-lettered at its delivery limit are
//! moved, sealed, by the intake. Keys rotate without stranding anything, and a first
//! start without a key makes one and keeps it.

mod common;

use std::time::Duration;

use common::issuance::IssuanceApp;
use common::{PATIENCE, TestApp, command, observer_with, start_app, tax_code};
use pinflow::contract::trace::TraceContext;
use pinflow::contract::{Carries, Notice, NotifyChannel, Outgoing};
use pinflow::seal::{KeyRing, OutboxKey};
use pinflow::sealing::{self, Place};
use serde_json::json;
use zeroize::Zeroizing;

const PIN: &str = "QWERTY7Z";

async fn wait_ready(app: &TestApp, queue: &str, n: u32) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.ready(queue).await != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} never had {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unrouted_command_rests_sealed_and_operators_still_see_it() {
    let (app, connections, rules) = observer_with(&[]).await;
    let app = start_app(app, connections, rules).await;
    let mistyped = command("pin.verfy", json!({ "tax_code": tax_code(61), "pin": PIN }));
    let body = serde_json::to_vec(&mistyped).unwrap();
    app.publish_raw("pin.verfy", &body, common::command_properties(&mistyped))
        .await;
    let unrouted = app.names.unrouted_dlq();
    wait_ready(&app, &unrouted, 1).await;
    let (ok, out, err) = app.pinflow(&["dlq", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("pin.verfy") && out.contains("no worker binds"),
        "{out}"
    );
    assert!(!out.contains(PIN));
    let letter = app.take(&unrouted, 1).await.remove(0);
    assert!(
        !String::from_utf8_lossy(&letter.raw).contains(PIN),
        "sealed at rest"
    );
    assert_eq!(
        letter.body["data"]["tax_code"],
        tax_code(61),
        "the rest stays readable"
    );
    assert_eq!(app.ready(&app.names.intake()).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_message_the_broker_dead_letters_at_its_limit_rests_sealed() {
    let (app, connections, rules) = observer_with(&["--delivery-limit", "1"]).await;
    let verify = command(
        "pin.verify",
        json!({ "tax_code": tax_code(62), "pin": PIN }),
    );
    app.publish_with(&verify, Some("portal.replies"), Some("c-1"))
        .await;
    // A worker that crashes on it every time, as the broker sees it: delivered and
    // handed back until the broker's delivery limit dead-letters it.
    app.hand_back_until_dead_lettered(&app.work_queue()).await;
    wait_ready(&app, &app.names.intake(), 1).await;
    let app = start_app(app, connections, rules).await;
    wait_ready(&app, &app.dlq(), 1).await;
    let letter = app.take(&app.dlq(), 1).await.remove(0);
    assert!(
        !String::from_utf8_lossy(&letter.raw).contains(PIN),
        "sealed at rest"
    );
    let reason = letter.header("x-pinflow-error").unwrap_or_default();
    assert!(
        reason.starts_with("dead-lettered by the broker"),
        "{reason}"
    );
    assert_eq!(app.ready(&app.names.intake()).await, 0);
    app.stop().await;
}

fn operator(app: &TestApp, key_file: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .args(args)
        .env("PINFLOW_AMQP_URL", &app.amqp_url)
        .env("PINFLOW_DATABASE_URL", &app.database_url)
        .env("PINFLOW_NAMESPACE", &app.namespace)
        .env_remove("PINFLOW_OUTBOX_KEY")
        .env("PINFLOW_OUTBOX_KEY_FILE", key_file)
        .env("PINFLOW_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn rotating_and_retiring_a_key_strands_no_outbox_row_and_no_dead_letter() {
    let (app, connections, rules) = observer_with(&[]).await;
    let dir = std::env::temp_dir().join(format!("pinflow-keys-{}", app.namespace));
    let key_file = dir.join("outbox.keys");
    let old = OutboxKey::generate();
    let old_id = old.key_id();
    pinflow::config::append_key(&key_file, &old).unwrap();
    let old_ring = KeyRing::single(OutboxKey::from_base64(&old.to_base64()).unwrap());

    // Something sealed under the old key in the outbox and in a dead letter.
    let notice = Notice {
        channel: NotifyChannel::Sms,
        template: "pin_first_half",
        to: json!("+393331234567"),
        params: json!({}),
        tax_code: tax_code(63),
        credential_id: None,
        secret: Some((Carries::FirstHalf, Zeroizing::new(PIN.to_owned()))),
    };
    let outgoing = Outgoing::notification(notice, chrono::Utc::now());
    let mut conn = app.pool.acquire().await.unwrap();
    pinflow::store::outbox::insert_all(
        &mut conn,
        &[outgoing],
        &TraceContext::start(),
        &old_ring,
        None,
    )
    .await
    .unwrap();
    drop(conn);
    let letter = command(
        "pin.verify",
        json!({ "tax_code": tax_code(63), "pin": PIN }),
    );
    let letter_id = letter["id"].as_str().unwrap().to_owned();
    let properties = common::command_properties(&letter);
    pinflow::broker::dead_letter::publish_sealed(
        &app.channel,
        &old_ring,
        &app.dlq(),
        &serde_json::to_vec(&letter).unwrap(),
        properties,
        PATIENCE,
    )
    .await
    .unwrap();

    let (ok, out, err) = operator(&app, &key_file, &["keys", "rotate"]);
    assert!(ok, "{err}");
    assert!(out.contains("added key"), "{out}");
    let (ok, out, _) = operator(&app, &key_file, &["keys", "list"]);
    assert!(
        ok && out.contains(&format!("{old_id}: 1 outbox rows, 1 dead letters")),
        "{out}"
    );
    let (ok, out, err) = operator(&app, &key_file, &["keys", "retire", &old_id]);
    assert!(ok, "{err}");
    assert!(
        out.contains("re-sealed 1 outbox rows and 1 dead letters"),
        "{out}"
    );
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !text.contains(&old.to_base64()),
        "the old key is gone from the file"
    );
    let new_ring = pinflow::config::parse_keys(&text).unwrap();
    assert_eq!(new_ring.ids().len(), 1);

    // Both still open with the new key alone.
    let dead = app.take(&app.dlq(), 1).await.remove(0);
    let place = Place {
        message_id: &letter_id,
        queue: &app.dlq(),
    };
    let opened = sealing::unseal_body(&dead.raw, &new_ring, &place).unwrap();
    assert!(String::from_utf8_lossy(&opened).contains(PIN));
    let mut app = app;
    app.key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    let app = start_app(app, connections, rules).await;
    let sms = app.take(&app.notify_queue("sms"), 1).await.remove(0);
    assert_eq!(
        sms.body["data"]["secret"], PIN,
        "the outbox row was published with the new key"
    );
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_first_start_without_a_key_makes_one_and_a_restart_reuses_it() {
    let (app, connections, _) = observer_with(&[]).await;
    let dir = std::env::temp_dir().join(format!("pinflow-data-{}", app.namespace));
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"))
            .arg("run")
            .env("PINFLOW_AMQP_URL", &connections.amqp_url)
            .env("PINFLOW_DATABASE_URL", &connections.database_url)
            .env("PINFLOW_NAMESPACE", &connections.namespace)
            .env_remove("PINFLOW_OUTBOX_KEY")
            .env_remove("PINFLOW_OUTBOX_KEY_FILE")
            .env("PINFLOW_DATA_DIR", &dir)
            .env("PINFLOW_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let stop = |mut child: std::process::Child| {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().unwrap()
    };
    let file = dir.join("outbox.keys");
    let first = start();
    app.wait_for_consumer(&app.work_queue()).await;
    assert!(stop(first).success());
    let made = std::fs::read_to_string(&file).expect("a key file was made");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let second = start();
    app.wait_for_consumer(&app.work_queue()).await;
    assert!(stop(second).success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        made,
        "the same key, reused"
    );
    assert_eq!(made.lines().count(), 1);
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn weak_hashing_and_show_secrets_need_an_explicit_setting() {
    let (app, _, _) = observer_with(&[]).await;
    let run = |extra: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"));
        command
            .arg("run")
            .env("PINFLOW_AMQP_URL", &app.amqp_url)
            .env("PINFLOW_DATABASE_URL", &app.database_url)
            .env("PINFLOW_NAMESPACE", &app.namespace)
            .env("PINFLOW_OUTBOX_KEY", &app.key)
            .env("PINFLOW_ARGON2_M_COST", "256")
            .env("PINFLOW_ARGON2_T_COST", "1")
            .env_remove("PINFLOW_DEV_ALLOW_WEAK_ARGON2");
        for (name, value) in extra {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let refused = run(&[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("below the OWASP minimum"));

    let (ok, _, err) = app.pinflow(&["watch", "--show-secrets"]);
    assert!(!ok && err.contains("PINFLOW_ALLOW_SHOW_SECRETS"), "{err}");
    assert_eq!(
        app.count("select count(*) from operator_audit where action = 'watch'")
            .await,
        0
    );
    // Allowed on this installation: it runs (until a signal) and its use is audited.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .args(["watch", "--show-secrets", "--operator", "tester"])
        .env("PINFLOW_AMQP_URL", &app.amqp_url)
        .env("PINFLOW_DATABASE_URL", &app.database_url)
        .env("PINFLOW_NAMESPACE", &app.namespace)
        .env("PINFLOW_ALLOW_SHOW_SECRETS", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app
        .count("select count(*) from operator_audit where action = 'watch' and operator = 'tester'")
        .await
        < 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the use of --show-secrets is audited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    app.stop().await;
}
