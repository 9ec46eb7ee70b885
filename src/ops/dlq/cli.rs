//! `pinflow dlq …`: the arguments of the operator's dead-letter commands.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use crate::config::{Connections, Secrets, parse_duration};

/// Connections and identity shared by every `dlq` command.
#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    pub connections: Connections,
    #[command(flatten)]
    pub secrets: Secrets,
    /// Who is acting, for the audit (default: the OS user).
    #[arg(long)]
    pub operator: Option<String>,
}

/// Which dead letters a listing shows.
#[derive(Args, Default)]
pub struct Filter {
    /// Only this work queue (`NAME` or `pinflow.NAME`, as `pinflow workers` lists them) or dead-letter queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this message type.
    #[arg(long = "type")]
    pub message_type: Option<String>,
    /// Only reasons containing this text (case-insensitive).
    #[arg(long)]
    pub error: Option<String>,
    /// Only failures since this instant (RFC 3339) or this long ago (ISO 8601, `PT1H`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
}

/// Which dead letters an operation takes.
#[derive(Args)]
pub struct Selection {
    /// Message ids (as `dlq list` shows them).
    pub ids: Vec<String>,
    /// Every dead letter of a group (as `dlq groups` shows it).
    #[arg(long)]
    pub group: Option<String>,
    /// Every dead letter of a queue (with --type: of that type only).
    #[arg(long)]
    pub queue: Option<String>,
    /// With --queue: only this type.
    #[arg(long = "type", requires = "queue")]
    pub message_type: Option<String>,
    /// Every dead letter of the namespace.
    #[arg(long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// The `dlq` subcommands.
#[derive(Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: when it failed, queue, type, id, attempts, reason.
    List {
        #[command(flatten)]
        filter: Filter,
        /// At most this many lines.
        #[arg(long)]
        limit: Option<usize>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Dead letters grouped by queue, type and reason, with counts and first/last
    /// failure, so one cause is fixed and replayed as one.
    Groups {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// The whole message: envelope, headers (x-death and pinflow's own), and the data
    /// with every secret redacted.
    Show {
        /// The message id.
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Republish dead letters to the queue they failed on (confirmed, then removed from
    /// the dead-letter queue), keeping their ids.
    Replay {
        #[command(flatten)]
        selection: Selection,
        /// Show what would be replayed and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay messages already replayed --max-replays times.
        #[arg(long)]
        force: bool,
        /// Replays allowed per message before --force is needed.
        #[arg(long, env = "PINFLOW_MAX_REPLAYS", default_value_t = 3)]
        max_replays: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Fix a message that failed because of its content: edit its data (in $EDITOR, or
    /// from --data FILE), check it against the schema, replay only the edited copy.
    Edit {
        /// The message id.
        id: String,
        /// Take the new data from this JSON file instead of opening an editor.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Remove dead letters for good.
    Purge {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        common: Common,
    },
    /// Copy every dead letter to a JSON-lines file (removes nothing).
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

pub(super) fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 instant nor an ISO 8601 duration"))?;
    Ok(Utc::now() - chrono::Duration::from_std(ago).map_err(|e| e.to_string())?)
}
