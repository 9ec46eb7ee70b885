//! What a worker is to the runtime: how it turns an envelope into a typed command, and
//! a handler that changes state through the transaction it is given and returns what
//! to publish. Its name and bindings are in its `Description`, not here. Handlers never
//! talk to the broker; exactly-once effects are the runtime's job.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde_json::Value;
use sqlx::PgConnection;
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use crate::contract::{Envelope, Outgoing, ParseError};
use crate::error::HandlerError;
use crate::store::audit;

/// One incoming message as a handler sees it.
pub struct Message<'a> {
    /// The checked envelope (id, source, type, time, data).
    pub envelope: &'a Envelope,
    /// Where an RPC reply goes; present for every RPC command.
    pub reply_to: Option<&'a str>,
    /// The RPC correlation id to echo.
    pub correlation_id: Option<&'a str>,
    /// "Now" for every deadline check, from the injected clock.
    pub now: DateTime<Utc>,
    /// What the handler audited, written once it returns, with the rest of the batch's
    /// audit rows (and, in the common case, its outbox rows) in one statement of the
    /// same transaction.
    audited: Mutex<Vec<audit::Record>>,
}

impl<'a> Message<'a> {
    /// A message to handle, with nothing audited yet.
    pub fn new(
        envelope: &'a Envelope,
        reply_to: Option<&'a str>,
        correlation_id: Option<&'a str>,
        now: DateTime<Utc>,
    ) -> Message<'a> {
        Message {
            envelope,
            reply_to,
            correlation_id,
            now,
            audited: Mutex::new(Vec::new()),
        }
    }

    /// Audits an action this message caused, at its `now` and under its id. The row
    /// is written in the handler's transaction once the handler succeeds, so it is
    /// kept exactly when the handler's other effects are.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        tax_code: Option<&str>,
        credential_id: Option<Uuid>,
        detail: Value,
    ) {
        let record = audit::Record::from(audit::Entry {
            at: self.now,
            actor,
            action,
            tax_code,
            credential_id,
            message_id: Some(&self.envelope.id),
            detail,
        });
        self.audited
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }

    /// What the handler audited, leaving nothing behind.
    pub(crate) fn take_audited(&self) -> Vec<audit::Record> {
        std::mem::take(
            &mut *self
                .audited
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// One message of a batch, as `Worker::handle_batch` gets it.
pub struct Handling<'a, P> {
    /// The prepared command.
    pub prepared: &'a P,
    /// The message it came in.
    pub message: &'a Message<'a>,
    /// The delivery's span, for everything its handling logs.
    pub span: &'a Span,
}

/// For each key of a batch's commands (a tax code, a notification), whether no other
/// command of the batch has it: the commands whose outcome cannot depend on the
/// batch's order, whose work a `Worker::handle_batch` may do for all in one statement.
pub fn alone<K: Eq + Hash>(keys: &[K]) -> Vec<bool> {
    let mut named: HashMap<&K, usize> = HashMap::with_capacity(keys.len());
    for key in keys {
        *named.entry(key).or_default() += 1;
    }
    keys.iter().map(|key| named[key] == 1).collect()
}

/// The batch's commands that one statement serves together, each as its place and what
/// `pick` took from it: the commands `pick` takes something from (`Some`) whose key no
/// other command of the batch names (see `alone`), when there are two or more (for
/// one, a batch statement saves nothing: empty, and the handler does the work alone).
pub fn together<K: Eq + Hash, T>(keys: &[K], pick: impl Fn(usize) -> Option<T>) -> Vec<(usize, T)> {
    let alone = alone(keys);
    let picked: Vec<(usize, T)> = (0..keys.len())
        .filter(|&i| alone[i])
        .filter_map(|i| pick(i).map(|taken| (i, taken)))
        .collect();
    if picked.len() < 2 {
        return Vec::new();
    }
    picked
}

/// The usual body of a `Worker::prepare_batch` whose commands need a row each, read
/// for the whole batch in one statement (`found`, by key): each command is prepared
/// side by side under its delivery's span, by `prepare`, with a copy of the row its
/// `key` names (a key named twice gets the same row twice; a command without a key, or
/// whose row is missing, gets `None`). When the read failed, each command is prepared
/// alone by `Worker::prepare`, which reads for itself and fails with its own error.
pub async fn prepare_each<W, R, E, F>(
    worker: &W,
    batch: Vec<(W::Command, Span)>,
    found: Result<HashMap<String, R>, E>,
    key: impl Fn(&W::Command) -> Option<&str>,
    prepare: impl Fn(W::Command, Option<R>) -> F,
) -> Vec<Result<W::Prepared, HandlerError>>
where
    W: Worker,
    R: Clone,
    F: Future<Output = Result<W::Prepared, HandlerError>>,
{
    let Ok(found) = found else {
        let each = batch.into_iter();
        return join_all(each.map(|(command, span)| worker.prepare(command).instrument(span)))
            .await;
    };
    let rows: Vec<Option<R>> = batch
        .iter()
        .map(|(command, _)| found.get(key(command)?).cloned())
        .collect();
    let each = batch.into_iter().zip(rows);
    join_all(each.map(|((command, span), row)| prepare(command, row).instrument(span))).await
}

/// A dedicated worker's message handling.
pub trait Worker: Send + Sync + 'static {
    /// The typed command, parsed from the envelope at the edge.
    type Command: Send + Sync;
    /// The command after slow preparation done outside the transaction (for example
    /// hashing a new PIN), so the transaction stays short.
    type Prepared: Send + Sync;

    /// Turns a checked envelope into a typed command. A failure is permanent.
    fn parse(&self, envelope: &Envelope) -> Result<Self::Command, ParseError>;

    /// Slow, state-free work before the transaction.
    fn prepare(
        &self,
        command: Self::Command,
    ) -> impl Future<Output = Result<Self::Prepared, HandlerError>> + Send;

    /// Prepares a batch's commands, each under its delivery's span: one result per
    /// command, in their order. The default prepares them side by side, each with
    /// `prepare`. A worker overrides it when one read can serve the whole batch's
    /// preparation; each result must be the one `prepare` would give.
    fn prepare_batch(
        &self,
        batch: Vec<(Self::Command, Span)>,
    ) -> impl Future<Output = Vec<Result<Self::Prepared, HandlerError>>> + Send {
        join_all(
            batch
                .into_iter()
                .map(|(command, span)| self.prepare(command).instrument(span)),
        )
    }

    /// Applies the command inside the transaction and returns what to publish once
    /// it commits. It may run more than once for one message if a batch is retried,
    /// so all its effects go through `conn`.
    fn handle<'a>(
        &'a self,
        prepared: &'a Self::Prepared,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> impl Future<Output = Result<Vec<Outgoing>, HandlerError>> + Send + 'a;

    /// Applies a batch's commands in their order inside one transaction: one list of
    /// messages to publish per command, or the first failure (nothing after it is
    /// handled, and the runtime rolls the transaction back). The default hands each
    /// command to `handle`. A worker overrides it when one statement can do for the
    /// whole batch what `handle` does command by command; the outcome must be the
    /// one `handle` would give, command after command.
    fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handling<'a, Self::Prepared>],
        conn: &'a mut PgConnection,
    ) -> impl Future<Output = Result<Vec<Vec<Outgoing>>, HandlerError>> + Send + 'a {
        async move {
            let mut all = Vec::with_capacity(batch.len());
            for item in batch {
                let handled = self.handle(item.prepared, item.message, &mut *conn);
                all.push(handled.instrument(item.span.clone()).await?);
            }
            Ok(all)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_named_twice_is_alone_nowhere() {
        assert_eq!(alone(&["a", "b", "a", "c"]), [false, true, false, true]);
        assert!(alone::<u8>(&[]).is_empty());
    }

    #[test]
    fn together_takes_the_wanted_keys_named_once_and_never_one_alone() {
        let keys = ["a", "b", "a", "c", "d"];
        let every = |i: usize| Some(keys[i]);
        assert_eq!(together(&keys, every), [(1, "b"), (3, "c"), (4, "d")]);
        let not_c = |i: usize| (i != 3).then_some(keys[i]);
        assert_eq!(together(&keys, not_c), [(1, "b"), (4, "d")]);
        assert!(together(&keys, |i| (i == 1).then_some(())).is_empty());
        assert!(together(&keys, |i| (i == 0 || i == 2).then_some(())).is_empty());
    }

    /// Prepares a command (a key, or none) alone as "alone <key>".
    struct Keyed;

    impl Worker for Keyed {
        type Command = Option<&'static str>;
        type Prepared = String;

        fn parse(&self, _: &Envelope) -> Result<Self::Command, ParseError> {
            Ok(None)
        }

        async fn prepare(&self, command: Self::Command) -> Result<String, HandlerError> {
            Ok(format!("alone {}", command.unwrap_or("-")))
        }

        async fn handle<'a>(
            &'a self,
            _: &'a String,
            _: &'a Message<'a>,
            _: &'a mut PgConnection,
        ) -> Result<Vec<Outgoing>, HandlerError> {
            unreachable!("only prepared here")
        }
    }

    fn batch(keys: &[Option<&'static str>]) -> Vec<(Option<&'static str>, Span)> {
        keys.iter().map(|key| (*key, Span::none())).collect()
    }

    async fn prepared(found: Result<HashMap<String, u32>, ()>) -> Vec<String> {
        let keys = [Some("a"), None, Some("b"), Some("a"), Some("gone")];
        let each = prepare_each(
            &Keyed,
            batch(&keys),
            found,
            |key| *key,
            |key, row| async move { Ok(format!("{}={row:?}", key.unwrap_or("-"))) },
        );
        each.await.into_iter().map(Result::unwrap).collect()
    }

    #[tokio::test]
    async fn each_command_is_prepared_with_its_own_row_and_alone_when_the_read_failed() {
        let found = HashMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert_eq!(
            prepared(Ok(found)).await,
            ["a=Some(1)", "-=None", "b=Some(2)", "a=Some(1)", "gone=None"]
        );
        assert_eq!(
            prepared(Err(())).await,
            ["alone a", "alone -", "alone b", "alone a", "alone gone"]
        );
    }
}
