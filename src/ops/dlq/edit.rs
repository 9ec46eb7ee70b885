//! `pinflow dlq edit`: fix a message whose content was wrong, check the fix against
//! its schema, and replay only the edited copy; the original and the edit are audited.

use std::time::Duration;

use serde_json::Value;

use super::replay::{Outcome, ReplayPolicy, replay, unseal};

/// `pinflow dlq edit`.
pub async fn run_edit(
    common: super::cli::Common,
    id: String,
    data: Option<std::path::PathBuf>,
    yes: bool,
    workers: &[crate::manifest::Description],
) -> anyhow::Result<()> {
    use super::session::{ask, close_connection, open_session};
    use anyhow::Context as _;
    let keys = common.secrets.key_ring().ok();
    let (connection, channel, names) = open_session(&common).await?;
    let letters = super::read_all(
        &channel,
        &names,
        &super::dead_letter_queues(&names, workers),
    )
    .await?;
    let letter = letters
        .iter()
        .find(|l| l.id == id)
        .with_context(|| format!("no dead letter with id {id}"))?;
    let original = unseal(letter, keys.as_ref()).map_err(|e| anyhow::anyhow!(e))?;
    let mut event: Value = serde_json::from_slice(&original)
        .context("the dead letter is not JSON; edit cannot help it, purge it")?;
    let new_data: Value = match data {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .context("the data file is not JSON")?,
        None => edit_in_editor(&event["data"]).await?,
    };
    let message_type = event["type"].as_str().unwrap_or_default().to_owned();
    crate::contract::schemas::Schemas::embedded()
        .check(&message_type, &new_data)
        .map_err(|e| {
            anyhow::anyhow!(
                "the edited data breaks the {message_type} schema at {e}; nothing replayed"
            )
        })?;
    let mut before = event.clone();
    event["data"] = new_data;
    if !ask(&format!("replay the edited {id}?"), yes)? {
        close_connection(connection).await;
        return Ok(());
    }
    let body = serde_json::to_vec(&event)?;
    let policy = ReplayPolicy {
        max_replays: u32::MAX,
        force: true,
        keys: keys.as_ref(),
        confirm_timeout: Duration::from_secs(10),
    };
    let outcome = replay(&channel, &names, letter, Some(body), &policy).await?;
    let pool = crate::store::connect(&common.connections.database_url, 1).await?;
    let mut after = event.clone();
    super::redact(&mut before);
    super::redact(&mut after);
    let operator = super::audit::operator(common.operator.as_deref());
    let text = match &outcome {
        Outcome::Replayed => "replayed edited copy".to_owned(),
        Outcome::Refused(reason) => format!("refused: {reason}"),
    };
    super::audit::record(
        &pool,
        &operator,
        "edit",
        letter.work_queue.as_deref(),
        std::slice::from_ref(&id),
        &text,
        serde_json::json!({ "original": before, "edited": after }),
    )
    .await?;
    super::replay::report(letter, &outcome);
    close_connection(connection).await;
    pool.close().await;
    Ok(())
}

/// A file that holds personal data: created owner-only, removed when dropped.
struct PrivateFile(std::path::PathBuf);

impl PrivateFile {
    fn create(contents: &str) -> anyhow::Result<PrivateFile> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = std::env::temp_dir().join(format!("pinflow-edit-{}.json", uuid::Uuid::new_v4()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let guard = PrivateFile(path);
        file.write_all(contents.as_bytes())?;
        Ok(guard)
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Opens the data in `$EDITOR` from a private temporary file, which is removed on every
/// way out, Ctrl-C included (pinflow handles the signal, so it unwinds instead of
/// dying with the file on disk).
async fn edit_in_editor(data: &Value) -> anyhow::Result<Value> {
    use anyhow::Context as _;
    let editor = std::env::var("EDITOR")
        .or_else(|_| std::env::var("VISUAL"))
        .context("set $EDITOR or pass --data FILE")?;
    let file = PrivateFile::create(&serde_json::to_string_pretty(data)?)?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file.0)
        .spawn()?;
    let status = tokio::select! {
        status = child.wait() => status?,
        _ = tokio::signal::ctrl_c() => {
            let _ = child.kill().await;
            anyhow::bail!("interrupted; nothing replayed");
        }
    };
    anyhow::ensure!(
        status.success(),
        "the editor exited with {status}; nothing replayed"
    );
    let text = std::fs::read_to_string(&file.0)?;
    serde_json::from_str(&text).context("the edited data is not JSON; nothing replayed")
}
