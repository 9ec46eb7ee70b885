//! The commands a benchmark publishes: a distinct applicant's tax code for each, the
//! contract's example of the type filled in for it, and, for the types that need one,
//! the secret the prelude learned spliced straight into the body.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::gateway::{Phase, Traces};
use super::prelude::Facts;
use crate::contract::schemas::Schemas;

/// A valid, distinct tax code for each `n` below 672,000: day of birth (women's +40),
/// month letter and a three-digit town number vary.
pub fn tax_code(n: u32) -> String {
    const MONTHS: &[u8] = b"ABCDEHLMPRST";
    let town = n % 1000;
    let day = 1 + (n / 1000) % 56;
    let day = if day > 28 { day - 28 + 40 } else { day };
    let month = char::from(MONTHS[(n / 56_000) as usize % MONTHS.len()]);
    let first15 = format!("BNCLRA80{month}{day:02}Z{town:03}");
    let check = crate::domain::tax_code::check_character(&first15).unwrap_or('X');
    format!("{first15}{check}")
}

/// The most applicants `tax_code` tells apart.
pub const MAX_APPLICANTS: u32 = 672_000;

/// Replaces every `tax_code` in `value`, however deeply nested, with `code`.
fn retax(value: &mut Value, code: &str) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "tax_code" {
                    *item = json!(code);
                } else {
                    retax(item, code);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| retax(i, code)),
        _ => {}
    }
}

/// Command `n` of a benchmark: the contract's example of the type, with a new id and
/// every `tax_code` in its data replaced by applicant `n`'s.
pub fn command(message_type: &str, n: u32) -> anyhow::Result<Value> {
    let mut event = Schemas::example(message_type)
        .with_context(|| format!("the contract has no example of {message_type}"))?;
    event["id"] = json!(Uuid::new_v4().to_string());
    event["source"] = json!("bench");
    retax(&mut event["data"], &tax_code(n));
    Ok(event)
}

/// A group of commands of one run: command `n` is traced as command `n` of `phase`
/// and is for applicant `first + n`, so groups of different phases can be for
/// applicants of their own.
#[derive(Debug, Clone, Copy)]
pub(super) struct Group {
    /// The run's trace ids.
    pub(super) traces: Traces,
    /// The phase of the group's trace ids (a prelude's first step; each further step
    /// takes the next).
    pub(super) phase: Phase,
    /// The applicant of command 0.
    pub(super) first: u32,
}

impl Group {
    /// Applicants `0..`, traced as `phase` of `traces`.
    pub(super) fn new(traces: Traces, phase: Phase) -> Group {
        Group {
            traces,
            phase,
            first: 0,
        }
    }
}

/// Builds the commands of one type for a group of applicants, filling in what the
/// prelude learned for the same group (the initial PIN for `pin.first_access`, the PIN
/// for `pin.verify`, the phone PIN for `phone_pin.verify`, a notification's id for
/// `delivery.receipt`). A secret is written straight into the body, which is wiped
/// when dropped.
pub(super) struct Commands {
    /// The command type.
    pub(super) message_type: String,
    /// The contract's example of the type, the base of every command.
    example: Value,
    /// What the prelude learned for the group.
    facts: Arc<Facts>,
    /// The group the commands are for.
    group: Group,
    /// Random for each set of commands: command `n`'s id is derived from it and `n`,
    /// so a command's id is known without keeping it (see `id`).
    ids: Uuid,
}

/// Stands for the secret in the serialized body until it is spliced in.
const SLOT: &str = "\u{1}bench-secret\u{1}";

impl Commands {
    /// The commands of `message_type` for `group`, with what the prelude learned.
    pub(super) fn new(
        message_type: &str,
        facts: Arc<Facts>,
        group: Group,
    ) -> anyhow::Result<Commands> {
        let example = Schemas::example(message_type)
            .with_context(|| format!("the contract has no example of {message_type}"))?;
        Ok(Commands {
            message_type: message_type.to_owned(),
            example,
            facts,
            group,
            ids: Uuid::new_v4(),
        })
    }

    /// Command `n`'s id: a UUID derived from the set's and `n`, the same every time.
    pub(super) fn id(&self, n: u32) -> String {
        Uuid::new_v5(&self.ids, &n.to_be_bytes()).to_string()
    }

    /// Command `n`: its id, its body and its `traceparent`.
    pub(super) fn build(&self, n: u32) -> anyhow::Result<(String, Zeroizing<Vec<u8>>, String)> {
        let mut event = self.example.clone();
        let id = self.id(n);
        event["id"] = json!(id);
        event["source"] = json!("bench");
        let applicant = self.group.first + n;
        retax(&mut event["data"], &tax_code(applicant));
        let i = n as usize;
        let mut secret: Vec<&str> = Vec::new();
        match self.message_type.as_str() {
            "pin.first_access" => {
                let first = self.facts.first_half.get(i).and_then(Option::as_ref);
                let second = self.facts.second_half.get(i).and_then(Option::as_ref);
                let (Some(first), Some(second)) = (first, second) else {
                    anyhow::bail!(
                        "the prelude did not deliver both halves of applicant {applicant}"
                    );
                };
                secret.extend([first.as_str(), second.as_str()]);
                event["data"]["initial_pin"] = json!(SLOT);
            }
            "pin.verify" => {
                let pin = self.facts.pin.get(i).and_then(Option::as_ref);
                let pin =
                    pin.with_context(|| format!("no PIN came back for applicant {applicant}"))?;
                secret.push(pin.as_str());
                event["data"]["pin"] = json!(SLOT);
            }
            "phone_pin.verify" => {
                let pin = self.facts.phone_pin.get(i).and_then(Option::as_ref);
                let pin = pin
                    .with_context(|| format!("no phone PIN came back for applicant {applicant}"))?;
                secret.push(pin.as_str());
                event["data"]["phone_pin"] = json!(SLOT);
            }
            "delivery.receipt" => {
                let id = self.facts.notification.get(i).and_then(Option::as_ref);
                let id =
                    id.with_context(|| format!("no notification for applicant {applicant}"))?;
                event["data"]["notification_id"] = json!(id);
            }
            _ => {}
        }
        let text = serde_json::to_string(&event)?;
        let mut body = Zeroizing::new(Vec::with_capacity(text.len() + 32));
        let slot = serde_json::to_string(SLOT)?;
        match text.split_once(&slot) {
            Some((head, tail)) if !secret.is_empty() => {
                anyhow::ensure!(
                    secret
                        .iter()
                        .all(|s| s.bytes().all(|b| b.is_ascii_alphanumeric())),
                    "a secret the prelude received is not plain letters and digits"
                );
                body.extend_from_slice(head.as_bytes());
                body.push(b'"');
                for part in &secret {
                    body.extend_from_slice(part.as_bytes());
                }
                body.push(b'"');
                body.extend_from_slice(tail.as_bytes());
            }
            _ => body.extend_from_slice(text.as_bytes()),
        }
        let traceparent = self.group.traces.traceparent(self.group.phase, n);
        Ok((id, body, traceparent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_tax_codes_are_valid_and_distinct() {
        let codes: std::collections::HashSet<String> =
            (0..MAX_APPLICANTS).step_by(997).map(tax_code).collect();
        assert_eq!(codes.len(), (0..MAX_APPLICANTS).step_by(997).count());
        let all: std::collections::HashSet<String> = (0..120_000).map(tax_code).collect();
        assert_eq!(all.len(), 120_000);
        for n in [
            0,
            27_999,
            28_000,
            55_999,
            56_000,
            99_999,
            MAX_APPLICANTS - 1,
        ] {
            let code = tax_code(n);
            assert!(crate::domain::TaxCode::parse(&code).is_ok(), "{n}: {code}");
        }
    }

    #[test]
    fn a_group_is_for_applicants_of_its_own_and_numbers_its_commands_from_0() {
        let traces = Traces::new();
        let group = Group {
            traces,
            phase: 0x21,
            first: 40,
        };
        let commands = Commands::new("application.submit", Arc::new(Facts::new(0)), group);
        let (_, body, traceparent) = commands.unwrap().build(2).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["data"]["tax_code"], tax_code(42));
        assert_eq!(traces.parse(&traceparent), Some((0x21, 2)));
    }

    #[test]
    fn a_secret_is_spliced_into_the_body_and_nowhere_else() {
        let mut facts = Facts::new(2);
        facts.pin[1] = Some(Zeroizing::new("ABCD2345".to_owned()));
        let group = Group::new(Traces::new(), 0);
        let commands = Commands::new("pin.verify", Arc::new(facts), group).unwrap();
        let (_, body, _) = commands.build(1).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["data"]["pin"], "ABCD2345");
        assert_eq!(value["data"]["tax_code"], tax_code(1));
        assert!(commands.build(0).is_err(), "no PIN, no command");
    }
}
