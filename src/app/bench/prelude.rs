//! What a benchmark sends before it measures. A command whose binding names others it
//! needs handled first gets them, in the order named, for the same applicants: a
//! conversion or a phone PIN needs a PIN issued (`pin.request`); a `pin.verify` needs
//! the PIN issued and activated (`pin.request`, then `pin.first_access` with the
//! initial PIN its two halves carried); a `phone_pin.verify` needs a live credential
//! and a phone PIN (`pin.request`, then `phone_pin.request`); a `delivery.receipt`
//! needs a notification to report on. Acting as the delivery gateway, the portal and
//! the contact center, the benchmark reads what it needs from what pinflow sends (the
//! halves from the `notify.*` queues, the PIN from the first-access reply, the phone
//! PIN from its reply) into memory that is wiped when dropped, and never writes, logs
//! or prints it. None of it is timed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use zeroize::Zeroizing;

use super::binding_of;
use super::commands::{Commands, Group};
use super::gateway::{Gateway, Learned};
use super::running::Running;
use super::tracking::{Outbound, Tracker, publish_commands, wait};
use crate::app::Setup;
use crate::runtime::Registration;

/// What the prelude learned, per applicant.
pub(super) struct Facts {
    /// Initial PIN, characters 1–8.
    pub first_half: Vec<Option<Zeroizing<String>>>,
    /// Initial PIN, characters 9–16.
    pub second_half: Vec<Option<Zeroizing<String>>>,
    /// The PIN first access handed out.
    pub pin: Vec<Option<Zeroizing<String>>>,
    /// The phone PIN `phone_pin.request` handed out.
    pub phone_pin: Vec<Option<Zeroizing<String>>>,
    /// The id of the notification that carried the first half.
    pub notification: Vec<Option<String>>,
}

impl Facts {
    /// Nothing known yet of `n` applicants.
    pub(super) fn new(n: u32) -> Facts {
        let n = n as usize;
        Facts {
            first_half: (0..n).map(|_| None).collect(),
            second_half: (0..n).map(|_| None).collect(),
            pin: (0..n).map(|_| None).collect(),
            phone_pin: (0..n).map(|_| None).collect(),
            notification: vec![None; n],
        }
    }

    /// Keeps what one output of applicant `i` held.
    pub(super) fn absorb(&mut self, i: u32, learned: Learned) {
        let i = i as usize;
        if i >= self.pin.len() {
            return;
        }
        match learned {
            Learned::Half {
                first: true,
                secret,
                notification_id,
            } => {
                self.first_half[i] = Some(secret);
                self.notification[i] = Some(notification_id);
            }
            Learned::Half {
                first: false,
                secret,
                ..
            } => self.second_half[i] = Some(secret),
            Learned::Pin(pin) => self.pin[i] = Some(pin),
            Learned::PhonePin(pin) => self.phone_pin[i] = Some(pin),
        }
    }
}

/// Has pinflow (in this process) handle, for `messages` applicants of `group`, each
/// type in `needs` in turn (the first traced as the group's phase, each next one as
/// the phase after), each until everything it causes has come out. Returns what was
/// learned, by command number; learns nothing and starts nothing when `needs` is
/// empty.
pub(super) async fn run(
    gateway: &mut Gateway,
    outbound: &Outbound,
    registry: &[Registration],
    needs: &[&str],
    messages: u32,
    group: Group,
    setup: Setup,
) -> anyhow::Result<Facts> {
    let mut facts = Facts::new(messages);
    if needs.is_empty() {
        return Ok(facts);
    }
    let mut running = Running::in_process(setup);
    gateway.learning.store(true, Ordering::Relaxed);
    for (k, needed) in needs.iter().enumerate() {
        let binding = binding_of(registry, needed)?;
        let phase = u8::try_from(k)
            .ok()
            .and_then(|k| group.phase.checked_add(k))
            .context("too many prelude steps for the trace ids' phases")?;
        // Each step builds on what the previous ones taught (the halves, the PIN).
        let known = std::mem::replace(&mut facts, Facts::new(0));
        let known = Arc::new(known);
        let step = Group { phase, ..group };
        let commands = Arc::new(Commands::new(needed, known.clone(), step)?);
        let out = Outbound {
            reply_to: binding.rpc.then(|| gateway.replies.clone()),
            ..outbound.clone()
        };
        publish_commands(out, commands.clone(), messages, None).await?;
        drop(commands);
        facts = Arc::into_inner(known).unwrap_or_else(|| Facts::new(messages));
        let mut tracker = Tracker::new(phase, &binding, messages);
        wait(
            &mut gateway.outputs,
            &mut tracker,
            &mut running,
            Some(&mut facts),
            None,
        )
        .await
        .map_err(|e| e.context(format!("the prelude's {needed}")))?;
    }
    gateway.learning.store(false, Ordering::Relaxed);
    running.stop(Default::default()).await?;
    Ok(facts)
}
