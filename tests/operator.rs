//! The operator's dead-letter tooling, used as an operator would: the `pinflow dlq`
//! and `pinflow credential` commands against a running pinflow.

mod common;

use common::issuance::{IssuanceApp, pin_request};
use common::{TestApp, command, spawn_app, spawn_app_with, tax_code};
use serde_json::{Value, json};

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

async fn dead_letter_count(app: &TestApp) -> u32 {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    app.channel
        .queue_declare(app.dlq().into(), passive, Default::default())
        .await
        .expect("dlq")
        .message_count()
}

async fn wait_for_dead_letters(app: &TestApp, n: u32) {
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while dead_letter_count(app).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {n} dead letters"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn refuse_database(app: &TestApp, refuse: bool) {
    let admin = sqlx::PgPool::connect(&common::services().await.database_url)
        .await
        .unwrap();
    let db = &app.database_name;
    sqlx::query(&format!(
        "alter database {db} allow_connections {}",
        !refuse
    ))
    .execute(&admin)
    .await
    .unwrap();
    if refuse {
        sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()")
            .bind(db)
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
}

#[tokio::test]
async fn list_groups_and_show_report_dead_letters_without_taking_them_or_their_secrets() {
    let app = spawn_app().await;
    let secret_pin = "K7M2P9QX";
    let verify = command(
        "pin.verify",
        json!({ "tax_code": tax_code(80), "pin": secret_pin }),
    );
    app.publish(&verify).await;
    let mut broken = pin_request(&tax_code(81), "online");
    broken["data"]["contacts"] = json!({});
    app.publish(&broken).await;
    app.publish(&broken.clone().tap_id("second-broken")).await;
    wait_for_dead_letters(&app, 3).await;

    let (ok, out, err) = app.pinflow(&["dlq", "list", "--json"]);
    assert!(ok, "{err}");
    let listed = json_lines(&out);
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["id"], verify["id"], "in queue order");
    assert!(listed[0]["reason"].as_str().unwrap().contains("reply_to"));
    assert!(
        listed[1]["reason"]
            .as_str()
            .unwrap()
            .contains("schema violation")
    );
    let (_, again, _) = app.pinflow(&["dlq", "list", "--json"]);
    assert_eq!(again, out, "reading changes nothing and keeps the order");
    assert_eq!(dead_letter_count(&app).await, 3);

    let (_, filtered, _) = app.pinflow(&[
        "dlq",
        "list",
        "--json",
        "--error",
        "SCHEMA",
        "--type",
        "pin.request",
        "--limit",
        "1",
    ]);
    assert_eq!(json_lines(&filtered).len(), 1);

    let (ok, groups, _) = app.pinflow(&["dlq", "groups", "--json"]);
    assert!(ok);
    let groups = json_lines(&groups);
    assert_eq!(groups.len(), 2);
    assert_eq!(
        groups[0]["count"], 2,
        "the two schema violations are one group"
    );

    let id = verify["id"].as_str().unwrap();
    let (ok, shown, _) = app.pinflow(&["dlq", "show", id]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["body"]["data"]["pin"], "<redacted>");
    assert_eq!(shown["headers"]["x-pinflow-routing-key"], "pin.verify");
    for text in [&out, &serde_json::to_string(&shown).unwrap()] {
        assert!(!text.contains(secret_pin), "a secret printed");
    }
    let (ok, _, err) = app.pinflow(&["dlq", "show", "no-such-id"]);
    assert!(
        !ok && err.contains("no dead letter with id no-such-id"),
        "{err}"
    );
    app.stop().await;
}

trait TapId {
    fn tap_id(self, id: &str) -> Value;
}

impl TapId for Value {
    fn tap_id(mut self, id: &str) -> Value {
        self["id"] = json!(id);
        self
    }
}

#[tokio::test]
async fn a_replay_after_the_cause_is_fixed_succeeds_once() {
    let app = spawn_app_with(&["--retry-max-attempts", "1"]).await;
    refuse_database(&app, true).await;
    let request = pin_request(&tax_code(82), "online");
    app.publish(&request).await;
    wait_for_dead_letters(&app, 1).await;
    refuse_database(&app, false).await;

    let (ok, out, err) = app.pinflow(&["dlq", "replay", "--all", "--dry-run"]);
    assert!(ok && out.contains("would replay"), "{out}{err}");
    assert_eq!(
        dead_letter_count(&app).await,
        1,
        "a dry run changes nothing"
    );
    let (ok, _, err) = app.pinflow(&["dlq", "replay", "--all"]);
    assert!(
        !ok && err.contains("--yes"),
        "no prompt without a terminal: {err}"
    );

    let (ok, _, err) = app.pinflow(&["dlq", "replay", "--all", "--yes"]);
    assert!(ok, "{err}");
    app.take(&app.notify_queue("sms"), 1).await;
    app.take(&app.notify_queue("post"), 1).await;
    assert_eq!(dead_letter_count(&app).await, 0);

    // The same message again (as if replayed twice): its id is known, nothing happens.
    app.publish(&request).await;
    app.barrier().await;
    assert!(
        app.drain(&app.notify_queue("sms")).await.is_empty(),
        "no second SMS"
    );
    assert_eq!(app.count("select count(*) from credentials").await, 1);
    let audit: (String, Vec<String>, String) = sqlx::query_as(
        "select operator, message_ids, outcome from operator_audit where action = 'replay'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        audit,
        (
            "test-operator".to_owned(),
            vec![request["id"].as_str().unwrap().to_owned()],
            "replayed".to_owned()
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_not_replayed_for_ever() {
    let app = spawn_app().await;
    let verify = command(
        "pin.verify",
        json!({ "tax_code": tax_code(83), "pin": "ABCDEFGH" }),
    );
    app.publish(&verify).await;
    wait_for_dead_letters(&app, 1).await;
    let id = verify["id"].as_str().unwrap();
    for round in 1..=2 {
        let (ok, _, err) = app.pinflow(&["dlq", "replay", id, "--yes", "--max-replays", "2"]);
        assert!(ok, "round {round}: {err}");
        wait_for_dead_letters(&app, 1).await;
        let (_, out, _) = app.pinflow(&["dlq", "list", "--json"]);
        assert_eq!(
            json_lines(&out)[0]["replays"],
            round,
            "the replay counter survives the new failure"
        );
    }
    let (_, _, err) = app.pinflow(&["dlq", "replay", id, "--yes", "--max-replays", "2"]);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(dead_letter_count(&app).await, 1, "refused, and still there");
    let (ok, _, err) = app.pinflow(&[
        "dlq",
        "replay",
        id,
        "--yes",
        "--max-replays",
        "2",
        "--force",
    ]);
    assert!(ok, "{err}");
    wait_for_dead_letters(&app, 1).await;
    app.stop().await;
}

#[tokio::test]
async fn purge_removes_exactly_what_it_names_and_edit_replays_only_the_fix() {
    let app = spawn_app().await;
    let mut broken = pin_request(&tax_code(84), "online");
    broken["data"]["contacts"] = json!({});
    let others: Vec<Value> = (0..2)
        .map(|n| {
            command(
                "pin.verify",
                json!({ "tax_code": tax_code(85 + n), "pin": "ABCDEFGH" }),
            )
        })
        .collect();
    app.publish(&broken).await;
    for other in &others {
        app.publish(other).await;
    }
    wait_for_dead_letters(&app, 3).await;

    let (ok, _, err) = app.pinflow(&["dlq", "purge", others[0]["id"].as_str().unwrap(), "--yes"]);
    assert!(ok, "{err}");
    let (_, out, _) = app.pinflow(&["dlq", "list", "--json"]);
    let ids: Vec<Value> = json_lines(&out).iter().map(|l| l["id"].clone()).collect();
    assert_eq!(ids, vec![broken["id"].clone(), others[1]["id"].clone()]);

    let fixed = std::env::temp_dir().join(format!("pinflow-fix-{}.json", app.namespace));
    let edit = || {
        app.pinflow(&[
            "dlq",
            "edit",
            broken["id"].as_str().unwrap(),
            "--data",
            fixed.to_str().unwrap(),
            "--yes",
        ])
    };
    let mut data = broken["data"].clone();
    std::fs::write(&fixed, json!({ "wrong": true }).to_string()).unwrap();
    let (ok, _, err) = edit();
    assert!(
        !ok && err.contains("schema"),
        "an edit that breaks the schema is refused: {err}"
    );
    data["contacts"] = json!({ "mobile": "+4915112345678" });
    std::fs::write(&fixed, data.to_string()).unwrap();
    let (ok, _, err) = edit();
    assert!(ok, "{err}");
    let sms = app.take(&app.notify_queue("sms"), 1).await.remove(0);
    assert_eq!(sms.body["data"]["to"], "+4915112345678");
    app.barrier().await;
    let (_, out, _) = app.pinflow(&["dlq", "list", "--json"]);
    assert_eq!(
        json_lines(&out).len(),
        1,
        "the original is gone, only the untouched one stays"
    );
    let edits: i64 = sqlx::query_scalar("select count(*) from operator_audit where action = 'edit' and detail ? 'original' and detail ? 'edited'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(edits, 1);
    let purges: i64 =
        sqlx::query_scalar("select count(*) from operator_audit where action = 'purge'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(purges, 1);

    let export = std::env::temp_dir().join(format!("pinflow-export-{}.jsonl", app.namespace));
    let (ok, _, _) = app.pinflow(&["dlq", "export", "--out", export.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(std::fs::read_to_string(&export).unwrap().lines().count(), 1);
    assert_eq!(dead_letter_count(&app).await, 1, "export removes nothing");
    let _ = std::fs::remove_file(&fixed);
    let _ = std::fs::remove_file(&export);
    app.stop().await;
}

#[tokio::test]
async fn the_support_desk_sees_state_and_history_but_no_secret() {
    let app = spawn_app().await;
    let code = tax_code(87);
    app.publish(&pin_request(&code, "online")).await;
    app.take(&app.notify_queue("sms"), 1).await;
    let (ok, out, err) = app.pinflow(&["credential", "show", &code]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["credentials"][0]["status"], "issued");
    assert_eq!(
        shown["credentials"][0]["contacts"]["mobile"],
        "+49********678"
    );
    assert_eq!(shown["history"][0]["action"], "pin.issued");
    assert!(!out.contains("argon2") && !out.contains("+4915112345678"));
    let (ok, _, err) = app.pinflow(&["credential", "show", &tax_code(88)]);
    assert!(!ok && err.contains("no credential"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn a_replay_killed_half_way_loses_nothing() {
    let app = spawn_app().await;
    let total = 300;
    let mut ids = std::collections::BTreeSet::new();
    for n in 0..total {
        // RPC commands without reply_to fail every time: each replayed one comes back.
        let verify = command(
            "pin.verify",
            json!({ "tax_code": tax_code(n % 1000), "pin": "ABCDEFGH" }),
        );
        ids.insert(verify["id"].as_str().unwrap().to_owned());
        app.publish(&verify).await;
    }
    wait_for_dead_letters(&app, total).await;

    let mut replay = tokio::process::Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .args(["dlq", "replay", "--all", "--yes"])
        .env("PINFLOW_AMQP_URL", &app.amqp_url)
        .env("PINFLOW_DATABASE_URL", &app.database_url)
        .env("PINFLOW_NAMESPACE", &app.namespace)
        .env("PINFLOW_OUTBOX_KEY", &app.key)
        .env("PINFLOW_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL) once it reports its first hundred replays.
    let stderr = replay.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let progress = tokio::time::timeout(common::PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("replayed 100/") {
                return true;
            }
        }
        false
    });
    assert!(
        progress.await.unwrap_or(false),
        "the replay reported progress"
    );
    assert!(
        replay.try_wait().unwrap().is_none(),
        "killed half way, not after the end"
    );
    replay.start_kill().unwrap();
    let _ = replay.wait().await;

    // Everything settles back in the dead-letter queue: taken-but-unacknowledged ones
    // return when the killed connection closes, replayed ones fail again.
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    loop {
        let (ok, out, _) = app.pinflow(&["dlq", "list", "--json"]);
        assert!(ok);
        let listed = json_lines(&out);
        let seen: std::collections::BTreeSet<String> = listed
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect();
        if seen == ids {
            assert!(
                listed.len() <= ids.len() + 1,
                "at most the one in flight at the kill is doubled"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lost: {} of {total}",
            ids.difference(&seen).count()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn clear_errors_for_a_gone_target_queue_an_empty_queue_and_an_unreachable_broker() {
    let (app, _, _) = common::observer_with(&[]).await;
    let (ok, _, err) = app.pinflow(&["dlq", "list"]);
    assert!(ok && err.contains("no dead letters"), "{err}");

    // A dead letter whose work queue has since been removed. (Replay takes its
    // target from the dead-letter queue's name, never from a header.)
    let orphan = command("pin.request", json!({}));
    let properties = common::command_properties(&orphan);
    pinflow::broker::publish::publish_routed(
        &app.channel,
        "",
        &app.dlq(),
        &serde_json::to_vec(&orphan).unwrap(),
        properties,
        common::PATIENCE,
    )
    .await
    .unwrap();
    app.channel
        .queue_delete(app.work_queue().into(), Default::default())
        .await
        .unwrap();
    wait_for_dead_letters(&app, 1).await;
    let (_, _, err) = app.pinflow(&["dlq", "replay", "--all", "--yes"]);
    assert!(err.contains("no longer exists"), "{err}");
    assert_eq!(dead_letter_count(&app).await, 1, "kept where it was");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .args(["dlq", "list"])
        .env("PINFLOW_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach the broker"));
    app.stop().await;
}
