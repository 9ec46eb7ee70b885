//! The benchmark's side of the exchanges: it takes what pinflow publishes the way the
//! systems around pinflow would. It is the delivery gateway (it consumes the
//! namespace's own `notify.*` queues), the upstream caller (RPC replies come to its
//! reply queue) and an event subscriber (a sink bound to the events exchange only, so
//! no notification, and so no PIN half, is ever copied into a queue of its own).
//!
//! Every command the benchmark publishes carries its own `traceparent`, whose trace id
//! names the run, the phase and the command's number; pinflow continues it into
//! everything the command causes, so each output is matched to its command by that
//! header alone, without reading the body.
//!
//! Secrets: a notification body (which may carry a PIN half) and a reply body (the
//! first-access reply carries the new PIN) are read only while the prelude needs what
//! they hold, into memory that is wiped when dropped; otherwise bodies are dropped
//! unread. Nothing here logs or prints a body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::StreamExt;
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::ceiling::{consume, declare};
use crate::broker::Names;
use crate::broker::names::NOTIFY_CHANNELS;
use crate::broker::publish::header_str;

/// A phase of one run, part of every trace id the benchmark makes.
pub(super) type Phase = u8;

/// Trace ids of one run: 16 hex digits for the run, 2 for the phase, 14 for the
/// command's number.
#[derive(Debug, Clone, Copy)]
pub(super) struct Traces {
    run: u64,
}

impl Traces {
    /// Ids for a new run.
    pub(super) fn new() -> Traces {
        // Never all zeros (an invalid trace id).
        Traces {
            run: rand::random::<u64>() | 1,
        }
    }

    /// The `traceparent` of command `index` of `phase`.
    pub(super) fn traceparent(&self, phase: Phase, index: u32) -> String {
        format!(
            "00-{:016x}{phase:02x}{index:014x}-{:016x}-01",
            self.run,
            u64::from(index) + 1
        )
    }

    /// The phase and command number a `traceparent` names, if it is one of this run's.
    pub(super) fn parse(&self, traceparent: &str) -> Option<(Phase, u32)> {
        let trace = traceparent.split('-').nth(1)?;
        if trace.len() != 32 || u64::from_str_radix(&trace[..16], 16).ok()? != self.run {
            return None;
        }
        let phase = u8::from_str_radix(&trace[16..18], 16).ok()?;
        let index = u32::try_from(u64::from_str_radix(&trace[18..], 16).ok()?).ok()?;
        Some((phase, index))
    }
}

/// What a body held that the prelude needs: kept in memory only, wiped on drop.
pub(super) enum Learned {
    /// A PIN half (`pin_first_half` or `pin_second_half`) and its notification's id.
    Half {
        first: bool,
        secret: Zeroizing<String>,
        notification_id: String,
    },
    /// The PIN a first-access reply hands out.
    Pin(Zeroizing<String>),
    /// The phone PIN a `phone_pin.request` reply hands out.
    PhonePin(Zeroizing<String>),
}

/// One message pinflow published, as the benchmark received it.
pub(super) struct Output {
    /// Phase and command number, from its `traceparent`; `None` if it had none of
    /// this run's.
    pub trace: Option<(Phase, u32)>,
    /// Its routing key: `notify.<channel>`, the event type, or `reply`.
    pub kind: String,
    /// When it arrived.
    pub at: Instant,
    /// What the prelude needed from its body, when it asked.
    pub learned: Option<Learned>,
}

#[derive(Deserialize)]
struct Body {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    template: Option<String>,
    notification_id: Option<String>,
    secret: Option<String>,
    pin: Option<String>,
    phone_pin: Option<String>,
}

#[derive(Deserialize)]
struct StatusBody {
    data: StatusData,
}

#[derive(Deserialize)]
struct StatusData {
    status: Option<String>,
}

/// A reply's `status`, alone: the benchmark drives the successful path, so a reply
/// that says otherwise is counted apart (`reply (invalid)`). Every other member,
/// a PIN among them, is skipped unread.
fn reply_kind(body: &[u8]) -> String {
    match serde_json::from_slice::<StatusBody>(body) {
        Ok(StatusBody {
            data: StatusData {
                status: Some(status),
            },
        }) if status == "ok" => "reply".to_owned(),
        Ok(StatusBody {
            data: StatusData {
                status: Some(status),
            },
        }) => format!("reply ({status})"),
        _ => "reply (unreadable)".to_owned(),
    }
}

fn learn(kind: &str, body: &[u8]) -> Option<Learned> {
    let Body { data } = serde_json::from_slice(body).ok()?;
    // Moved, not copied, into memory that is wiped on drop.
    let secret = data.secret.map(Zeroizing::new);
    let pin = data.pin.map(Zeroizing::new);
    let phone_pin = data.phone_pin.map(Zeroizing::new);
    if kind == "reply" {
        return pin
            .map(Learned::Pin)
            .or_else(|| phone_pin.map(Learned::PhonePin));
    }
    let first = match data.template.as_deref()? {
        "pin_first_half" => true,
        "pin_second_half" => false,
        _ => return None,
    };
    Some(Learned::Half {
        first,
        secret: secret?,
        notification_id: data.notification_id?,
    })
}

/// The benchmark's queues and the tasks that consume them.
pub(super) struct Gateway {
    /// The queue RPC replies come to (`reply_to`).
    pub replies: String,
    /// While set, bodies are read for what the prelude needs.
    pub learning: Arc<AtomicBool>,
    /// What arrived, in order of arrival per queue.
    pub outputs: mpsc::UnboundedReceiver<Output>,
    channels: Vec<Channel>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Declares the benchmark's two queues and starts consuming them and the
    /// namespace's `notify.*` queues (which the topology has declared).
    pub(super) async fn start(
        connection: &Connection,
        channel: &Channel,
        tag: &str,
        names: &Names,
        traces: Traces,
    ) -> anyhow::Result<Gateway> {
        let events = format!("{tag}.bench.events");
        let replies = format!("{tag}.bench.replies");
        declare(channel, &events, false).await?;
        declare(channel, &replies, false).await?;
        channel
            .queue_bind(
                events.as_str().into(),
                names.events().as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let learning = Arc::new(AtomicBool::new(false));
        let (sender, outputs) = mpsc::unbounded_channel();
        let mut queues: Vec<(String, Option<String>)> = NOTIFY_CHANNELS
            .iter()
            .map(|c| (names.notify_queue(c), Some(format!("notify.{c}"))))
            .collect();
        queues.push((events, None));
        queues.push((replies.clone(), Some("reply".to_owned())));
        let (mut tasks, mut channels) = (Vec::new(), Vec::new());
        for (queue, kind) in queues {
            let channel = connection.create_channel().await?;
            let mut consumer = consume(&channel, &queue, true).await?;
            channels.push(channel);
            let (sender, learning) = (sender.clone(), learning.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(delivery)) = consumer.next().await {
                    let at = Instant::now();
                    let headers = delivery.properties.headers().as_ref();
                    let trace = header_str(headers, "traceparent").and_then(|t| traces.parse(&t));
                    let body = Zeroizing::new(delivery.data);
                    let kind = match kind.as_deref() {
                        Some("reply") => reply_kind(&body),
                        Some(kind) => kind.to_owned(),
                        None => delivery.routing_key.as_str().to_owned(),
                    };
                    let learned = if learning.load(Ordering::Relaxed) {
                        learn(&kind, &body)
                    } else {
                        None
                    };
                    drop(body);
                    let output = Output {
                        trace,
                        kind,
                        at,
                        learned,
                    };
                    if sender.send(output).is_err() {
                        break;
                    }
                }
            }));
        }
        Ok(Gateway {
            replies,
            learning,
            outputs,
            channels,
            tasks,
        })
    }

    /// Stops consuming.
    pub(super) async fn stop(self) {
        for channel in &self.channels {
            let _ = channel.close(200, "done".into()).await;
        }
        for task in self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_id_names_its_run_phase_and_command() {
        let traces = Traces::new();
        let header = traces.traceparent(3, 99_999);
        let parsed = crate::contract::trace::TraceParent::parse(&header).expect("valid");
        assert_eq!(traces.parse(&parsed.child().to_string()), Some((3, 99_999)));
        assert_eq!(Traces::new().parse(&header), None);
    }

    #[test]
    fn only_the_halves_and_the_pins_replies_hand_out_are_learned() {
        let half = br#"{"data":{"template":"pin_second_half","notification_id":"n1","secret":"ABCDEFGH"}}"#;
        match learn("notify.post", half) {
            Some(Learned::Half {
                first,
                secret,
                notification_id,
            }) => {
                assert!(!first);
                assert_eq!(secret.as_str(), "ABCDEFGH");
                assert_eq!(notification_id, "n1");
            }
            _ => panic!("a half"),
        }
        let notice = br#"{"data":{"template":"pin_expired","notification_id":"n2"}}"#;
        assert!(learn("notify.email", notice).is_none());
        let reply = br#"{"data":{"status":"ok","pin":"ABCD2345"}}"#;
        assert!(matches!(learn("reply", reply), Some(Learned::Pin(_))));
        let phone = br#"{"data":{"status":"ok","phone_pin":"12345678"}}"#;
        match learn("reply", phone) {
            Some(Learned::PhonePin(pin)) => assert_eq!(pin.as_str(), "12345678"),
            _ => panic!("a phone PIN"),
        }
        assert_eq!(reply_kind(reply), "reply");
        assert_eq!(
            reply_kind(br#"{"data":{"status":"invalid"}}"#),
            "reply (invalid)"
        );
    }
}
