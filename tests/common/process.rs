//! `pinflow run` as a child process, with everything it writes to standard error
//! captured (for leak scans).

use std::process::Stdio;
use std::sync::Arc;

use pinflow::config::Connections;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// A running `pinflow run` and everything it wrote to standard error.
pub struct Pinflow {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

pub fn key() -> String {
    pinflow::seal::OutboxKey::generate().to_base64()
}

pub fn start(connections: &Connections, key: &str, extra_env: &[(&str, &str)]) -> Pinflow {
    start_with(connections, key, &[], extra_env)
}

/// Like `start`, with arguments after `run` (for example `--worker NAME`).
pub fn start_with(
    connections: &Connections,
    key: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> Pinflow {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pinflow"));
    command
        .arg("run")
        .args(args)
        .env("PINFLOW_AMQP_URL", &connections.amqp_url)
        .env("PINFLOW_DATABASE_URL", &connections.database_url)
        .env("PINFLOW_NAMESPACE", &connections.namespace)
        .env("PINFLOW_OUTBOX_KEY", key)
        .env("PINFLOW_ARGON2_M_COST", "256")
        .env("PINFLOW_ARGON2_T_COST", "1")
        .env("PINFLOW_DEV_ALLOW_WEAK_ARGON2", "true")
        .env("PINFLOW_LOG", "trace")
        .env_remove("PINFLOW_FAILPOINTS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start pinflow");
    let mut stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .await
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Pinflow { child, log, reader }
}

impl Pinflow {
    pub async fn wait_exit(mut self) -> (std::process::ExitStatus, String) {
        let Ok(status) = tokio::time::timeout(super::PATIENCE, self.child.wait()).await else {
            let log = self.log.lock().await.clone();
            let start = log.len().saturating_sub(6000);
            let start = (start..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(log.len());
            panic!(
                "pinflow did not exit in time; the end of its log:\n{}",
                &log[start..]
            );
        };
        let status = status.expect("wait");
        let _ = self.reader.await;
        let log = self.log.lock().await.clone();
        (status, log)
    }

    pub async fn terminate(self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY-free: kill(1) is the plain way to send SIGTERM to a child.
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill");
        self.wait_exit().await
    }
}

impl Pinflow {
    /// SIGKILL, no goodbye; returns what it logged.
    pub async fn kill(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = self.reader.await;
        self.log.lock().await.clone()
    }
}
