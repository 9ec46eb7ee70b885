//! Publishing a benchmark's commands with confirms, and following them until each is
//! complete: counting what the gateway receives by phase (or, for a type that causes
//! nothing, its inbox rows), and giving up when nothing arrives for `STALL`.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeBounds;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lapin::Channel;
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::STALL;
use super::ceiling::traced;
use super::commands::Commands;
use super::database::OURS;
use super::gateway::{Output, Phase};
use super::prelude::Facts;
use super::running::Running;
use crate::broker::publish;
use crate::manifest::Binding;

/// Where commands go and how they are published.
#[derive(Clone)]
pub(super) struct Outbound {
    /// A channel in confirm mode.
    pub channel: Channel,
    /// The commands exchange.
    pub exchange: String,
    /// The reply queue, for an RPC type.
    pub reply_to: Option<String>,
    /// How long to wait for a confirm.
    pub confirm_timeout: Duration,
}

/// When each command was published.
pub(super) type Published = Vec<Instant>;

/// Publishes commands `0..n` with confirms (a window of 256 outstanding), at most
/// `rate` a second when given. Returns when each was published.
pub(super) async fn publish_commands(
    out: Outbound,
    commands: Arc<Commands>,
    n: u32,
    rate: Option<f64>,
) -> anyhow::Result<Published> {
    let window = 256;
    let mut pending = std::collections::VecDeque::new();
    let mut published = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(f64::from(i) / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let (id, body, traceparent) = commands.build(i)?;
        let reply_to = out.reply_to.as_deref();
        let props = traced(&id, &commands.message_type, reply_to, Some(&traceparent));
        published.push(Instant::now());
        let confirm = publish::start(
            &out.channel,
            &out.exchange,
            &commands.message_type,
            &body,
            props,
            true,
        )
        .await?;
        drop(body);
        pending.push_back(confirm);
        if pending.len() >= window
            && let Some(confirm) = pending.pop_front()
        {
            check(publish::confirmed(confirm, out.confirm_timeout).await?)?;
        }
    }
    for confirm in pending {
        check(publish::confirmed(confirm, out.confirm_timeout).await?)?;
    }
    Ok(published)
}

/// From `started` until the last of `published`.
pub(super) fn sent_for(started: Instant, published: &[Instant]) -> Duration {
    published.last().map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    })
}

/// Fails when a command was returned unrouted.
fn check(confirmed: publish::Confirmed) -> anyhow::Result<()> {
    match confirmed {
        publish::Confirmed::Routed => Ok(()),
        publish::Confirmed::Returned(_) => anyhow::bail!("a command was not routed"),
    }
}

/// Counts what arrives for one phase and when each command was complete.
pub(super) struct Tracker {
    /// The phase of the commands counted.
    phase: Phase,
    /// Outputs each command causes.
    per_command: u32,
    /// What each command causes, by routing key.
    pub(super) causes: Vec<String>,
    /// Outputs still to come, by command.
    remaining: Vec<u32>,
    /// When each command was complete.
    done_at: Vec<Option<Instant>>,
    /// Commands complete.
    pub(super) completed: u32,
    /// Outputs counted, by routing key.
    pub(super) outputs: BTreeMap<String, u64>,
    /// Outputs of no command of the phase, or not listed, by routing key.
    pub(super) unexpected: BTreeMap<String, u64>,
    /// When something last arrived.
    pub(super) last_progress: Instant,
}

impl Tracker {
    /// For commands `0..n` of `phase`, each causing what `binding` lists.
    pub(super) fn new(phase: Phase, binding: &Binding, n: u32) -> Tracker {
        let per_command = binding.causes.len() as u32;
        Tracker {
            phase,
            per_command,
            causes: binding.causes.iter().map(|c| (*c).to_owned()).collect(),
            remaining: vec![per_command; n as usize],
            done_at: vec![None; n as usize],
            completed: 0,
            outputs: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            last_progress: Instant::now(),
        }
    }

    /// The commands tracked.
    pub(super) fn n(&self) -> u32 {
        self.remaining.len() as u32
    }

    /// Counts one output.
    pub(super) fn add(&mut self, output: &Output) {
        self.last_progress = Instant::now();
        let index = match output.trace {
            Some((phase, index))
                if phase == self.phase && (index as usize) < self.remaining.len() =>
            {
                index as usize
            }
            _ => {
                *self
                    .unexpected
                    .entry(format!("{} (no command of this phase)", output.kind))
                    .or_default() += 1;
                return;
            }
        };
        if !self.causes.contains(&output.kind) || self.remaining[index] == 0 {
            *self.unexpected.entry(output.kind.clone()).or_default() += 1;
            return;
        }
        *self.outputs.entry(output.kind.clone()).or_default() += 1;
        self.remaining[index] -= 1;
        if self.remaining[index] == 0 {
            self.done_at[index] = Some(output.at);
            self.completed += 1;
        }
    }

    /// Whether every command is complete.
    fn finished(&self) -> bool {
        self.completed == self.n()
    }

    /// When the last command was complete.
    pub(super) fn last_done(&self) -> Option<Instant> {
        self.done_at.iter().flatten().max().copied()
    }

    /// Each complete command's latency: from its publication (`published`, by
    /// command) until it was complete; only the commands published within `window`.
    pub(super) fn latencies(
        &self,
        published: &[Instant],
        window: impl RangeBounds<Instant>,
    ) -> Vec<Duration> {
        self.done_at
            .iter()
            .zip(published)
            .filter(|(_, sent)| window.contains(*sent))
            .filter_map(|(done, sent)| done.map(|d| d.saturating_duration_since(*sent)))
            .collect()
    }

    /// What has been counted, for an error.
    fn summary(&self) -> String {
        format!(
            "{} of {} commands complete; outputs {:?}; unexpected {:?}",
            self.completed,
            self.n(),
            self.outputs,
            self.unexpected
        )
    }
}

/// Inbox rows looked up in one poll: many more than complete between two polls, and
/// few enough for a short index scan.
const WINDOW: usize = 512;

/// For a type that causes nothing: a command is complete when its inbox row is
/// committed, at that row's time (its transaction's start). Each poll looks up, by the
/// inbox's key, the earliest commands not yet seen, at most `WINDOW` of them, so a poll
/// costs the same at 100,000 commands as at 10,000 and the benchmark's own reads do
/// not grow with the run.
pub(super) struct Inbox<'a> {
    /// The benchmark's database.
    pool: &'a PgPool,
    /// The work queue that takes the type.
    queue: String,
    /// The commands, for their ids.
    commands: &'a Commands,
    /// Every command before this one is complete.
    next: u32,
}

impl<'a> Inbox<'a> {
    /// Completion of `commands`, taken from `queue` by the workers.
    pub(super) fn new(pool: &'a PgPool, queue: String, commands: &'a Commands) -> Inbox<'a> {
        Inbox {
            pool,
            queue,
            commands,
            next: 0,
        }
    }

    /// Marks complete, at their rows' times, the commands of the window whose inbox
    /// rows are committed; returns how many.
    async fn poll(&mut self, tracker: &mut Tracker) -> anyhow::Result<u32> {
        let ids: HashMap<String, u32> = (self.next..tracker.n())
            .filter(|&i| tracker.done_at[i as usize].is_none())
            .take(WINDOW)
            .map(|i| (self.commands.id(i), i))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let wanted: Vec<&str> = ids.keys().map(String::as_str).collect();
        let (origin, wall) = (Instant::now(), chrono::Utc::now());
        let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(&format!(
            "{OURS} select message_id, processed_at from inbox
             where queue = $1 and message_id = any($2)",
        ))
        .bind(&self.queue)
        .bind(&wanted)
        .fetch_all(self.pool)
        .await?;
        let mut found = 0;
        for (id, at) in rows {
            let Some(&i) = ids.get(&id) else { continue };
            let done = &mut tracker.done_at[i as usize];
            if done.is_none() {
                let ago = (wall - at).to_std().unwrap_or_default();
                *done = Some(origin.checked_sub(ago).unwrap_or(origin));
                found += 1;
            }
        }
        tracker.completed += found;
        while tracker
            .done_at
            .get(self.next as usize)
            .is_some_and(Option::is_some)
        {
            self.next += 1;
        }
        Ok(found)
    }
}

/// Waits until every command of the tracker's phase is complete, taking in what the
/// gateway receives (and handing what the prelude asked for to `facts`). Fails when
/// pinflow stops or nothing arrives for `STALL`.
pub(super) async fn wait(
    outputs: &mut mpsc::UnboundedReceiver<Output>,
    tracker: &mut Tracker,
    running: &mut Running,
    facts: Option<&mut Facts>,
    inbox: Option<&mut Inbox<'_>>,
) -> anyhow::Result<()> {
    wait_all(outputs, &mut [tracker], 1, running, facts, inbox).await
}

/// Waits until every command of the first `needed` trackers is complete, handing each
/// output to the tracker of its phase (one of no tracker's phase to the first, which
/// counts it as unexpected). `inbox` completes the trackers of a type that causes
/// nothing. Fails when pinflow stops or nothing arrives for `STALL`.
pub(super) async fn wait_all(
    outputs: &mut mpsc::UnboundedReceiver<Output>,
    trackers: &mut [&mut Tracker],
    needed: usize,
    running: &mut Running,
    mut facts: Option<&mut Facts>,
    mut inbox: Option<&mut Inbox<'_>>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        if trackers.iter().take(needed).all(|t| t.finished()) {
            return Ok(());
        }
        tokio::select! {
            output = outputs.recv() => {
                let mut output = output.context("the gateway stopped")?;
                let phase = output.trace.map(|(phase, _)| phase);
                let k = trackers.iter().position(|t| Some(t.phase) == phase).unwrap_or(0);
                trackers[k].add(&output);
                if let (Some(facts), Some(learned), Some((_, i))) =
                    (facts.as_deref_mut(), output.learned.take(), output.trace)
                {
                    facts.absorb(i, learned);
                }
            }
            _ = tick.tick() => {
                running.ensure_running()?;
                if let Some(inbox) = inbox.as_deref_mut() {
                    for tracker in trackers.iter_mut().filter(|t| t.per_command == 0) {
                        if inbox.poll(tracker).await? > 0 {
                            tracker.last_progress = Instant::now();
                        }
                    }
                }
                let progress = trackers.iter().map(|t| t.last_progress).max();
                anyhow::ensure!(
                    progress.is_some_and(|p| p.elapsed() < STALL),
                    "nothing arrived for {STALL:?}: {}",
                    trackers.iter().map(|t| t.summary()).collect::<Vec<_>>().join("; ")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::bench::MEASURED;

    #[test]
    fn latencies_can_be_limited_to_the_commands_published_within_a_window() {
        let binding =
            crate::manifest::Binding::command("application.submit", &["application.held"]);
        let mut tracker = Tracker::new(MEASURED, &binding, 3);
        let t0 = Instant::now();
        let sent: Vec<Instant> = (0..3).map(|i| t0 + Duration::from_millis(i * 10)).collect();
        for (i, done) in tracker.done_at.iter_mut().enumerate() {
            *done = Some(sent[i] + Duration::from_millis(5));
        }
        assert_eq!(tracker.latencies(&sent, ..).len(), 3);
        let early = tracker.latencies(&sent, ..=sent[1]);
        assert_eq!(early, vec![Duration::from_millis(5); 2]);
        let middle = tracker.latencies(&sent, sent[1]..=sent[1]);
        assert_eq!(middle, vec![Duration::from_millis(5)]);
        assert_eq!(
            tracker.last_done(),
            Some(sent[2] + Duration::from_millis(5))
        );
    }
}
